"""Wrapper kept for the README's commands: `python benchmarks/sta_layer.py ARGS` runs
`nmaccel bench sta-layer ARGS` (the study itself is :mod:`nmaccel.studies.sta_layer`)."""

import sys

from nmaccel.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "sta-layer", *sys.argv[1:]]))
