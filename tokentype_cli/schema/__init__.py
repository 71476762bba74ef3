"""The one HDF5 schema layer, the only code that writes HDF5, one module per job: `names`
(datasets, token types, provenance), `storage` (dtype, compression, chunking), `read` (opening
and bounded reads), `temporary` (temporaries and locks), `write` (atomic writes), `repack`, and
`rows` (rows moved between a build's own files). Empty, so importing `names` stays light."""
