"""Launch helpers for dsgd: the `dsgd-mpirun` wrapper lives beside this package, and
`launch.local_rank` maps a process to its place on the node and its device."""
