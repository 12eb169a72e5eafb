# amaranth: UnusedElaboratable=no
"""PipelinedMultiplier and RoundShiftSaturate vs. exact integer arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from nmaccel.hw.common.arith import (
    PipelinedMultiplier,
    RoundShiftSaturate,
    mul_chunks,
    product_shape,
)
from nmaccel.spec.config import MUL_LATENCY, ROUND_SATURATE_LATENCY


def _edges(shape, rng, n):
    lo = -(1 << (shape.width - 1)) if shape.signed else 0
    hi = (1 << (shape.width - 1)) - 1 if shape.signed else (1 << shape.width) - 1
    vals = [lo, hi, 0, 1, -1 if shape.signed else 2, lo + 1, hi - 1]
    vals += [int(v) for v in rng.integers(lo, hi, size=n, endpoint=True, dtype=np.int64)
             ] if shape.width < 63 else [int(rng.integers(0, 1 << 62)) - (1 << 61)
                                         for _ in range(n)]
    return vals


def _stream(dut, ports, output, latency):
    """Drive ``(port, values)`` pairs one value per cycle; return ``output`` ``latency``
    cycles after each."""
    n = len(ports[0][1])
    got = []

    async def tb(ctx):
        for k in range(n + latency):
            if k < n:
                for port, vals in ports:
                    ctx.set(port, vals[k])
            await ctx.tick()
            if k + 1 >= latency:
                got.append(ctx.get(output))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return got[:n]


@pytest.mark.parametrize("a_shape,b_shape", [
    (signed(32), unsigned(16)),     # requant acc·mult
    (signed(50), unsigned(16)),     # GELU g·mult: three partial products
    (signed(33), unsigned(25)),     # LayerNorm c·R: four partial products
    (signed(16), signed(34)),       # GELU x·poly
    (unsigned(16), unsigned(16)),   # one partial product
    (signed(5), unsigned(3)),
    (signed(64), unsigned(31)),     # eight partial products: groups of three
])
def test_multiplier_exact(a_shape, b_shape):
    rng = np.random.default_rng(a_shape.width * 100 + b_shape.width)
    dut = PipelinedMultiplier(a_shape, b_shape)
    a = _edges(a_shape, rng, 200)
    b = _edges(b_shape, rng, 200)
    rng.shuffle(b)
    a, b = a[:len(b)], b[:len(a)]
    got = _stream(dut, [(dut.a, a), (dut.b, b)], dut.o, dut.latency)
    assert got == [x * y for x, y in zip(a, b)]
    assert dut.latency == MUL_LATENCY
    assert dut.o_shape == product_shape(a_shape, b_shape)


def test_multiplier_chunks():
    assert mul_chunks(signed(34)) == [(0, 17, False), (17, 17, True)]
    assert mul_chunks(unsigned(16)) == [(0, 16, False)]
    assert mul_chunks(signed(18)) == [(0, 17, False), (17, 1, True)]


def test_multiplier_errors():
    with pytest.raises(TypeError, match=r"a_shape must be a signed or unsigned shape"):
        PipelinedMultiplier("wide", unsigned(3))


def _golden_rss(v, s, z, lo, hi):
    r = v if s == 0 else (v + (1 << (s - 1))) >> s
    return min(max(r + z, lo), hi)


@pytest.mark.parametrize("width,out_bits,out_signed,zero_bits,lohi", [
    (49, 8, True, 0, None),
    (67, 8, True, 8, None),          # GELU: zero point
    (34, 16, True, 0, None),
    (33, 8, False, 0, None),
    (40, 8, True, 0, (-100, 90)),    # comparator saturation
])
def test_round_shift_saturate_exact(width, out_bits, out_signed, zero_bits, lohi):
    rng = np.random.default_rng(width + out_bits)
    lo, hi = lohi if lohi else (None, None)
    dut = RoundShiftSaturate(signed(width), out_bits, out_signed=out_signed,
                             zero_bits=zero_bits, lo=lo, hi=hi)
    n = 400
    vals = _edges(signed(width), rng, n)[:n]
    # Values near the output range, too, so that saturation and rounding both matter.
    vals += [int(v) for v in rng.integers(-(1 << (out_bits + 8)), 1 << (out_bits + 8), size=n)]
    shifts = [int(s) for s in rng.integers(0, 64, size=len(vals))]
    shifts[:8] = [0, 1, 63, 2, 0, 62, 5, 1]
    zeros = ([int(z) for z in rng.integers(-(1 << (zero_bits - 1)), 1 << (zero_bits - 1),
                                           size=len(vals))] if zero_bits else [0] * len(vals))
    ports = [(dut.value, vals), (dut.shift, shifts)]
    if zero_bits:
        ports.append((dut.zero, zeros))
    got = _stream(dut, ports, dut.o, dut.latency)
    want = [_golden_rss(v, s, z, dut.lo, dut.hi) for v, s, z in zip(vals, shifts, zeros)]
    assert got == want
    assert dut.latency == ROUND_SATURATE_LATENCY


def test_round_shift_saturate_errors():
    with pytest.raises(ValueError, match=r"out_bits must be an integer in \[1, 64\], not 0"):
        RoundShiftSaturate(signed(8), 0)
    with pytest.raises(ValueError, match=r"lo..hi must lie in -128..127 with lo <= hi, not 5..4"):
        RoundShiftSaturate(signed(16), 8, lo=5, hi=4)
    with pytest.raises(ValueError, match=r"zero_bits must be a non-negative integer, not -1"):
        RoundShiftSaturate(signed(16), 8, zero_bits=-1)
