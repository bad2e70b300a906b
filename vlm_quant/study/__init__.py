"""A whole study: sweep (child runs) and the report built from the tracking store."""
