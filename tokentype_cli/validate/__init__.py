"""`validate`: the findings model (`findings`), per-shard checks (`shard`), per-folder checks
(`folder`), and the file-or-folder dispatch above both (`paths`)."""
