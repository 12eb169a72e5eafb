"""Wrapper kept for the README's commands: `python benchmarks/conv_resources.py ARGS` runs
`nmaccel bench conv-resources ARGS` (the study itself is :mod:`nmaccel.studies.conv_resources`)."""

import sys

from nmaccel.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "conv-resources", *sys.argv[1:]]))
