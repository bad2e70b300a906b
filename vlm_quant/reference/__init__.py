"""The reference pages of the documentation site, rendered from the code (parameters, run schema, presets).

`python tools/write_reference.py` writes them under docs/reference/ and refreshes the README's generated
blocks; the suite fails when a committed page or block differs from what the code renders.
"""
