"""The memory-lean STA on its board top (``StaUartTop`` of the ``icebreaker`` preset: the UART
bridge + ``LeanCore``) under cocotb, driven by the host driver over the UART pins: a whole
encoder layer of the digits Transformer's size bit-exact with the golden layer, cycles equal
to the lean cycle model; a bad command reports its error and the next program still runs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from nmaccel.model.sta_cycles import predicted_total
from nmaccel.model.sta_layer import compile_layer
from nmaccel.model.sta_program import StaProgram, compile_gemm
from nmaccel.sim.simulators import require_simulator
from nmaccel.spec import sta_isa
from nmaccel.spec.config import sta_preset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hw"))
from test_sta_lean_core import _random_layer, _spec

CFG = sta_preset("icebreaker")


def test_lean_core_runs_a_layer_over_the_uart_link():
    require_simulator("verilator")
    from nmaccel.boards.simulated import run_over_uart
    assert CFG.lean
    layer, x = _random_layer((2, 4), 8, seed=3)
    lp = compile_layer(layer, x, CFG)
    rng = np.random.default_rng(5)
    bad = StaProgram(CFG)
    bad.commands.append(sta_isa.encode_command(CFG, op=9, m_tiles=1, n_tiles=1, k_steps=1))
    gemm = compile_gemm(_spec(rng, sta_isa.Mode.DENSE, 3, 4, 12, 1, "Y"), CFG)
    results = run_over_uart([*lp.segments, bad, gemm], divisor=8, raise_on_error=False)
    layer_runs = results[:len(lp.segments)]
    np.testing.assert_array_equal(layer_runs[-1].outputs["out"], lp.expected)
    for seg, r in zip(lp.segments, layer_runs):
        assert r.counters["CYCLES"] == predicted_total(seg)
    assert results[-2].error_code == sta_isa.ERROR_CODES["opcode"]
    np.testing.assert_array_equal(results[-1].outputs["Y"], gemm.expected["Y"])
    assert results[-1].counters["CYCLES"] == predicted_total(gemm)
