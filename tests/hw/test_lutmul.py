"""BoothMultiplier: every product of 8 x 9-bit signed operands (the STA PE's int8 weight x
sign-extended activation) and random wider ones, at one product per cycle."""

import random

import pytest
from amaranth.sim import Simulator

from nmaccel.hw.common.lutmul import BoothMultiplier, booth_latency, booth_rows


def _run(a_bits, b_bits, pairs):
    dut = BoothMultiplier(a_bits, b_bits)
    got = []

    async def tb(ctx):
        for i in range(len(pairs) + dut.latency):
            if i < len(pairs):
                ctx.set(dut.a, pairs[i][0])
                ctx.set(dut.b, pairs[i][1])
            await ctx.tick()
            if i + 1 >= dut.latency:
                got.append(ctx.get(dut.p))
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return got[:len(pairs)]


def test_every_int8_by_int9_product():
    pairs = [(a, b) for a in range(-128, 128) for b in range(-256, 256)]
    assert _run(8, 9, pairs) == [a * b for a, b in pairs]


@pytest.mark.parametrize("a_bits, b_bits", [(2, 2), (3, 5), (7, 8), (16, 17), (17, 16)])
def test_random_products_of_other_widths(a_bits, b_bits):
    rng = random.Random(a_bits * 100 + b_bits)
    lo_a, hi_a = -(1 << (a_bits - 1)), (1 << (a_bits - 1)) - 1
    lo_b, hi_b = -(1 << (b_bits - 1)), (1 << (b_bits - 1)) - 1
    pairs = [(lo_a, lo_b), (lo_a, hi_b), (hi_a, lo_b), (hi_a, hi_b), (0, lo_b), (-1, -1)]
    pairs += [(rng.randint(lo_a, hi_a), rng.randint(lo_b, hi_b)) for _ in range(400)]
    assert _run(a_bits, b_bits, pairs) == [a * b for a, b in pairs]


def test_latency_and_bad_widths():
    assert booth_rows(8) == 4 and booth_latency(8) == 1 + 3 and booth_latency(2) == 2
    assert BoothMultiplier(8, 9).latency == booth_latency(8)
    with pytest.raises(ValueError, match="a_bits must be an integer in"):
        BoothMultiplier(1, 8)
