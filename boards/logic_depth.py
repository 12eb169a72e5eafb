"""Logic depth of a synthesized netlist: LUT levels from register to register.

A whole-chip place and route takes 10–15 minutes on the iCE40UP5K and about an hour on the
ECP5 85F here; the synthesized netlist that ``nmaccel build`` writes first (``top.json`` in its
``--out`` folder) already tells where the deep paths are. :func:`logic_depth` walks that flat
Yosys JSON netlist and gives, for every register (and every other clocked cell's input), the
deepest combinational path into it, counted in LUT levels:

* a LUT (``SB_LUT4``, ``LUT4``) is one level;
* a carry step (``SB_CARRY``, ``CCU2C`` from carry-in) is :data:`CARRY_LEVEL` of a level
  (on the UP5K 0.28–0.35 ns against ~3.2 ns for a LUT and its route at 98% utilisation);
  a carry cell's other inputs enter like a LUT's (``SB_CARRY``: half a level);
* ECP5's wide-function muxes (``PFUMX``, ``L6MUX21``) are :data:`MUX_LEVEL`;
* a path starts at 0 at a register output or a port, at 1 at a block RAM's or DSP's output
  (their clock-to-out is that of a LUT and more).

At 24 MHz (41.7 ns) the UP5K allows about 12 levels (``reports/boards/notes.md`` follows the
lean STA's fmax against this depth, build by build). The count is a
model (it knows no placement): use it to rank paths and compare netlists, not for ns.

``nmaccel bench logic-depth --netlist BUILD_DIR`` prints and writes the deepest endpoints, a
histogram, and (``--path NAME``) the cells of the deepest path into one endpoint.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

__all__ = ["CARRY_LEVEL", "MUX_LEVEL", "Endpoint", "DepthReport", "logic_depth",
           "load_netlist", "markdown", "run"]

#: Levels of one carry step (carry-in to carry-out).
CARRY_LEVEL = 0.11
#: Levels of an ECP5 wide-function mux (PFUMX, L6MUX21).
MUX_LEVEL = 0.3

# cell type -> (levels from a carry-in port, levels from any other input, carry-in ports)
_COMBINATIONAL = {
    "SB_LUT4": (1.0, 1.0, ()),
    "SB_CARRY": (CARRY_LEVEL, 0.5, ("CI",)),
    "LUT4": (1.0, 1.0, ()),
    "CCU2C": (CARRY_LEVEL, 1.0, ("CIN",)),
    "PFUMX": (MUX_LEVEL, MUX_LEVEL, ()),
    "L6MUX21": (MUX_LEVEL, MUX_LEVEL, ()),
}
# hard blocks whose outputs start a path one level in
_SLOW_SOURCES = re.compile(r"RAM|MAC|MULT|DP16KD|PDPW16KD|ALU54")
_BIT = re.compile(r"\[\d+\]$")


@dataclass(frozen=True)
class Endpoint:
    """The deepest path into one register (all its bits) or one clocked cell's input port."""
    name: str
    port: str
    levels: float
    start: str


@dataclass
class DepthReport:
    """:func:`logic_depth`'s answer: endpoints deepest first and a histogram of their depths
    (whole levels)."""
    top: str
    family: str
    endpoints: list[Endpoint]
    histogram: dict[int, int]
    cells: int
    _walk: Optional[Callable[[Endpoint], list]] = field(default=None, repr=False,
                                                        compare=False)

    def path(self, name: str) -> list[tuple[float, str, str]]:
        """``(levels, net, cell type)`` along the deepest path into the first endpoint whose
        name contains ``name``, from the endpoint back to its start."""
        for ep in self.endpoints:
            if name in ep.name:
                return self._walk(ep)
        raise ValueError(f"no endpoint named like {name!r} (see the endpoints list)")


def load_netlist(path) -> dict:
    """A Yosys JSON netlist from ``path`` (a file, or a build folder holding ``top.json``)."""
    p = Path(path)
    if p.is_dir():
        p = p / "top.json"
    if not p.is_file():
        raise ValueError(f"netlist {p} does not exist (give a Yosys JSON file or a "
                         "`nmaccel build` folder)")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"netlist {p} is not JSON: {exc}") from None


def _flag(module: dict, attribute: str) -> bool:
    # Yosys writes attribute values as binary strings ("00…01") or integers
    value = module.get("attributes", {}).get(attribute, 0)
    return int(str(value), 2) != 0 if isinstance(value, str) else bool(value)


