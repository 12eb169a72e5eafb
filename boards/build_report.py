"""Resource and timing figures of one board build, read from the tools' own reports.

Sources
    nextpnr ``--report top.report.json`` (machine-readable: ``utilization`` = ``{bel type:
    {used, available}}``, ``fmax`` = ``{clock net: {achieved, constraint}}`` in MHz, after
    routing); the Yosys log ``top.rpt`` for the flip-flop count on iCE40 (nextpnr counts
    iCE40 logic cells, each holding one LUT4 and one FF, not FFs).

Resource keys (``[used, available]``)
    ``LUT``  iCE40 ``ICESTORM_LC`` logic cells / ECP5 ``TRELLIS_COMB`` LUT4s;
    ``FF``   iCE40 ``SB_DFF*`` cells from Yosys (available = logic cells) / ECP5 ``TRELLIS_FF``;
    ``DSP``  ``ICESTORM_DSP`` (SB_MAC16) / ``MULT18X18D``;
    ``BRAM`` ``ICESTORM_RAM`` (EBR, 4 kbit) / ``DP16KD`` (18 kbit);
    ``SPRAM`` (iCE40UP ``ICESTORM_SPRAM``) and ``LUTRAM`` (ECP5 ``TRELLIS_RAMW``) when present.
"""

from __future__ import annotations

import json
import pathlib
import re

__all__ = ["count_yosys_ffs", "fmax_for", "markdown", "outcome", "parse_utilisation",
           "read_nextpnr_report", "resources"]

_MAP = {
    "ice40": {"LUT": "ICESTORM_LC", "DSP": "ICESTORM_DSP", "BRAM": "ICESTORM_RAM",
              "SPRAM": "ICESTORM_SPRAM"},
    "ecp5": {"LUT": "TRELLIS_COMB", "FF": "TRELLIS_FF", "DSP": "MULT18X18D", "BRAM": "DP16KD",
             "LUTRAM": "TRELLIS_RAMW"},
}


def read_nextpnr_report(path) -> dict:
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"nextpnr report {path} is missing (did place and route run?)")
    return json.loads(path.read_text())


