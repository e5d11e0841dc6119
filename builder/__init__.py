"""hvbuild: the Python toolchain that builds and runs the hypervisor image."""