def _pick_top(netlist: dict, top: str | None) -> tuple[str, dict]:
    modules = netlist.get("modules") if isinstance(netlist, dict) else None
    if not modules:
        raise ValueError("netlist has no modules: not a Yosys JSON netlist")
    if top is not None:
        if top not in modules:
            raise ValueError(f"top {top!r} is not a module of the netlist "
                             f"(it has {', '.join(sorted(modules))})")
        return top, modules[top]
    tops = [n for n, m in modules.items() if _flag(m, "top")]
    if len(tops) != 1:
        real = [n for n, m in modules.items() if not _flag(m, "blackbox")]
        if len(real) == 1:
            return real[0], modules[real[0]]
        raise ValueError(f"netlist has {len(tops)} modules marked top: name one "
                         f"(modules: {', '.join(sorted(modules))})")
    return tops[0], modules[tops[0]]


def logic_depth(netlist: dict, top: str | None = None) -> DepthReport:
    """Deepest combinational path into every clocked cell of the flat module ``top``.

    ``netlist``: a Yosys JSON netlist after ``synth_ice40`` or ``synth_ecp5`` (flat). Raises
    ``ValueError`` for a netlist that is not one, a hierarchical one, or a combinational loop.
    """
    name, mod = _pick_top(netlist, top)
    cells = mod.get("cells", {})
    types = Counter(c["type"] for c in cells.values())
    if not any(t in _COMBINATIONAL for t in types):
        raise ValueError(f"module {name!r} has no iCE40 or ECP5 LUT cells: give the netlist "
                         "after synth_ice40/synth_ecp5 (top.json of a build)")
    family = "ice40" if any(t.startswith("SB_") for t in types) else "ecp5"
    modules = netlist["modules"]
    sub = sorted(t for t in types if t in modules and t != name
                 and not _flag(modules[t], "blackbox"))
    if sub:
        raise ValueError(f"module {name!r} is not flat: it instantiates {', '.join(sub)}")

    names: dict[int, str] = {}
    for net, info in mod.get("netnames", {}).items():
        if net.startswith("$"):
            continue
        net = net.removeprefix("\\")                  # a Verilog escaped identifier
        for bit in info["bits"]:
            if isinstance(bit, int) and (bit not in names or len(net) < len(names[bit])):
                names[bit] = net
    driver: dict[int, tuple[str, str]] = {}
    for cname, c in cells.items():
        for port, way in c.get("port_directions", {}).items():
            if way == "output":
                for bit in c["connections"][port]:
                    if isinstance(bit, int):
                        driver[bit] = (cname, port)

    # arrival[bit] = (levels, start net, (cell, input port, input bit) the path came by)
    arrival: dict[int, tuple[float, str, tuple | None]] = {}

    def source(bit) -> tuple[float, str, None] | None:
        if not isinstance(bit, int):
            return 0.0, "constant", None
        if bit not in driver:
            return 0.0, names.get(bit, f"port bit {bit}"), None
        cname, _ = driver[bit]
        ctype = cells[cname]["type"]
        if ctype in _COMBINATIONAL:
            return None
        return (1.0 if _SLOW_SOURCES.search(ctype) else 0.0), names.get(bit, cname), None

    def solve(root: int) -> None:
        # depth-first, one unsolved input at a time, so the stack is the chain of cells the
        # walk came through and a bit met again on it is a loop
        stack, on_stack = [root], {root}
        while stack:
            bit = stack[-1]
            cname, _ = driver[bit]
            c = cells[cname]
            carry_w, other_w, carry_in = _COMBINATIONAL[c["type"]]
            best: tuple[float, str, tuple | None] = (0.0, "constant", None)
            pending = None
            for port, way in c["port_directions"].items():
                if way != "input" or pending is not None:
                    continue
                w = carry_w if port in carry_in else other_w
                for b in c["connections"][port]:
                    got = source(b)
                    if got is None:
                        got = arrival.get(b)
                    if got is None:
                        pending = b
                        break
                    # deeper wins; at a tie, a register start over a constant one
                    if (best[2] is None or got[0] + w > best[0]
                            or got[0] + w == best[0] and best[1] == "constant"):
                        best = (got[0] + w, got[1], (cname, port, b))
            if pending is None:
                arrival[bit] = best
                stack.pop()
                on_stack.discard(bit)
            elif pending in on_stack:
                raise ValueError(f"combinational loop through cell {cname!r} ({c['type']})")
            else:
                stack.append(pending)
                on_stack.add(pending)

    def arrive(bit) -> tuple[float, str, tuple | None]:
        got = source(bit)
        if got is not None:
            return got
        if bit not in arrival:
            solve(bit)
        return arrival[bit]

    def label(cname: str, c: dict) -> str:
        # a register by the name of its output net (bits together), else the cell's name
        q = c["connections"].get("Q")
        net = (_BIT.sub("", names[q[0]]) if q and isinstance(q[0], int) and q[0] in names
               else cname)
        return re.sub(r"_(SB|TRELLIS)_.*", "", net)

    deepest: dict[tuple[str, str], Endpoint] = {}
    deepest_bit: dict[tuple[str, str], int | str] = {}
    for cname, c in cells.items():
        if c["type"] in _COMBINATIONAL:
            continue
        name_ = label(cname, c)
        for port, way in c.get("port_directions", {}).items():
            if way != "input":
                continue
            for bit in c["connections"][port]:
                levels, start, _ = arrive(bit)
                key = (name_, port)
                if key not in deepest or levels > deepest[key].levels:
                    deepest[key] = Endpoint(name_, port, round(levels, 2),
                                            _BIT.sub("", start))
                    deepest_bit[key] = bit
    endpoints = sorted(deepest.values(), key=lambda e: (-e.levels, e.name, e.port))
    histogram = dict(sorted(Counter(int(e.levels) for e in endpoints).items()))
    report = DepthReport(name, family, endpoints, histogram, len(cells))

    def walk(ep: Endpoint) -> list[tuple[float, str, str]]:
        steps, bit = [], deepest_bit[(ep.name, ep.port)]
        while True:
            levels, start, via = arrive(bit)
            kind = cells[driver[bit][0]]["type"] if isinstance(bit, int) and bit in driver \
                else "port"
            steps.append((round(levels, 2), names.get(bit, start) if isinstance(bit, int)
                          else start, kind))
            if via is None:
                return steps
            bit = via[2]

    report._walk = walk
    return report


