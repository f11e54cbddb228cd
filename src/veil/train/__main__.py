"""`python -m veil.train MODULE:FUNCTION (CONFIG.json | --from-env MODULE:CLASS)`: one replica."""

import sys

from veil.train._launch import worker_main

sys.exit(worker_main(sys.argv[1:]))
