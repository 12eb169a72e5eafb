"""ECP5 resources of the STA's blocks, one at a time: where the logic of a board build goes.

Each block of :class:`nmaccel.hw.sta.core.StaCore` for a preset (default ``ulx3s_board``) is
synthesized alone with YoWASP's Yosys (``synth_ecp5`` to LUT mapping, see
:mod:`nmaccel.boards.synth_stats`), with DSP inference (multipliers to MULT18X18D) and with
``-nodsp`` (the STA board build's setting, since the array's R·C·L multipliers outnumber the
ECP5-85F's 156 MULT18X18D). ``count`` is how many of the block the core instantiates. Writes
``reports/sta_resources.{json,md}``.

Usage: ``python benchmarks/sta_resources.py [--preset ulx3s_board] [--out reports]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nmaccel.boards.blocks import sta_blocks
from nmaccel.boards.synth_stats import synth_ecp5_stats, yosys_version
from nmaccel.spec.config import STA_PRESETS, sta_preset


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="ulx3s_board", choices=list(STA_PRESETS))
    ap.add_argument("--out", default="reports")
    args = ap.parse_args(argv)
    cfg = sta_preset(args.preset)
    rows = []
    for name, count, make, what in sta_blocks(cfg):
        for nodsp in (True, False):
            r = synth_ecp5_stats(make(), "blk", nodsp)
            r.update(block=name, count=count, what=what, nodsp=nodsp)
            rows.append(r)
            print(f"{name:18s} x{count} {'nodsp' if nodsp else 'dsp  '} LUT(total) "
                  f"{r['luts_total']:7d} FF {r['ff']:6d} DSP {r['dsp']:4d} ({r['seconds']} s)",
                  flush=True)
    build = Path(args.out) / "boards" / f"ulx3s-sta-{args.preset}.json"
    full = json.loads(build.read_text()) if build.exists() else None
    res = {"preset": args.preset, "config": cfg.to_dict(), "rows": rows,
           "tool": yosys_version().split(" (")[0],
           "board_build": None if full is None else
           {"resources": full["resources"], "fits": full.get("fits"),
            "command": full.get("command")}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sta_resources.json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [f"# STA blocks on ECP5 (`{args.preset}`: {cfg.rows}x{cfg.cols} PEs x {cfg.lanes} "
             "lanes)", "",
             f"Each block synthesized alone by `python benchmarks/sta_resources.py --preset "
             f"{args.preset}` (Yosys `synth_ecp5` to LUT mapping, then gate2lut: LUT counts are "
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
    (out / "sta_resources.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
