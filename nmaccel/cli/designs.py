"""``nmaccel verilog DESIGN`` and ``nmaccel sim DESIGN``: one sub-parser per design.

A design is a module of this package listed in :data:`DESIGNS` with ``HELP`` and
``add_verilog_arguments``/``run_verilog`` and ``add_sim_arguments``/``run_sim``.
"""

from __future__ import annotations

import importlib

from nmaccel.cli.args import Formatter

__all__ = ["DESIGNS", "add_design_arguments"]

#: design name -> module with the design's verilog/sim entry points
DESIGNS = {"sta": "nmaccel.cli.sta", "conv": "nmaccel.cli.conv"}


def add_design_arguments(p, kind: str) -> None:
    """Sub-parsers of ``kind`` ("verilog" or "sim") for every design."""
    sub = p.add_subparsers(dest="design", metavar="DESIGN")
    sub.required = True
    for name, module in DESIGNS.items():
        mod = importlib.import_module(module)
        dp = sub.add_parser(name, formatter_class=Formatter, help=mod.HELP,
                            description=getattr(mod, f"{kind.upper()}_DESCRIPTION", mod.HELP))
        getattr(mod, f"add_{kind}_arguments")(dp)
        dp.set_defaults(_design_run=getattr(mod, f"run_{kind}"))
