# amaranth: UnusedElaboratable=no
"""``Counter`` and ``MulAcc``: the fabric form in the Amaranth simulator, the iCE40 form (one
SB_MAC16) in Icarus against Yosys' own simulation model of the primitive
(``share/ice40/cells_sim.v`` of the YoWASP Yosys in use: that checks the parameters and wiring,
not the silicon); both against the same Python model, on the same random enable/clear sequence."""

from __future__ import annotations

import random

import pytest
from amaranth.back import rtlil, verilog
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from nmaccel.hw.common.counter import Counter
from nmaccel.hw.common.mac import MulAcc


class FakeICE40:
    """Stands in for amaranth's SiliconBluePlatform (only ``family`` is read)."""
    family = "iCE40"


def _run_fabric(dut, steps):
    """Amaranth simulation: each step sets its inputs, then ``value`` after the edge."""
    async def tb(ctx):
        for inputs, value in steps:
            for name, v in inputs.items():
                ctx.set(getattr(dut, name), v)
            await ctx.tick()
            assert ctx.get(dut.value) == value

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def _run_icarus(tmp_path, icarus, dut, decls, width, is_signed, steps):
    """The iCE40 form's Verilog with Yosys' cells_sim.v in Icarus, the same steps."""
    (tmp_path / "dut.v").write_text(verilog.convert(dut, name="dut", platform=FakeICE40()))
    names = list(steps[0][0])
    sig = "signed " if is_signed else ""
    lines = ["`timescale 1ns/1ps", "module tb;", "reg clk = 0, rst = 1;", *decls,
             f"wire {sig}[{width - 1}:0] value; integer errors = 0;",
             "dut u(.clk(clk), .rst(rst), " + ", ".join(f".{n}({n})" for n in names)
             + ", .value(value));",
             "always #5 clk = ~clk;", "initial begin", "@(posedge clk); #1; rst = 0;"]
    for inputs, value in steps:
        lines += [" ".join(f"{n} = {v};" for n, v in inputs.items()), "@(posedge clk); #1;",
                  f"if (value !== {value}) begin errors = errors + 1; "
                  f"$display(\"MISMATCH %d want {value}\", value); end"]
    lines += ['if (errors == 0) $display("PASS"); $finish;', "end", "endmodule"]
    (tmp_path / "tb.v").write_text("\n".join(lines) + "\n")
    icarus("dut.v")


def _script(width, start, n, seed):
    """``[(en, clear, value after the edge)]``: random enables and clears, and the count near
    its wrap (a clear, then 2**16 + 3 enables would take too long: ``start`` near the top
    of the low half checks the carry into the upper adder)."""
    rng = random.Random(seed)
    ops, value = [], start
    for i in range(n):
        clear = i == 0 or rng.random() < 0.03
        en = rng.random() < 0.7
        value = start if clear else (value + en) % (1 << width)
        ops.append((int(en), int(clear), value))
    return ops


@pytest.mark.parametrize("width,start", [(32, 0), (32, 0xFFF0), (20, 1), (7, 120)])
def test_counter_fabric(width, start):
    dut = Counter(width, start)
    _run_fabric(dut, [({"en": en, "clear": clear}, value)
                      for en, clear, value in _script(width, start, 600, width + start)])


def test_counter_is_one_mac16_on_ice40():
    il = rtlil.convert(Counter(32, 1), platform=FakeICE40())
    assert il.count("SB_MAC16") == 1 and "$add" not in il
    assert "SB_MAC16" not in rtlil.convert(Counter(40), platform=FakeICE40())   # too wide
    assert "SB_MAC16" not in rtlil.convert(Counter(32))
    assert "SB_MAC16" not in rtlil.convert(Counter(32, 1, dsp=False), platform=FakeICE40())


@pytest.mark.parametrize("kw,match", [
    (dict(width=0), "width must be an integer from 1 to 64, not 0"),
    (dict(width=8, start=256), r"start must be an integer in \[0, 2\*\*8\), not 256"),
    (dict(width=True), "width must be"),
])
def test_counter_bad_parameters(kw, match):
    with pytest.raises(ValueError, match=match):
        Counter(**kw)


