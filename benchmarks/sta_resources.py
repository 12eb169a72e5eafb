"""Wrapper kept for the README's commands: `python benchmarks/sta_resources.py ARGS` runs
`nmaccel bench sta-resources ARGS` (the study itself is :mod:`nmaccel.studies.sta_resources`)."""

import sys

from nmaccel.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "sta-resources", *sys.argv[1:]]))
