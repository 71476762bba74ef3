"""`tokenize`: text inputs to packed HDF5 rows with token_type_ids.

Kept light: the CLI imports option choices from here at start-up, and the heavy modules (numpy
packing, the Rust tokenizer) load only when a command runs.
"""
