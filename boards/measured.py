"""Measured board builds, shipped with the package: one record per target in
``nmaccel/boards/measured/<board>-<design>-<preset>.json`` (``boards/measured/`` in a source
checkout), as ``nmaccel build ... --baseline`` wrote them (resources, post-route fmax, target,
timing, the command). The demo and the report project accelerator time from these, so an
installed package gives the same figures as the repository; ``reports/boards.md`` and
``reports/boards/*.md`` are views of the same records.

Every reader takes an optional ``source`` folder (default: the packaged records), so tests
and users can point them at other builds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from nmaccel.boards.build_report import outcome

__all__ = ["MEASURED", "records", "record_name", "board_entry", "board_fmax", "fmax_missing",
           "preset_board", "preset_status"]

#: The packaged records.
MEASURED = Path(__file__).resolve().parent / "measured"


def record_name(result: dict) -> str:
    """File stem of a build's record: ``<board>-<design>-<preset>``."""
    return f"{result['board']}-{result['design']}-{result['preset']}"


def records(source: Optional[Path] = None) -> list[dict]:
    """Every build record in ``source`` (default :data:`MEASURED`), sorted by name; an
    unreadable file is skipped."""
    folder = Path(source) if source is not None else MEASURED
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def board_entry(board: str, design: str, preset: str,
                source: Optional[Path] = None) -> Optional[dict]:
    """The record of ``design``/``preset`` built for ``board`` that has an fmax, or ``None``."""
    for e in records(source):
        if (e.get("board") == board and e.get("design") == design
                and e.get("preset") == preset and e.get("fmax_mhz")):
            return e
    return None


def board_fmax(board: str, design: str, preset: str,
               source: Optional[Path] = None) -> Optional[float]:
    """Post-route fmax (MHz) of ``design``/``preset`` on ``board``; ``None`` when not measured."""
    entry = board_entry(board, design, preset, source)
    return None if entry is None else float(entry["fmax_mhz"])


def _packed(e: dict) -> str:
    """The logic, block RAM and DSPs a fit check packed, ``"LUT 73928/83640, BRAM ..."``."""
    res = e.get("resources") or {}
    return ", ".join(f"{k} {res[k][0]}/{res[k][1]}" for k in ("LUT", "BRAM", "DSP") if k in res)


def fmax_missing(board: str, design: str, preset: str, source: Optional[Path] = None) -> str:
    """Why there is no fmax for ``design``/``preset`` on ``board``."""
    for e in records(source):
        if e.get("design") == design and e.get("preset") == preset:
            where = e.get("board_title", e.get("board"))
            if outcome(e) == "unfit":
                return (f"the `{preset}` {design} build does not fit the {where}"
                        f" ({', '.join(e.get('overused') or [])}; reports/boards.md)")
            if outcome(e) == "packed" and e.get("board") == board:
                return (f"the `{preset}` {design} build fits the {where} after packing "
                        f"({_packed(e)}) but has not been placed and routed")
    return f"no {board} board build of `{preset}` among the measured builds"


def preset_board(preset: str, design: str, board: str,
                 source: Optional[Path] = None) -> tuple[Optional[str], Optional[dict]]:
    """The board whose build gives ``preset``'s fmax: ``board`` if it has one, else any
    measured board with that design and preset; ``(None, None)`` if none."""
    e = board_entry(board, design, preset, source)
    if e is not None:
        return board, e
    for e in records(source):
        if e.get("design") == design and e.get("preset") == preset and e.get("fmax_mhz"):
            return e.get("board"), e
    return None, None


def preset_status(design: str, preset: str, source: Optional[Path] = None) -> str:
    """Where ``design``/``preset`` runs, from the measured builds: ``"board build: <board>
    at <fmax> MHz post-route"`` for each board it was routed on, else ``"simulation only:
    ..."`` (it does not fit the boards it was built for, a fit check packed it but nothing was
    routed, or it was never built for one)."""
    fits, unrouted = [], []
    for e in records(source):
        if e.get("design") != design or e.get("preset") != preset:
            continue
        where = e.get("board_title", e.get("board"))
        done = outcome(e)
        if done == "unfit":
            unrouted.append(f"does not fit the {where} ({', '.join(e.get('overused') or [])})")
        elif done == "packed":
            unrouted.append(f"fits the {where} after packing ({_packed(e)}), not yet placed "
                            f"and routed")
        elif e.get("fmax_mhz"):
            fits.append(f"{where} at {float(e['fmax_mhz']):.2f} MHz post-route")
    if fits:
        return "board build: " + "; ".join(fits) + " (reports/boards.md)"
    if unrouted:
        return "simulation only: " + "; ".join(unrouted) + " (reports/boards.md)"
    return "simulation only: no board build of it among the measured builds"

