"""How a group's calls reach the engine (README: Backends). Names only, so
that the command line need not load the engine to list them."""

NAMES = ("seccomp", "ptrace", "ptrace-syscall")
