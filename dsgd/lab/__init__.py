"""A network lab on one machine: N hosts as network namespaces, links limited by the kernel's
token-bucket filter, and one MPI job across them, so a communication pattern's wall-clock cost
can be measured on a slow network and the bytes it moved counted by the kernel.

    python -m dsgd.lab --hosts 4 --rate 100mbit -- python -m dsgd.train --out runs/lab ...

Modules, one idea each: spec (what is asked, parsed and checked), shaping (tbf), network (the
namespaces, bridges and veths, up and down), job (the mpirun line across namespaces), counters
(the kernel's bytes), measure (a timed bulk transfer), report (kernel beside dsgd), cli.
See docs/lab.md.
"""
