"""Weights from SDRAM, per layer (the layer compiled with FETCHes, its cycles from the cycle
model): the schedule obeys the double-buffering bounds, the bytes follow the WBUF/PBUF
formats, and the CLI refuses a clock the chip cannot run."""

import pytest

from nmaccel.spec.config import sta_preset
from nmaccel.studies.roofline import crossovers, layer_schedule


@pytest.fixture(scope="module")
def rows():
    cfg = sta_preset("ulx3s")
    return {nm: layer_schedule(cfg, nm, 16, 100.0) for nm in (None, (2, 4), (1, 4))}


def test_schedule_bounds_and_bytes(rows):
    d = rows[None]
    for r in rows.values():
        # double buffering hides at most all of one of the two; never more
        assert max(r["compute_cycles"], r["fetch_cycles"]) <= r["latency_cycles"] \
            <= r["serial_cycles"]
        assert r["stall_cycles"] == r["latency_cycles"] - r["compute_cycles"]
        assert r["bound"] == ("bandwidth" if r["fetch_cycles"] > r["compute_cycles"]
                              else "compute")
    # MiniLM-L6 layer: 1.77 M weights; WBUF entries as stored, (value, index) pairs of 8 + 2
    # bits: 10 bits per weight dense (the index bits unused), 5 (2:4), 2.5 (1:4), plus the
    # per-feature parameters
    weights = 4 * 384 * 384 + 2 * 384 * 1536
    assert d["weight_bytes"] == weights * 10 // 8 and d["param_bytes"] < 0.02 * weights
    assert rows[(2, 4)]["weight_bytes"] == weights * 5 // 8
    assert rows[(1, 4)]["weight_bytes"] == weights * 5 // 16
    assert d["bytes"] == d["weight_bytes"] + d["param_bytes"]
    assert rows[(2, 4)]["compute_cycles"] < d["compute_cycles"]


def test_crossovers_take_the_first_compute_bound_length():
    rows = [{"pattern": "a", "seq": s, "bound": b}
            for s, b in ((8, "bandwidth"), (16, "compute"), (32, "compute"))]
    rows += [{"pattern": "b", "seq": 8, "bound": "bandwidth"}]
    assert crossovers(rows) == {"a": 16, "b": None}


def test_cli_refuses_a_clock_the_chip_cannot_run(tmp_path, capsys):
    from nmaccel.cli import main
    assert main(["bench", "roofline", "--clk-mhz", "200", "--out", str(tmp_path)]) == 2
    assert "IS42S16160G-7 runs at most 143 MHz, not 200 MHz" in capsys.readouterr().err
