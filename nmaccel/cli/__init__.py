"""The ``nmaccel`` command line (argparse only; the work lives in the layers below).

Subcommands
    ``demo``     real workloads on the RTL next to PyTorch (:mod:`nmaccel.studies.demo`).
    ``config``   print a hardware preset as JSON.
    ``verilog``  generate Verilog for a design (``nmaccel verilog sta|conv ...``).
    ``sim``      run a design's RTL simulation on a workload (``nmaccel sim sta|conv ...``).
    ``build``    build a design for an FPGA board (:mod:`nmaccel.boards.flow`).
    ``board``    talk to a board (or its simulation) through the host driver.
    ``report``   the full study (:mod:`nmaccel.studies.report`).
    ``idp``      N:M pruning studies (:mod:`nmaccel.studies.idp`).
    ``bench``    the benchmark studies that regenerate ``reports/`` figures.

Every subcommand has ``--help`` with defaults shown. Bad arguments end with a one-line error
and exit status 2, never a traceback; Ctrl-C ends with status 130 and one line.

Extending
    A command is a module of this package with ``HELP`` (one line), optional
    ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``, listed in
    :data:`COMMANDS`. Shared argument types are in :mod:`nmaccel.cli.args`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Optional

from nmaccel.cli.args import CommandError, Formatter

__all__ = ["COMMANDS", "build_parser", "main"]

#: command name -> module of this package implementing it
COMMANDS = {
    "demo": "nmaccel.cli.demo",
    "config": "nmaccel.cli.config",
    "verilog": "nmaccel.cli.verilog",
    "sim": "nmaccel.cli.sim",
    "build": "nmaccel.cli.build",
    "board": "nmaccel.cli.board",
    "report": "nmaccel.cli.report",
    "idp": "nmaccel.cli.idp",
    "bench": "nmaccel.cli.bench",
    "cache": "nmaccel.cli.cache",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nmaccel", formatter_class=Formatter,
        description="nmaccel: N:M sparse Transformer (STA) and adder/binary conv accelerator kit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, formatter_class=Formatter, help=mod.HELP,
                           description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    where = args.command + (f" {args.design}" if getattr(args, "design", None) else "")
    try:
        return int(args._run(args) or 0)
    except (CommandError, ValueError, FileNotFoundError) as exc:
        print(f"nmaccel {where}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nmaccel {where}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
