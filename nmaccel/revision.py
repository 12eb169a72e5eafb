"""Which source a result came from: the short git commit of the checkout nmaccel runs from.
Imports nothing else of nmaccel (any layer may use it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["git_rev"]

_HERE = Path(__file__).resolve().parent


def git_rev() -> str:
    """Short commit of the checkout this package runs from, ``+dirty`` when tracked files
    differ from it; ``"?"`` outside a git checkout (an installed copy) or without git."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=_HERE,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        if not rev:
            return "?"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=_HERE, capture_output=True, text=True, timeout=30).stdout
        return rev + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "?"
