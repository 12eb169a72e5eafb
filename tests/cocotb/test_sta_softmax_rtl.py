"""StreamingSoftmax's generated Verilog under cocotb 2.x (Verilator, Icarus) with the bench
:mod:`nmaccel.sim.softmax_bench`: random rows and corner cases (length 1, all equal, most
negative, max magnitude, huge spread) with random idle and back-pressure, every row bit
exact against the golden softmax_int; back to back rows at one beat per cycle with the
cycles equal to softmax_cycles. Builds are cached per simulator and Verilog text under
``$NMACCEL_CACHE`` (default ``~/.cache/nmaccel``)/softmax_build."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from nmaccel.spec.config import StaConfig, sta_preset
from nmaccel.sim.simulators import ICARUS_BUILD_ARGS, activate, require_simulator
from nmaccel.sim.softmax_bench import TOP, pack_in, unpack_out

# tiny is covered by tests/hw/test_sta_softmax.py; each Verilator build costs 25-40 s.
CONFIGS = {
    "ulx3s": sta_preset("ulx3s"),
    "odd": StaConfig(softmax_lanes=3, softmax_in_bits=10, softmax_in_frac=3,
                     softmax_exp_bits=9, softmax_recip_frac=20, softmax_out_bits=7, max_seq=20),
}
ROWS = {"ulx3s": 16, "odd": 30}


def _cache_dir() -> Path:
    d = Path(os.environ.get("NMACCEL_CACHE", Path.home() / ".cache" / "nmaccel"))
    d = d / "softmax_build"
    d.mkdir(parents=True, exist_ok=True)
    return d


def build(cfg: StaConfig, simulator: str) -> Path:
    """Compile the unit for ``cfg`` (cached by simulator and Verilog text, source-location
    attributes aside); returns the runner's build directory."""
    from amaranth.back import verilog
    from cocotb_tools.runner import get_runner
    from nmaccel.hw.sta.softmax import StreamingSoftmax
    text = verilog.convert(StreamingSoftmax(cfg), name=TOP)
    # source-location attributes only move line numbers: leave them out of the key
    logic = re.sub(r'\(\* src = "[^"]*" \*\)', "", text)
    flags = f"|{' '.join(ICARUS_BUILD_ARGS)}" if simulator == "icarus" else ""
    key = hashlib.sha256(f"{logic}{flags}".encode()).hexdigest()[:16]
    bdir = _cache_dir() / f"{simulator}_{key}"
    stamp = bdir / "built.ok"
    if not stamp.exists():
        bdir.mkdir(parents=True, exist_ok=True)
        src = bdir / f"{TOP}.v"
        src.write_text(text)
        extra = ({"build_args": ["-Wno-fatal", "-O3", "--output-split", "0"]}
                 if simulator == "verilator"
                 else {"timescale": ("1ns", "1ps"), "build_args": list(ICARUS_BUILD_ARGS)})
        get_runner(simulator).build(sources=[src], hdl_toplevel=TOP, build_dir=bdir / "sim",
                                    always=True, **extra)
        stamp.write_text(key)
    return bdir / "sim"


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
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner
    cfg = CONFIGS[config]
    build_dir = build(cfg, sim.name)
    result = tmp_path / "result.json"
    kw = {"timescale": ("1ns", "1ps")} if sim.name == "icarus" else {}
    xml = get_runner(sim.name).test(
        hdl_toplevel=TOP, hdl_toplevel_lang="verilog", test_module="nmaccel.sim.softmax_bench",
        build_dir=build_dir, test_dir=tmp_path, results_xml=str(tmp_path / "results.xml"),
        extra_env={"COCOTB_LOG_LEVEL": "WARNING", "GPI_LOG_LEVEL": "WARNING",
                   "NMACCEL_SOFTMAX_CONFIG": cfg.to_json(),
                   "NMACCEL_SOFTMAX_SEED": str(sum(map(ord, config))),
                   "NMACCEL_SOFTMAX_ROWS": str(ROWS[config]),
                   "NMACCEL_SOFTMAX_RESULT": str(result)}, **kw)
    n, failed = get_results(Path(xml))
    assert n == 1 and failed == 0, f"softmax bench failed on {sim.name} (see the log above)"
    summary = json.loads(result.read_text())
    assert summary["rows"] >= ROWS[config] + 20
    assert summary["cycles"] == summary["expected_cycles"]
