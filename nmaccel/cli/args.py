"""Argument types shared by every ``nmaccel`` command (argparse ``type=`` callables).

Each one turns text into a checked value or raises :class:`argparse.ArgumentTypeError` with a
one-line reason, so a bad argument ends with ``nmaccel CMD: error: ...`` and exit status 2
before any work starts.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Optional

__all__ = ["CommandError", "Formatter", "positive_int", "nonneg_int", "probability", "nm",
           "nm_list", "preset", "conv_preset", "preset_names", "jobs", "board", "layer",
           "output_file", "output_dir", "check_output_file", "check_output_dir", "check_shipped"]


class CommandError(Exception):
    """Raised by a command for a user-facing error (printed on one line, exit status 2)."""


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _int(text, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    import math
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text}")
    return value


def nonneg_int(text: str) -> int:
    """An integer >= 0."""
    value = _int(text, "a non-negative integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, not {value}")
    return value


def probability(text: str) -> float:
    """A number in [0, 1)."""
    try:
        p = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
    if not 0.0 <= p < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), not {p}")
    return p


def jobs(text: str) -> int:
    """``--jobs``: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--jobs must be a positive integer, not {text!r}") \
            from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--jobs must be a positive integer, not {value}")
    return value


def nm(text: str) -> Optional[tuple[int, int]]:
    """One N:M pattern, or "dense" (``None``)."""
    from nmaccel.model.encoder_int import parse_nm
    try:
        return parse_nm(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def nm_list(text: str) -> list[Optional[tuple[int, int]]]:
    """A comma-separated list of N:M patterns ("dense" allowed)."""
    return [nm(part) for part in text.split(",") if part.strip()]


def preset(name: str):
    """An STA preset name -> ``StaConfig``."""
    from nmaccel.spec.config import ConfigError, sta_preset
    try:
        return sta_preset(name)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def conv_preset(name: str):
    """A conv-engine preset name -> ``ConvConfig``."""
    from nmaccel.spec.config import ConfigError
    from nmaccel.spec.config import conv_preset as lookup
    try:
        return lookup(name)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def preset_names(text: str) -> list[str]:
    """A comma-separated list of STA preset names (each checked)."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated STA preset names, not {text!r}")
    for name in names:
        preset(name)
    return names


def board(name: str) -> str:
    """A board name of :mod:`nmaccel.boards.targets`."""
    from nmaccel.boards.targets import BoardError, board_target
    try:
        return board_target(name).name
    except BoardError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def layer(text: str) -> int:
    """A MiniLM-L6 layer index."""
    from nmaccel.model.minilm import MiniLMConfig
    n = MiniLMConfig().layers
    value = _int(text, f"a layer index in 0..{n - 1}")
    if not 0 <= value < n:
        raise argparse.ArgumentTypeError(f"MiniLM-L6 layers are 0..{n - 1}, not {value}")
    return value


def check_output_file(path, what: str = "output file") -> Path:
    """``path`` as a Path if a file can be written there (its folder exists and is writable,
    it is not a folder itself); a :class:`CommandError` says why not. Commands call this
    before their work starts, so a long run never ends in an unwritable path."""
    p = Path(path)
    if p.is_dir():
        raise CommandError(f"{what} {p} is a folder, not a file")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise CommandError(f"{what} {p}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise CommandError(f"{what} {p} is not writable")
    return p


def check_output_dir(path, what: str = "output folder") -> Path:
    """``path`` as a Path if it is (or can be made) a writable folder; checked up front."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CommandError(f"{what} {p} exists and is not a folder")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise CommandError(f"{what} {p} is not writable ({probe} is not)")
    return p


def _as_type(check):
    def convert(text: str) -> Path:
        try:
            return check(text)
        except CommandError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = check.__name__
    return convert


#: argparse types: a writable file / folder path, checked when the arguments are parsed.
output_file = _as_type(check_output_file)
output_dir = _as_type(check_output_dir)


def check_shipped(pattern) -> None:
    """``--weights shipped`` needs a distilled student shipped for ``pattern`` (checked before
    any work)."""
    from nmaccel.model.minilm_sparse import SHIPPED, shipped_patterns
    got = "dense" if pattern is None else f"{pattern[0]}:{pattern[1]}"
    if pattern is None or tuple(pattern) not in SHIPPED:
        have = ", ".join(f"{a}:{b}" for a, b in SHIPPED)
        raise CommandError(f"--weights shipped: no distilled student ships for {got} "
                           f"(shipped: {have}); use --weights magnitude or auto")
    if tuple(pattern) not in shipped_patterns():
        raise CommandError(f"--weights shipped: the {got} student file is missing from this "
                           "installation")
