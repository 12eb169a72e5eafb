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
import json
import os
import sys
from pathlib import Path
from typing import Optional

__all__ = ["cache_dir", "read_memo", "source_closure", "source_digest", "write_memo"]


def cache_dir(*parts: str) -> Path:
    """``$NMACCEL_CACHE`` (default ``~/.cache/nmaccel``) joined with ``parts``, created."""
    root = Path(os.environ.get("NMACCEL_CACHE", Path.home() / ".cache" / "nmaccel"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _find_spec(name: str):
    """The module spec of ``name`` found without importing it or its parent packages
    (``importlib.util.find_spec`` imports the parents; for a name ``module.attribute`` from a
    ``from module import attribute`` that imported the module itself, and Amaranth with it).
    ``None`` if ``name`` is not a module."""
    path, spec = None, None
    parts = name.split(".")
    for i in range(len(parts)):
        if i and path is None:               # the parent is a module, not a package
            return None
        full = ".".join(parts[:i + 1])
        module = sys.modules.get(full)
        spec = getattr(module, "__spec__", None) if module is not None else None
        if spec is None:
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                try:
                    spec = find(full, path) if find is not None else None
                except (ImportError, ValueError, TypeError):
                    spec = None
                if spec is not None:
                    break
        if spec is None:
            return None
        path = spec.submodule_search_locations
    return spec


def _module_file(name: str) -> Optional[Path]:
    spec = _find_spec(name)
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def read_memo(path: Path) -> dict:
    """The JSON object kept in ``path`` by :func:`write_memo`; ``{}`` if it is missing or
    damaged (a memo only saves work: losing it costs a recomputation)."""
    try:
        memo = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def write_memo(path: Path, memo: dict) -> None:
    """Save ``memo`` to ``path`` as JSON (write-then-rename; a failed save is ignored)."""
    path = Path(path)
    try:
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo))
        os.replace(tmp, path)
    except OSError:
        pass


#: ``{"<module>|<sha256 of its source>": [imported nmaccel modules]}``, loaded from
#: ``cache_dir("imports")`` and saved there once per :func:`source_closure` that added to it
#: (parsing every module of a closure took ~0.2 s per key)
_IMPORTS: Optional[dict] = None
_IMPORTS_ADDED = False


def _imports_file() -> Path:
    return cache_dir("imports") / "imports.json"


def _imported_modules(path: Path, name: str) -> list[str]:
    """``nmaccel`` modules named by the import statements of ``path`` (module ``name``),
    remembered per module name and source digest."""
    global _IMPORTS, _IMPORTS_ADDED
    text = path.read_text()
    key = f"{name}|{hashlib.sha256(text.encode()).hexdigest()}"
    if _IMPORTS is None:
        _IMPORTS = read_memo(_imports_file())
    found = _IMPORTS.get(key)
    if isinstance(found, list) and all(isinstance(m, str) for m in found):
        return found
    found = _parse_imports(text, path, name)
    _IMPORTS[key] = found
    _IMPORTS_ADDED = True
    return found


def _parse_imports(text: str, path: Path, name: str) -> list[str]:
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(text)):
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
    global _IMPORTS_ADDED
    if _IMPORTS_ADDED:
        write_memo(_imports_file(), _IMPORTS)
        _IMPORTS_ADDED = False
    return dict(sorted(seen.items()))


def source_digest(*modules: str) -> str:
    """SHA-256 (hex) of the names and sources of :func:`source_closure` of ``modules``."""
    h = hashlib.sha256()
    for name, path in source_closure(*modules).items():
        h.update(f"|{name}|".encode())
        h.update(path.read_bytes())
    return h.hexdigest()
