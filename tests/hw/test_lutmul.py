"""CarryProduct: every product of 8 x 9-bit signed operands (the STA PE's int8 weight x
sign-extended activation) and random wider ones, at one product per cycle; the ECP5 form
(CCU2C chains) in Icarus against Yosys' own simulation model of the primitive, every 8 x 9
product and other widths; chained_sum_pairs (a level of adds, segments of CCU2C chains) in
Icarus too."""

import random
import re

import pytest
from amaranth.back import verilog
from amaranth.hdl import Cat, Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from nmaccel.hw.common.lutmul import (
    CarryProduct,
    carry_product_latency,
    carry_product_pairs,
    chained_sum_pairs,
)


class FakeECP5:
    """Stands in for amaranth's LatticePlatform (only ``family`` is read)."""
    family = "ecp5"


def _run(a_bits, b_bits, pairs):
    dut = CarryProduct(a_bits, b_bits)
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


def _limits(bits):
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def test_every_int8_by_int9_product():
    pairs = [(a, b) for a in range(-128, 128) for b in range(-256, 256)]
    assert _run(8, 9, pairs) == [a * b for a, b in pairs]


@pytest.mark.parametrize("a_bits, b_bits", [(2, 2), (3, 5), (7, 8), (16, 17), (17, 16)])
def test_random_products_of_other_widths(a_bits, b_bits):
    rng = random.Random(a_bits * 100 + b_bits)
    (lo_a, hi_a), (lo_b, hi_b) = _limits(a_bits), _limits(b_bits)
    pairs = [(lo_a, lo_b), (lo_a, hi_b), (hi_a, lo_b), (hi_a, hi_b), (0, lo_b), (-1, -1)]
    pairs += [(rng.randint(lo_a, hi_a), rng.randint(lo_b, hi_b)) for _ in range(400)]
    assert _run(a_bits, b_bits, pairs) == [a * b for a, b in pairs]


def test_latency_and_bad_widths():
    assert carry_product_pairs(8) == 4 and carry_product_latency(8) == 3
    assert carry_product_pairs(7) == 4 and carry_product_latency(2) == 1
    assert CarryProduct(8, 9).latency == carry_product_latency(8)
    with pytest.raises(ValueError, match=r"a_bits must be an integer in \[2, 32\], not 1"):
        CarryProduct(1, 8)
    with pytest.raises(ValueError, match="b_bits must be an integer"):
        CarryProduct(8, True)


@pytest.mark.parametrize("a_bits, b_bits", [(8, 9), (2, 2), (3, 5), (7, 8), (16, 17)])
def test_ecp5_carry_chain_form_in_icarus(ecp5_icarus, a_bits, b_bits):
    """The CCU2C form (what an ECP5 build gets): every product for up to 8 x 9 bits (the
    bench loops over both operands in Verilog), 20,000 random ones for 16 x 17."""
    dut = CarryProduct(a_bits, b_bits)
    src = verilog.convert(dut, name="dut", platform=FakeECP5())
    assert src.count("CCU2C ") >= dut.pairs
    A, B, P, L = a_bits, b_bits, a_bits + b_bits, dut.latency
    exhaustive = A + B <= 17
    lines = ["`timescale 1ns/1ps", "module tb;", "reg clk = 0, rst = 0;",
             f"reg signed [{A - 1}:0] a = 0; reg signed [{B - 1}:0] b = 0;",
             f"wire signed [{P - 1}:0] p; integer errors = 0, n = 0, i, k;",
             f"reg signed [{P - 1}:0] want [0:{L}];",
             "dut d(.clk(clk), .rst(rst), .a(a), .b(b), .p(p));",
             "task step; begin",
             "  for (k = " + str(L) + "; k > 0; k = k - 1) want[k] = want[k - 1];",
             "  want[0] = a * b; #1 clk = 1; #1 clk = 0; n = n + 1;",
             f"  if (n >= {L} && p !== want[{L - 1}]) begin errors = errors + 1;",
             f"    if (errors < 5) $display(\"MISMATCH %0d want %0d\", p, want[{L - 1}]); end",
             "end endtask", "initial begin"]
    if exhaustive:
        lines += [f"  for (i = 0; i < {1 << (A + B)}; i = i + 1) begin",
                  f"    a = i[{A + B - 1}:{B}]; b = i[{B - 1}:0]; step; end"]
    else:
        lines += ["  for (i = 0; i < 20000; i = i + 1) begin",
                  "    a = $random; b = $random; step; end"]
    lines += [f"  for (i = 0; i < {L}; i = i + 1) step;",
              '  if (errors == 0) $display("PASS"); $finish;', "end", "endmodule"]
    ecp5_icarus(src, lines)


