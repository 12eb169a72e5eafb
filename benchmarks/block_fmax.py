"""Wrapper kept for the README's commands: `python benchmarks/block_fmax.py ARGS` runs
`nmaccel bench block-fmax ARGS` (the study itself is :mod:`nmaccel.studies.block_fmax`)."""

import sys

from nmaccel.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "block-fmax", *sys.argv[1:]]))
