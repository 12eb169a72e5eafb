"""Wrapper kept for the README's commands: `python benchmarks/conv_report.py ARGS` runs
`nmaccel bench conv-report ARGS` (the study itself is :mod:`nmaccel.studies.conv_report`)."""

import sys

from nmaccel.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "conv-report", *sys.argv[1:]]))