def parse_utilisation(tim_text: str) -> dict:
    """nextpnr's "Device utilisation" lines (``TYPE: used/ available pct%``) as the report's
    ``utilization`` dict; used when placement failed and no JSON report was written."""
    util = {}
    block = tim_text[tim_text.rfind("Device utilisation"):]
    for m in re.finditer(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", block, re.MULTILINE):
        util.setdefault(m.group(1), {"used": int(m.group(2)), "available": int(m.group(3))})
    return util


def count_yosys_ffs(log_text: str) -> int:
    """Flip-flops in the last ``stat`` of a Yosys log (iCE40 ``SB_DFF*`` cells)."""
    # The last statistics block of synth_ice40 lists cells as "<count> <type>" (Yosys ≥ 0.4x)
    # or "<type> <count>" (older); take the last block only.
    start = log_text.rfind("Printing statistics")
    block = log_text[start:] if start >= 0 else log_text
    # a flattened design has one module; skip the "design hierarchy" repeat of the totals
    if "=== design hierarchy ===" in block:
        block = block[:block.index("=== design hierarchy ===")]
    total = 0
    for line in block.splitlines():
        m = re.match(r"\s*(\d+)\s+(?:[\d.]+\s+)?(SB_DFF\w*)\s*$", line) or \
            re.match(r"\s*(SB_DFF\w*)\s+(\d+)\s*$", line)
        if m:
            a, b = m.groups()
            total += int(a) if a.isdigit() else int(b)
    return total


def resources(family: str, report: dict, yosys_log: str = "") -> dict:
    """``{"LUT": [used, avail], "FF": [...], "DSP": [...], "BRAM": [...], ...}``."""
    util = report.get("utilization", {})
    out = {}
    for key, bel in _MAP[family].items():
        if bel in util:
            out[key] = [int(util[bel]["used"]), int(util[bel]["available"])]
    if family == "ice40" and "LUT" in out:
        out["FF"] = [count_yosys_ffs(yosys_log), out["LUT"][1]]
    order = ["LUT", "FF", "DSP", "BRAM", "SPRAM", "LUTRAM"]
    return {k: out[k] for k in order if k in out}


def fmax_for(report: dict, target_mhz: float) -> tuple[str, float, float]:
    """``(clock net, achieved MHz, constraint MHz)`` of the clock constrained nearest to
    ``target_mhz`` (the PLL output; the pad clock feeding only the PLL has no paths)."""
    fmax = report.get("fmax", {})
    if not fmax:
        raise ValueError("nextpnr report has no fmax entry (no clocked logic was timed)")
    name = min(fmax, key=lambda n: abs(float(fmax[n].get("constraint", 0)) - target_mhz))
    return name, float(fmax[name]["achieved"]), float(fmax[name]["constraint"])


def outcome(result: dict) -> str:
    """How far a build record got: ``"unfit"`` (over-used resources), ``"packed"`` (a
    ``--pack-only`` fit check: it fits, nothing placed or routed) or ``"routed"`` (an fmax).
    Records written before ``routed`` existed are routed when they have an fmax."""
    if result.get("fits") is False:
        return "unfit"
    routed = result.get("routed")
    if routed is None:
        routed = bool(result.get("fmax_mhz"))
    return "routed" if routed else "packed"


def markdown(result: dict) -> str:
    """One build's Markdown report."""
    done = outcome(result)
    lines = [f"# {result['board_title']}: {result['design']} `{result['preset']}`", "",
             f"- command: `{result['command']}`",
             f"- host link: {result['host_link']}",
             (f"- clock: {result['pll']['f_in_mhz']:g} MHz → PLL → "
              f"{result['pll']['f_out_mhz']:g} MHz "
              f"({result['pll']['primitive']} {result['pll']['params']})"),
             (f"- post-route fmax: **{result['fmax_mhz']:.2f} MHz** (target "
              f"{result['target_mhz']:g} MHz): timing "
              f"**{'met' if result['timing_met'] else 'NOT met'}**" +
              (f"; a bitstream that runs reliably needs `--freq {result['safe_freq_mhz']:g}` "
               f"or lower" if result.get("safe_freq_mhz") else "")
              if done == "routed" else
              "- **fits** the device after packing (`--pack-only` fit check: not placed or "
              "routed, no fmax)" if done == "packed" else
              f"- **does not fit** the device: {', '.join(result['overused'])} "
              f"(placement stopped; no fmax)"),
             (f"- build time: {result['build_seconds']:.0f} s (synthesis "
              f"{result['stage_seconds'].get('synth', 0):.0f} s, "
              f"{'nextpnr packing' if done == 'packed' else 'place and route'} "
              f"{result['stage_seconds'].get('pnr', 0):.0f} s) on {result['host']}"),
             f"- tools: {result['tools']}" + (
                 f", nextpnr {result['router']}"
                 + (f", placer {result['placer']}" if result.get("placer") else "")
                 + f", seed {result['seed']}" if result.get("router") and done != "packed"
                 else ""),
             ]
    if result.get("carry_ends"):
        ce = result["carry_ends"]
        lines.append(f"- carry chains: {ce['chains']}, their ends rewritten before nextpnr "
                     f"(`boards/carry_ends.py`): {ce['cells_saved']} logic cells of "
                     f"nextpnr's feed-ins/feed-outs saved")
    if result.get("bram_outreg"):
        bo = result["bram_outreg"]
        lines.append(f"- block RAM output registers (`boards/bram_outreg.py`): "
                     f"{bo['ports_absorbed']} of {bo['ports_read']} DP16KD reads registered "
                     f"in the block RAM, {bo['flipflops_removed']} flip-flops absorbed")
    lines += ["", "| resource | used | available | % |", "|---|---:|---:|---:|"]
    for key, (used, avail) in result["resources"].items():
        pct = 100.0 * used / avail if avail else 0.0
        lines.append(f"| {key} | {used} | {avail} | {pct:.1f} |")
    if result.get("critical_path"):
        cp = result["critical_path"]
        lines += ["", "Critical path (nextpnr, start → end):", "",
                  f"`{cp['from']}` → `{cp['to']}`"]
        if "logic_ns" in cp:
            lines += ["", f"{cp['delay_ns']:.2f} ns: {cp['logic_ns']:.2f} ns logic, "
                          f"{cp['routing_ns']:.2f} ns routing"]
        if cp.get("sources"):
            lines += ["", "Its logic comes from: " + ", ".join(f"`{x}`" for x in cp["sources"])]
    return "\n".join(lines) + "\n"


def critical_path(report: dict, clock: str | None = None) -> dict | None:
    """Start cell, end cell and total delay (ns) of nextpnr's first reported critical path
    (with ``clock``, the first one from and to that clock net, else from or to it: on the iCE40
    nextpnr lists a path of its packer's constant-net clock first), its logic and routing
    shares, and the project source lines its logic comes from (in path order, Yosys' own cell
    libraries left out)."""
    root = str(pathlib.Path(__file__).resolve().parents[1]) + "/"
    paths = report.get("critical_paths", [])
    if clock is not None:
        def ends(p):
            return sum(str(p.get(end, "")).split()[-1:] == [clock] for end in ("from", "to"))
        paths = ([p for p in paths if ends(p) == 2] or [p for p in paths if ends(p) == 1] or
                 paths)
    for path in paths:
        steps = path.get("path", [])
        if steps:
            sources: list[str] = []
            for step in steps:
                for src in step.get("sources", []):
                    if src.startswith(root) and src[len(root):] not in sources:
                        sources.append(src[len(root):])
            total = sum(float(s.get("delay", 0)) for s in steps)
            routing = sum(float(s.get("delay", 0)) for s in steps if s.get("type") == "routing")
            return {"from": steps[0].get("from", {}).get("cell", "?"),
                    "to": steps[-1].get("to", {}).get("cell", "?"),
                    "delay_ns": round(total, 3),
                    "logic_ns": round(total - routing, 3), "routing_ns": round(routing, 3),
                    "sources": sources,
                    "clock": f"{path.get('from', '?')} -> {path.get('to', '?')}"}
    return None


__all__ += ["critical_path"]
