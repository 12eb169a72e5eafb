"""The block-fmax study's report: ECP5 and iCE40 tables, and its argument checks."""

import pytest

from nmaccel.studies.block_fmax import markdown, run


def _row(name, fmax, met, harness=None):
    r = {"design": "sta", "block": name, "fmax_mhz": fmax, "timing_met": met,
         "resources": {"LUT": [100, 5280], "FF": [50, 5280], "DSP": [1, 8], "BRAM": [2, 30]},
         "critical_path": {"delay_ns": 30.0, "logic_ns": 10.0, "routing_ns": 20.0,
                           "sources": ["hw/x.py:1"]}}
    if harness is not None:
        r["harness_ff"] = harness
    return r


def test_ice40_table_gives_the_harness_flip_flops():
    res = {"command": "nmaccel bench block-fmax --board icebreaker", "board": "icebreaker",
           "board_name": "iCEBreaker (iCE40UP5K)", "sta_preset": "icebreaker",
           "conv_preset": "icebreaker", "freq_mhz": 24.0, "device": "iCE40UP5K-SG48",
           "speed": None, "router": "router1",
           "rows": [_row("SharedVectorUnit", 25.1, True, 211), _row("Slow", 20.0, False, 9)]}
    md = markdown(res)
    assert "serial harness" in md and "| harness FF |" in md
    assert "| sta | SharedVectorUnit | 25.1 | yes | 100 | 50 | 1 | 2 |" in md
    assert md.rstrip().endswith("1 of 2 blocks miss 24 MHz alone: sta Slow (20.0 MHz).")


def test_ecp5_table_has_no_harness_column():
    res = {"command": "nmaccel bench block-fmax", "sta_preset": "ulx3s_lite",
           "conv_preset": "ulx3s", "freq_mhz": 100.0, "device": "LFE5U-85F-BG381",
           "speed": 6, "router": "router1", "rows": [_row("DrainUnit", 120.0, True)]}
    md = markdown(res)
    assert "out-of-context" in md and "harness" not in md and "speed 6" in md


def test_bad_requests_are_named():
    with pytest.raises(ValueError, match="board must be one of .*not 'nope'"):
        run(board="nope", progress=False)
    with pytest.raises(ValueError, match="--whole needs an ECP5 board"):
        run(board="icebreaker", whole=True, progress=False)
    with pytest.raises(ValueError, match="--only names unknown blocks"):
        run(board="icebreaker", only=["Nope"], progress=False)
