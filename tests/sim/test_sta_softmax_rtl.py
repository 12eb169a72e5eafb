"""StreamingSoftmax's generated Verilog under cocotb 2.x (Verilator, Icarus) with the bench
:mod:`nmaccel.sim.softmax_bench`: random rows and corner cases (length 1, all equal, most
negative, max magnitude, huge spread) with random idle and back-pressure, every row bit
exact against the golden softmax_int; back to back rows at one beat per cycle with the
cycles equal to softmax_cycles. Builds live in the one build cache
(:mod:`nmaccel.sim.build_cache`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nmaccel.sim.simulators import activate, require_simulator, run_module
from nmaccel.sim.softmax_bench import TOP, pack_in, unpack_out
from nmaccel.spec.config import StaConfig, sta_preset

# tiny is covered by tests/hw/test_sta_softmax.py; each Verilator build costs 25-40 s.
CONFIGS = {
    "ulx3s": sta_preset("ulx3s"),
    "odd": StaConfig(softmax_lanes=3, softmax_in_bits=10, softmax_in_frac=3,
                     softmax_exp_bits=9, softmax_recip_frac=20, softmax_out_bits=7, max_seq=20),
}
ROWS = {"ulx3s": 16, "odd": 30}


def build(cfg: StaConfig, simulator: str) -> Path:
    """Compile the unit for ``cfg`` in the build cache; returns the runner's build directory."""
    from amaranth.back import verilog

    from nmaccel.hw.sta.softmax import StreamingSoftmax
    from nmaccel.sim.build_cache import cached_verilog, simulation_build
    text = cached_verilog("softmax", ["nmaccel.hw.sta.softmax"],
                          f"{cfg.to_json(sort_keys=True)}|{TOP}",
                          lambda: verilog.convert(StreamingSoftmax(cfg), name=TOP))
    return simulation_build("softmax", text, TOP, simulator, flags=("--output-split", "0"))[0]


def test_bench_packing_matches_layouts():
    """The bench's payload packing is the Amaranth StructLayout's."""
    from nmaccel.hw.sta.softmax import softmax_in_layout, softmax_out_layout
    for cfg in CONFIGS.values():
        p, lo = cfg.softmax_lanes, -(1 << (cfg.softmax_in_bits - 1))
        lanes = [lo, -lo - 1, -3, 7, 0, 1, -1, 5][:p] + [0] * max(0, p - 8)
        want = softmax_in_layout(cfg).const({"data": lanes, "count": p - 1, "last": 1})
        assert pack_in(cfg, lanes, p - 1, 1) == want.as_value().value
        data = [(3 * k + 1) % (1 << cfg.softmax_out_bits) for k in range(p)]
        word = softmax_out_layout(cfg).const({"data": data, "count": p, "last": 1})
        assert unpack_out(cfg, word.as_value().value) == (p, data, 1)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_softmax_rtl_bit_exact(simulator, config, tmp_path):
    sim = activate(require_simulator(simulator))
    cfg = CONFIGS[config]
    result = tmp_path / "result.json"
    run_module(sim.name, TOP, "nmaccel.sim.softmax_bench", build(cfg, sim.name), tmp_path,
               {"GPI_LOG_LEVEL": "WARNING", "NMACCEL_SOFTMAX_CONFIG": cfg.to_json(),
                "NMACCEL_SOFTMAX_SEED": str(sum(map(ord, config))),
                "NMACCEL_SOFTMAX_ROWS": str(ROWS[config]),
                "NMACCEL_SOFTMAX_RESULT": str(result)}, "softmax bench", result=result)
    summary = json.loads(result.read_text())
    assert summary["rows"] >= ROWS[config] + 20
    assert summary["cycles"] == summary["expected_cycles"]
