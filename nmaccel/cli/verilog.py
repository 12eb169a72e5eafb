"""``nmaccel verilog sta|conv``: generate a design's Verilog."""

from __future__ import annotations

from nmaccel.cli.designs import add_design_arguments

__all__ = ["HELP", "add_arguments", "run"]

HELP = "generate Verilog for a design"


def add_arguments(p) -> None:
    add_design_arguments(p, "verilog")


def run(args) -> int:
    return args._design_run(args)
