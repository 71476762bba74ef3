"""tokentype: prepare and check token_type_ids in HDF5 shards for LLM training."""

__version__ = "0.1.0"
