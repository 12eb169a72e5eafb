"""``nmaccel sim sta|conv``: run a design's RTL simulation on a workload."""

from __future__ import annotations

from nmaccel.cli.designs import add_design_arguments

__all__ = ["HELP", "add_arguments", "run"]

HELP = "run a design's RTL simulation on a workload"


def add_arguments(p) -> None:
    add_design_arguments(p, "sim")


def run(args) -> int:
    return args._design_run(args)