@pytest.mark.parametrize("width,start", [(32, 0xFFF0), (32, 0xFFFF_FFF0), (24, 1)])
def test_counter_mac16_in_icarus(tmp_path, ice40_icarus, width, start):
    steps = [({"en": en, "clear": clear}, value)
             for en, clear, value in _script(width, start, 400, width)]
    _run_icarus(tmp_path, ice40_icarus, Counter(width, start), ["reg en = 0, clear = 0;"],
                width, False, steps)


# -- MulAcc: the same two forms ----------------------------------------------------------------

def _mac_script(a_shape, b_shape, width, n, seed):
    """``[(a, b, en, load, init, value after the edge)]``."""
    rng = random.Random(seed)

    def rnd(s):
        lo = -(1 << (s.width - 1)) if s.signed else 0
        return rng.randrange(lo, lo + (1 << s.width))

    ops, acc, top = [], 0, 1 << width
    for i in range(n):
        a, b, init = rnd(a_shape), rnd(b_shape), rng.randrange(-(top >> 1), top >> 1)
        load = i == 0 or rng.random() < 0.05
        en = rng.random() < 0.8
        acc = init if load else (acc + a * b if en else acc)
        acc = (acc + (top >> 1)) % top - (top >> 1)
        ops.append((a, b, int(en), int(load), init, acc))
    if a_shape.signed and b_shape.signed:                          # extremes, then the wrap
        lo_a, lo_b = -(1 << (a_shape.width - 1)), -(1 << (b_shape.width - 1))
        acc = (top >> 1) - 5
        ops.append((0, 0, 0, 1, acc, acc))
        for _ in range(3):
            acc = (acc + lo_a * lo_b + (top >> 1)) % top - (top >> 1)
            ops.append((lo_a, lo_b, 1, 0, 0, acc))
    return ops


MAC_CASES = pytest.mark.parametrize("a_shape,b_shape,width", [
    (signed(9), signed(8), 32), (signed(16), signed(16), 32), (unsigned(8), signed(8), 20)])


@MAC_CASES
def test_mulacc_fabric(a_shape, b_shape, width):
    dut = MulAcc(a_shape, b_shape, width)
    _run_fabric(dut, [({"a": a, "b": b, "en": en, "load": load, "init": init}, value)
                      for a, b, en, load, init, value
                      in _mac_script(a_shape, b_shape, width, 500, width)])


def test_mulacc_is_one_mac16_on_ice40():
    il = rtlil.convert(MulAcc(signed(9), signed(8)), platform=FakeICE40())
    assert il.count("SB_MAC16") == 1 and "$mul" not in il and "$add" not in il
    assert "SB_MAC16" not in rtlil.convert(MulAcc(signed(17), signed(8)), platform=FakeICE40())
    assert "SB_MAC16" not in rtlil.convert(MulAcc(unsigned(16), signed(8)), platform=FakeICE40())
    with pytest.raises(ValueError, match="width must be an integer from 2 to 64, not 1"):
        MulAcc(signed(8), signed(8), 1)


@MAC_CASES
def test_mulacc_mac16_in_icarus(tmp_path, ice40_icarus, a_shape, b_shape, width):
    def decl(name, sh):
        return f"reg {'signed ' if sh.signed else ''}[{sh.width - 1}:0] {name} = 0;"

    steps = [({"a": a, "b": b, "en": en, "load": load, "init": init}, value)
             for a, b, en, load, init, value
             in _mac_script(a_shape, b_shape, width, 300, width + 1)]
    _run_icarus(tmp_path, ice40_icarus, MulAcc(a_shape, b_shape, width),
                ["reg en = 0, load = 0;", decl("a", a_shape), decl("b", b_shape),
                 f"reg signed [{width - 1}:0] init = 0;"], width, True, steps)
