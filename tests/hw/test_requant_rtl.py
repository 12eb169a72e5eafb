# amaranth: UnusedElaboratable=no
"""RTL requant unit vs. the golden nmaccel.model.quant.requant (bit exact)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from nmaccel.hw.sta.requant import RequantUnit
from nmaccel.model.quant import requant
from nmaccel.spec.config import REQUANT_LATENCY, StaConfig


def _run(dut: RequantUnit, acc, mult, shift, gaps=None):
    """Stream (acc, mult, shift) one per cycle (with optional bubbles); return the outputs."""
    n = len(acc)
    gaps = np.zeros(n, dtype=bool) if gaps is None else gaps
    got: list[int] = []

    async def tb(ctx):
        beats = []
        for i in range(n):
            if gaps[i]:
                beats.append(None)
            beats.append(i)
        beats += [None] * dut.latency
        history = []
        for b in beats:
            if b is None:
                ctx.set(dut.valid, 0)
            else:
                ctx.set(dut.acc, int(acc[b]))
                ctx.set(dut.mult, int(mult[b]))
                ctx.set(dut.shift, int(shift[b]))
                ctx.set(dut.valid, 1)
            await ctx.tick()
            history.append(b)
            if len(history) >= dut.latency:
                src = history[-dut.latency]
                ov = ctx.get(dut.o_valid)
                assert ov == (src is not None)
                if ov:
                    got.append(ctx.get(dut.o))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return np.array(got, dtype=np.int64)


@pytest.mark.parametrize("out_bits,signed", [(8, True), (16, True), (32, True), (8, False)])
def test_requant_random_bit_exact(out_bits, signed):
    cfg = StaConfig()
    rng = np.random.default_rng(1234 + out_bits + signed)
    n = 300
    lo, hi = -(1 << (cfg.acc_bits - 1)), (1 << (cfg.acc_bits - 1)) - 1
    mb = cfg.requant_mult_bits
    acc = np.concatenate([
        rng.integers(-(1 << 20), 1 << 20, n // 3),
        rng.integers(lo, hi, n // 3, endpoint=True),
        rng.integers(-300, 300, n - 2 * (n // 3)),
    ])
    mult = rng.integers(0, 1 << mb, n)
    shift = rng.integers(0, 40, n)
    shift[::7] = 0                                              # shift = 0 path
    # Exact ties (round half up, both signs) and extremes.
    extra_acc = [lo, hi, lo, hi, 3, -3, 5, -5, 1, -1, 0, lo, hi, hi, lo, 12345]
    extra_mult = [(1 << mb) - 1] * 4 + [1, 1, 1, 1, 1, 1, (1 << mb) - 1, 0, 0, 1, 1, 1]
    extra_shift = [0, 0, 62, 62, 1, 1, 1, 1, 1, 1, 5, 0, 0, 0, 0, 0]
    acc = np.concatenate([acc, extra_acc]).astype(np.int64)
    mult = np.concatenate([mult, extra_mult]).astype(np.int64)
    shift = np.concatenate([shift, extra_shift]).astype(np.int64)
    want = requant(acc, mult, shift, out_bits=out_bits, signed=signed, mult_bits=mb)
    dut = RequantUnit(cfg, out_bits=out_bits, signed=signed)
    gaps = rng.random(len(acc)) < 0.1
    got = _run(dut, acc, mult, shift, gaps)
    assert got.shape == want.shape
    bad = np.flatnonzero(got != want)
    assert not bad.size, (f"first mismatch at {bad[0]}: acc={acc[bad[0]]} mult={mult[bad[0]]} "
                          f"shift={shift[bad[0]]} got {got[bad[0]]} want {want[bad[0]]}")
    # Saturation is exercised at both ends.
    qlo, qhi = ((-(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1) if signed
                else (0, (1 << out_bits) - 1))
    assert (want == qlo).any() and (want == qhi).any()


def test_requant_small_config():
    cfg = StaConfig(act_bits=4, weight_bits=4, acc_bits=12, requant_mult_bits=5)
    rng = np.random.default_rng(7)
    acc = rng.integers(-(1 << 11), 1 << 11, 200)
    mult = rng.integers(0, 32, 200)
    shift = rng.integers(0, 12, 200)
    want = requant(acc, mult, shift, out_bits=4, mult_bits=5)
    got = _run(RequantUnit(cfg, out_bits=4), acc, mult, shift)
    np.testing.assert_array_equal(got, want)


def test_requant_ports_and_latency():
    dut = RequantUnit(StaConfig(), out_bits=16)
    assert dut.latency == REQUANT_LATENCY == 8
    assert len(dut.acc) == 32 and dut.acc.shape().signed
    assert len(dut.mult) == 16 and not dut.mult.shape().signed
    assert len(dut.shift) == 6
    assert len(dut.o) == 16 and dut.o.shape().signed
    assert not RequantUnit(StaConfig(), out_bits=8, signed=False).o.shape().signed


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"out_bits": 0}, ValueError, "out_bits must be an integer in [2, 62], not 0"),
    ({"out_bits": 1}, ValueError, "out_bits must be an integer in [2, 62], not 1"),
    ({"out_bits": 63}, ValueError, "not 63"),
    ({"out_bits": 8.0}, ValueError, "not 8.0"),
    ({"out_bits": True}, ValueError, "not True"),
    ({"signed": 1}, TypeError, "signed must be a bool"),
])
def test_requant_bad_args(kwargs, exc, msg):
    with pytest.raises(exc) as info:
        RequantUnit(StaConfig(), **kwargs)
    assert msg in str(info.value)


def test_requant_bad_config():
    with pytest.raises(TypeError, match="config must be a StaConfig, not dict"):
        RequantUnit({"acc_bits": 32})
