"""Wrapper kept for the README's commands: `python benchmarks/sta_mac_array.py ARGS` runs
`nmaccel bench sta-mac-array ARGS` (the study itself is :mod:`nmaccel.studies.sta_mac_array`)."""

import sys

from nmaccel.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "sta-mac-array", *sys.argv[1:]]))