def markdown(report: DepthReport, count: int = 40, source: str = "") -> str:
    """The deepest ``count`` endpoints and the histogram as Markdown."""
    lines = [f"# Logic depth of `{report.top}` ({report.family}, {report.cells} cells)", ""]
    if source:
        lines += [f"Netlist: `{source}`", ""]
    lines += ["LUT levels of the deepest combinational path into each register (a carry step "
              f"{CARRY_LEVEL:g}, a wide mux {MUX_LEVEL:g}; paths from block RAM or DSP outputs "
              "start at 1). A model of the logic, not of placement or routing.", "",
              "Endpoints per depth: " + ", ".join(f"{k}: {v}" for k, v in
                                                  report.histogram.items()), "",
              "| levels | endpoint | port | from |", "|---:|---|---|---|"]
    lines += [f"| {e.levels:g} | `{e.name}` | {e.port} | `{e.start}` |"
              for e in report.endpoints[:count]]
    return "\n".join(lines) + "\n"


def run(netlist, out=None, count: int = 40, path: str | None = None,
        command: str = "nmaccel bench logic-depth") -> int:
    """``nmaccel bench logic-depth``: analyse ``netlist`` (a file or a build folder), print
    the table (and ``path``'s cells), write ``logic_depth.json``/``.md`` into ``out``
    (default: the netlist's folder)."""
    from dataclasses import asdict

    from nmaccel.files import write_atomic, write_json
    src = Path(netlist)
    report = logic_depth(load_netlist(src))
    trace = report.path(path) if path is not None else None
    folder = Path(out) if out is not None else (src if src.is_dir() else src.parent)
    text = markdown(report, count, str(src))
    if trace is not None:
        text += (f"\nDeepest path into `{path}` (endpoint first):\n\n| levels | net | driven by |"
                 "\n|---:|---|---|\n" + "".join(f"| {lv:g} | `{net}` | {kind} |\n"
                                                  for lv, net, kind in trace))
    write_json(folder / "logic_depth.json",
               {"command": command, "netlist": str(src), "top": report.top,
                "family": report.family, "cells": report.cells,
                "histogram": report.histogram,
                "endpoints": [asdict(e) for e in report.endpoints],
                **({"path": {"name": path, "steps": trace}} if trace is not None else {})})
    write_atomic(folder / "logic_depth.md", text)
    print(text, end="")
    print(f"wrote {folder / 'logic_depth.md'} and logic_depth.json")
    return 0
