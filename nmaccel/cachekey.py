"""Cache keys that cover everything a cached thing depends on, and where caches live.

:func:`source_closure` finds the source of a module and of every ``nmaccel`` module it
imports, transitively (read from the import statements, nothing is executed);
:func:`source_digest` hashes those sources, so a key built from it changes when any file the
cached result was computed by changes, and only then. Imports nothing else of nmaccel (any
layer may use it).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Optional

__all__ = ["cache_dir", "source_closure", "source_digest"]


def cache_dir(*parts: str) -> Path:
    """``$NMACCEL_CACHE`` (default ``~/.cache/nmaccel``) joined with ``parts``, created."""
    root = Path(os.environ.get("NMACCEL_CACHE", Path.home() / ".cache" / "nmaccel"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _module_file(name: str) -> Optional[Path]:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def _imported_modules(path: Path, name: str) -> list[str]:
    """``nmaccel`` modules named by the import statements of ``path`` (module ``name``)."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("nmaccel")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            if base.startswith("nmaccel"):
                found.append(base)
                found += [f"{base}.{a.name}" for a in node.names]
    return found


def source_closure(*modules: str) -> dict[str, Path]:
    """``{module name: source file}`` of ``modules`` and every ``nmaccel`` module they import,
    transitively, parent packages included."""
    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            continue
        seen[name] = path
        todo += _imported_modules(path, name)
        parent = name.rpartition(".")[0]
        if parent:
            todo.append(parent)
    return dict(sorted(seen.items()))


def source_digest(*modules: str) -> str:
    """SHA-256 (hex) of the names and sources of :func:`source_closure` of ``modules``."""
    h = hashlib.sha256()
    for name, path in source_closure(*modules).items():
        h.update(f"|{name}|".encode())
        h.update(path.read_bytes())
    return h.hexdigest()
