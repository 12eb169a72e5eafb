"""ECP5 resources of the STA's blocks, one at a time: where the logic of a board build goes.

Each block of :class:`nmaccel.hw.sta.core.StaCore` for a preset (default ``ulx3s_board``) is
synthesized alone with YoWASP's Yosys (``synth_ecp5`` to LUT mapping, see
:mod:`nmaccel.boards.synth_stats`), with DSP inference (multipliers to MULT18X18D) and with
``-nodsp`` (the STA board build's setting, since the array's R·C·L multipliers outnumber the
ECP5-85F's 156 MULT18X18D). ``count`` is how many of the block the core instantiates. Writes
``reports/sta_resources.{json,md}``.

Usage: ``nmaccel bench sta-resources [--preset ulx3s_board] [--out reports]``
"""

from __future__ import annotations

from pathlib import Path

from nmaccel.boards.blocks import sta_blocks
from nmaccel.boards.measured import records
from nmaccel.boards.synth_stats import synth_ecp5_stats, yosys_version
from nmaccel.files import write_atomic, write_json
from nmaccel.spec.config import sta_preset

__all__ = ["run"]


def board_entry_any(board: str, design: str, preset: str):
    """The measured build record of ``design``/``preset`` on ``board`` (fitting or not)."""
    return next((e for e in records() if (e.get("board"), e.get("design"), e.get("preset"))
                 == (board, design, preset)), None)


def run(preset: str = "ulx3s_board", out="reports") -> int:
    """Synthesize every STA block of ``preset`` alone; writes ``out/sta_resources.{json,md}``."""
    cfg = sta_preset(preset)
    rows = []
    for name, count, make, what in sta_blocks(cfg):
        for nodsp in (True, False):
            r = synth_ecp5_stats(make(), "blk", nodsp)
            r.update(block=name, count=count, what=what, nodsp=nodsp)
            rows.append(r)
            print(f"{name:18s} x{count} {'nodsp' if nodsp else 'dsp  '} LUT(total) "
                  f"{r['luts_total']:7d} FF {r['ff']:6d} DSP {r['dsp']:4d} ({r['seconds']} s)",
                  flush=True)
    full = board_entry_any("ulx3s", "sta", preset)
    res = {"preset": preset, "config": cfg.to_dict(), "rows": rows,
           "tool": yosys_version().split(" (")[0],
           "board_build": None if full is None else
           {"resources": full["resources"], "fits": full.get("fits"),
            "command": full.get("command")}}
    out = Path(out)
    write_json(out / "sta_resources.json", res)
    lines = [f"# STA blocks on ECP5 (`{preset}`: {cfg.rows}x{cfg.cols} PEs x {cfg.lanes} "
             "lanes)", "",
             f"Each block synthesized alone by `nmaccel bench sta-resources --preset "
             f"{preset}` (Yosys `synth_ecp5` to LUT mapping, then gate2lut: LUT counts are "
             f"pessimistic next to a full ABC-mapped build; {res['tool']}). LUT(total) = "
             "LUT4 + 2·CCU2C; × count = what the core's instances of the block take.", "",
             "| block | what | count | LUT(total) -nodsp | × count | FF | LUT(total) with DSP "
             "| DSP × count |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    total_nodsp = total_dsp = dsp = 0
    for name, count, _, what in sta_blocks(cfg):
        a = next(r for r in rows if r["block"] == name and r["nodsp"])
        b = next(r for r in rows if r["block"] == name and not r["nodsp"])
        total_nodsp += a["luts_total"] * count
        total_dsp += b["luts_total"] * count
        dsp += b["dsp"] * count
        lines.append(f"| {name} | {what} | {count} | {a['luts_total']} | "
                     f"{a['luts_total'] * count} | {a['ff'] * count} | {b['luts_total']} | "
                     f"{b['dsp'] * count} |")
    lines.append(f"| **sum of blocks** | | | | **{total_nodsp}** | | **{total_dsp}** | "
                 f"**{dsp}** |")
    if full:
        lut, avail = full["resources"]["LUT"]
        lines += ["", f"The whole board build (`{full.get('command')}`, ABC9-mapped, -nodsp, "
                      f"controller and host bridge included): {lut} LUT of {avail} "
                      f"({'fits' if full.get('fits') else 'does not fit'}), about "
                      f"{total_nodsp / lut:.1f}x less than the blocks' gate2lut sum: read the "
                      "columns as shares, not absolute counts."]
    write_atomic(out / "sta_resources.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0

