"""Writing result files safely: every output is written to a temporary file in the same
folder and renamed over the target, so an interrupted run never leaves a half-written file.
Imports nothing else of nmaccel (any layer may use it)."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Union

__all__ = ["write_atomic", "write_json", "edit_json", "save_figure", "write_study", "touch"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Union[str, os.PathLike], data: Union[str, bytes]) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` through a temporary file and an
    atomic rename; creates missing parent folders. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would (the
        # replaced file's, else 0666 less the umask)
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def write_json(path: Union[str, os.PathLike], obj: Any, indent: int = 2) -> Path:
    """``obj`` as JSON (with a final newline) at ``path``, atomically."""
    return write_atomic(path, json.dumps(obj, indent=indent) + "\n")


def edit_json(path: Union[str, os.PathLike], edit) -> Any:
    """Load the JSON file ``path``, let ``edit(obj)`` change the object in place, write it back
    compactly and atomically; returns what ``edit`` returned."""
    path = Path(path)
    obj = json.loads(path.read_text())
    result = edit(obj)
    write_atomic(path, json.dumps(obj))
    return result


def save_figure(fig, path: Union[str, os.PathLike], **kwargs) -> Path:
    """A matplotlib figure saved (format from the suffix) to ``path`` atomically."""
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
    return write_atomic(path, buf.getvalue())


def write_study(out: Union[str, os.PathLike], stem: str, res: Any, markdown: str,
                plot=None) -> Path:
    """A study's outputs in folder ``out``: ``stem.json`` (``res``), ``stem.md``
    (``markdown``) and, with ``plot(res, path)``, ``stem.png``; all atomic. Returns ``out``."""
    out = Path(out)
    write_json(out / f"{stem}.json", res)
    write_atomic(out / f"{stem}.md", markdown)
    if plot is not None:
        plot(res, out / f"{stem}.png")
    return out


def touch(path: Union[str, os.PathLike]) -> None:
    """Mark a cache entry as used now (its modification time: ``nmaccel cache prune``
    deletes the least recently used); a read-only cache is left as it is."""
    try:
        os.utime(path)
    except OSError:
        pass
