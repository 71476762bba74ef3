"""`inspect`: a shard's summary and rows (`shard`), a dataset folder's summary (`folder`), the
HTML report (`html`) and its per-row statistics (`profile`)."""