class _Level(wiring.Component):
    """One chained adder level of ``n`` signed ``bits``-bit values, the odd one passed on."""

    def __init__(self, n, bits, out_bits, shift):
        self.n, self.bits, self.out_bits, self.shift = n, bits, out_bits, shift
        super().__init__({"x": In(signed(n * bits)), "o": Out(signed(-(-n // 2) * out_bits))})

    def elaborate(self, platform):
        m = Module()
        vals = [self.x[i * self.bits:(i + 1) * self.bits].as_signed() for i in range(self.n)]
        vals = [v << (self.shift * (i % 2)) for i, v in enumerate(vals)]
        outs = chained_sum_pairs(m, vals, signed(self.out_bits), "lvl", platform=platform)
        m.d.comb += self.o.eq(Cat(*outs))
        return m


@pytest.mark.parametrize("n, bits, out_bits, shift", [(8, 11, 12, 0), (5, 7, 11, 2),
                                                      (2, 15, 18, 2)])
def test_ecp5_chained_adds_in_icarus(ecp5_icarus, n, bits, out_bits, shift):
    """A level's adds as CCU2C segments started by carry-dropping halves (two odd-length
    segments share a chain): random operands, extremes included, against Python sums."""
    dut = _Level(n, bits, out_bits, shift)
    src = verilog.convert(dut, name="dut", platform=FakeECP5())
    # chains as short as possible with an even number of halves: an add is 1 + out_bits
    # halves, so odd-length adds go two to a chain and even-length ones alone
    adds, seg = n // 2, 1 + out_bits
    chains = adds if seg % 2 == 0 else -(-adds // 2)
    heads = set(re.findall(r"\) (\w*g\d+)ccu\d+ \(", src))
    assert len(heads) == chains, heads
    assert src.count("CCU2C ") == -(-adds * seg // 2)        # a spare half only at an odd end
    rng = random.Random(n * 1000 + bits)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    vectors = [[lo] * n, [hi] * n, [lo, hi] * (n // 2) + [lo] * (n % 2)]
    vectors += [[rng.randint(lo, hi) for _ in range(n)] for _ in range(300)]
    pairs = -(-n // 2)
    lines = ["`timescale 1ns/1ps", "module tb;", "reg clk = 0, rst = 0;",
             f"reg [{n * bits - 1}:0] x = 0; wire [{pairs * out_bits - 1}:0] o;",
             "integer errors = 0;", "dut d(.clk(clk), .rst(rst), .x(x), .o(o));",
             "initial begin"]
    for vec in vectors:
        word = sum((v % (1 << bits)) << (i * bits) for i, v in enumerate(vec))
        want = [vec[i] + (vec[i + 1] << shift) if i + 1 < n else vec[i]
                for i in range(0, n, 2)]
        wword = sum((w % (1 << out_bits)) << (k * out_bits) for k, w in enumerate(want))
        lines += [f"  x = {n * bits}'d{word}; #1 clk = 1; #1 clk = 0;",
                  f"  if (o !== {pairs * out_bits}'d{wword}) begin errors = errors + 1; "
                  f"$display(\"MISMATCH %h\", o); end"]
    lines += ['  if (errors == 0) $display("PASS"); $finish;', "end", "endmodule"]
    ecp5_icarus(src, lines)
