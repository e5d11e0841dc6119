"""The benchmark of `make bench` (`python -m bench`): exit path lengths,
world switch, fairness, slowdown, boot cost, sizes and scaling of the
hypervisor in Bochs.  See docs/BENCHMARKS.md."""
