"""A minimal veil solution that lives only in the tests: a line fitted to points. It is found
through its `veil.solutions` entry point (veil_toy-0.1.dist-info beside it) and gets every
command from the registry; veil's CLI never names it."""
