"""Tracking: the only run-path module that imports mlflow (tracker), the run schema, redaction."""
