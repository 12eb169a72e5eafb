"""``nmaccel cache``: what the caches hold, and pruning them to a size.

Three caches grow with every design, flag, CPU, cocotb version and model configuration a
user tries: simulation models (``$NMACCEL_BUILD_DIR`` or ``~/.cache/nmaccel/builds``, one
folder each), their Verilog (``builds/verilog``) and the calibrated integer models
(``~/.cache/nmaccel/calibration``). Each entry's last use is its marker's modification time
(a run that uses an entry touches it). ``prune`` deletes the least recently used entries
until the three together fit ``--keep-gb``; a build another process holds locked is kept.
A deleted entry is simply made again when next needed.
"""

from __future__ import annotations

import fcntl
import shutil
from dataclasses import dataclass
from pathlib import Path

from nmaccel.cli.args import CommandError

__all__ = ["HELP", "DESCRIPTION", "add_arguments", "run", "Entry", "entries", "prune"]

HELP = "show the caches' sizes, or prune them to a size (least recently used first)"
DESCRIPTION = __doc__


@dataclass
class Entry:
    kind: str                 # "model", "verilog" or "calibration"
    paths: list               # what deleting it removes
    bytes: int
    last_use: float           # modification time of its marker


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.exists() else 0


def entries() -> list[Entry]:
    """Every cache entry (see the module docstring), oldest use first."""
    from nmaccel.cachekey import cache_dir
    from nmaccel.sim.build_cache import MARKER, cache_root
    out = []
    root = cache_root()
    if root.is_dir():
        for d in root.iterdir():
            if d.is_dir() and d.name != "verilog":
                marker = d / MARKER
                out.append(Entry("model", [d], _size(d),
                                 (marker if marker.exists() else d).stat().st_mtime))
        vdir = root / "verilog"
        if vdir.is_dir():
            for v in vdir.glob("*.v"):
                side = v.with_name(v.name + ".sha256")
                out.append(Entry("verilog", [v, side], _size(v) + _size(side),
                                 v.stat().st_mtime))
    calib = cache_dir("calibration")
    for f in calib.glob("*.pkl"):
        out.append(Entry("calibration", [f], _size(f), f.stat().st_mtime))
    return sorted(out, key=lambda e: e.last_use)


def _locked(entry: Entry) -> bool:
    """A model folder whose build lock another process holds."""
    if entry.kind != "model":
        return False
    lock = entry.paths[0].with_name(entry.paths[0].name + ".lock")
    if not lock.exists():
        return False
    with open(lock) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def prune(keep_bytes: int, dry_run: bool = False) -> tuple[list[Entry], int]:
    """Delete least recently used entries until the caches hold at most ``keep_bytes``;
    returns the deleted entries and the bytes left."""
    all_entries = entries()
    total = sum(e.bytes for e in all_entries)
    removed = []
    for e in all_entries:
        if total <= keep_bytes:
            break
        if _locked(e):
            continue
        if not dry_run:
            for p in e.paths:
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
        removed.append(e)
        total -= e.bytes
    return removed, total


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("info", help="sizes and entry counts per cache")
    pr = sub.add_parser("prune", help="delete the least recently used entries")
    pr.add_argument("--keep-gb", type=float, required=True,
                    help="the most the three caches may hold afterwards, GB")
    pr.add_argument("--dry-run", action="store_true", help="only say what would go")


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def run(args) -> int:
    if args.action == "info":
        es = entries()
        for kind in ("model", "verilog", "calibration"):
            sel = [e for e in es if e.kind == kind]
            print(f"{kind:12} {len(sel):5} entries  {_gb(sum(e.bytes for e in sel))}")
        print(f"{'total':12} {len(es):5} entries  {_gb(sum(e.bytes for e in es))}")
        return 0
    if not (args.keep_gb >= 0 and args.keep_gb == args.keep_gb):
        raise CommandError(f"--keep-gb must be a number >= 0, not {args.keep_gb}")
    removed, left = prune(int(args.keep_gb * 1e9), dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {len(removed)} entries ({_gb(sum(e.bytes for e in removed))}); "
          f"{_gb(left)} left")
    return 0
