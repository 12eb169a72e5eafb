"""The ``nmaccel`` command line.

Subcommands
    ``demo``     embed sentences with MiniLM-L6: float reference vs the integer golden
                 pipelines (int8 dense and N:M sparse); prints a table, optional JSON.
    ``config``   print a hardware preset (``StaConfig``) as JSON.
    ``verilog``  generate Verilog for a design (``nmaccel verilog sta|conv ...``).
    ``sim``      run a design's RTL simulation on a workload (``nmaccel sim sta|conv ...``).
    (further commands register themselves in :data:`COMMANDS`.)

Every subcommand has ``--help`` with defaults shown. Bad arguments end with a one-line
error and exit status 2, never a traceback.

Extending
    A command is a module with ``HELP`` (one line), ``add_arguments(parser)`` and
    ``run(args) -> int``, listed in :data:`COMMANDS`. A design (for ``verilog`` and ``sim``)
    is a module listed in :data:`DESIGNS` with ``HELP`` and any of
    ``add_verilog_arguments``/``run_verilog`` and ``add_sim_arguments``/``run_sim``.
    Modules not yet present in the package are left out of the parser.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Optional, Sequence

__all__ = ["main", "build_parser", "Formatter", "nm", "nm_list", "preset", "positive_int",
           "jobs", "board", "preset_names", "COMMANDS", "DESIGNS", "CommandError"]

#: command name -> module implementing it
COMMANDS = {
    "demo": "nmaccel.sim.demo",
    "config": "nmaccel.sim.cli",
    "verilog": "nmaccel.sim.cli",
    "sim": "nmaccel.sim.cli",
    "build": "nmaccel.boards.cli",
    "board": "nmaccel.boards.board_cli",
    "report": "nmaccel.sim.report",
    "idp": "nmaccel.sim.idp_cli",
}

#: design name -> module with the design's verilog/sim entry points
DESIGNS = {
    "sta": "nmaccel.sim.sta_cli",
    "conv": "nmaccel.sim.conv_cli",
}


class CommandError(Exception):
    """Raised by a command for a user-facing error (printed on one line, exit status 2)."""


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def nm(text: str) -> Optional[tuple[int, int]]:
    """argparse type: one N:M pattern, or "dense" (``None``)."""
    from nmaccel.model.encoder_int import parse_nm
    try:
        return parse_nm(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def nm_list(text: str) -> list[Optional[tuple[int, int]]]:
    """argparse type: a comma-separated list of N:M patterns ("dense" allowed)."""
    return [nm(part) for part in text.split(",") if part.strip()]


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {value}")
    return value


def preset(name: str):
    """argparse type: an STA preset name -> ``StaConfig``."""
    from nmaccel.spec.config import ConfigError, sta_preset
    try:
        return sta_preset(name)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def preset_names(text: str) -> list[str]:
    """argparse type: a comma-separated list of STA preset names (each checked)."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated STA preset names, not {text!r}")
    for name in names:
        preset(name)
    return names


def jobs(text: str) -> int:
    """argparse type for ``--jobs``: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--jobs must be a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--jobs must be a positive integer, not {value}")
    return value


def board(name: str) -> str:
    """argparse type: a board name of :mod:`nmaccel.boards.targets`."""
    try:
        from nmaccel.boards.targets import BoardError, board_target
    except ImportError:
        raise argparse.ArgumentTypeError("board list unavailable (nmaccel.boards.targets is "
                                         "missing)") from None
    try:
        return board_target(name).name
    except BoardError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# Backwards-compatible private names.
_nm_list, _preset, _Formatter = nm_list, preset, Formatter


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


# -- built-in commands: config, verilog, sim ---------------------------------------------------

def _config_add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", type=preset, default="ulx3s", help="preset name")


def _config_run(args) -> int:
    print(args.preset.to_json(indent=2))
    return 0


def _design_modules() -> dict:
    return {name: importlib.import_module(mod) for name, mod in DESIGNS.items() if _available(mod)}


def _designs_add_arguments(p: argparse.ArgumentParser, kind: str) -> None:
    sub = p.add_subparsers(dest="design", metavar="DESIGN")
    sub.required = True
    for name, mod in _design_modules().items():
        adder = getattr(mod, f"add_{kind}_arguments", None)
        if adder is None:
            continue
        dp = sub.add_parser(name, formatter_class=Formatter, help=getattr(mod, "HELP", ""),
                            description=getattr(mod, f"{kind.upper()}_DESCRIPTION",
                                                getattr(mod, "HELP", "")))
        adder(dp)
        dp.set_defaults(_design_run=getattr(mod, f"run_{kind}"))


_BUILTIN = {
    "config": ("print an STA hardware preset as JSON", _config_add_arguments, _config_run),
    "verilog": ("generate Verilog for a design",
                lambda p: _designs_add_arguments(p, "verilog"), lambda a: a._design_run(a)),
    "sim": ("run a design's RTL simulation on a workload",
            lambda p: _designs_add_arguments(p, "sim"), lambda a: a._design_run(a)),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nmaccel", formatter_class=Formatter,
        description="nmaccel: N:M sparse Transformer (STA) and adder/binary conv accelerator kit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in COMMANDS.items():
        if name in _BUILTIN:
            help_, add, run = _BUILTIN[name]
            desc = help_
        else:
            if not _available(module):
                continue
            mod = importlib.import_module(module)
            help_, add, run = mod.HELP, mod.add_arguments, mod.run
            desc = getattr(mod, "DESCRIPTION", help_)
        p = sub.add_parser(name, formatter_class=Formatter, help=help_, description=desc)
        add(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (CommandError, ValueError, FileNotFoundError) as exc:
        where = args.command + (f" {args.design}" if getattr(args, "design", None) else "")
        print(f"nmaccel {where}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
