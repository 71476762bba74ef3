"""`add-types`: append a token_type_ids dataset to an existing HDF5 file (`add`)."""
