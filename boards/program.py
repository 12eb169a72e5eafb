"""Load a bitstream onto a board with openFPGALoader (``nmaccel build --program``)."""

from __future__ import annotations

import shutil
import subprocess

from nmaccel.boards.targets import board_target

__all__ = ["ProgramError", "find_loader", "program_board", "LOADER_SECONDS"]

#: Longest openFPGALoader run before it is stopped (a large ECP5 bitstream takes ~30 s).
LOADER_SECONDS = 300


class ProgramError(RuntimeError):
    """openFPGALoader is missing or failed."""


def find_loader() -> str:
    """Path of openFPGALoader, or :class:`ProgramError` saying how to get it."""
    loader = shutil.which("openFPGALoader")
    if loader is None:
        raise ProgramError("--program needs openFPGALoader on PATH (https://github.com/"
                           "trabucayre/openFPGALoader); build without --program and load "
                           "the bitstream with your own tool")
    return loader


def program_board(board: str, bitstream: str) -> None:
    """Write ``bitstream`` to ``board`` (volatile SRAM configuration)."""
    loader = find_loader()
    try:
        proc = subprocess.run([loader, "-b", board_target(board).loader_board, bitstream],
                              check=False, timeout=LOADER_SECONDS)
    except subprocess.TimeoutExpired:
        raise ProgramError(f"openFPGALoader did not finish within {LOADER_SECONDS} s") from None
    if proc.returncode:
        raise ProgramError(f"openFPGALoader failed (exit {proc.returncode})")
