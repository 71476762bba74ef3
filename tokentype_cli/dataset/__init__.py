"""Training-ready dataset folders: split planning and the seeded shuffle, balancing,
`metadata.yaml`, the sha256 manifest, multi-machine task records, and the folder checks that
`validate` and `inspect` run. `layout` names every file of the folder."""
