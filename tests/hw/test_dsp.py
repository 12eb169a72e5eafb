"""registered_product on the ECP5: one MULT18X18D with its own registers, same results and
latency as the fabric form that every other simulation runs.

The ECP5 form cannot run in the Amaranth simulator (an Instance) and Yosys ships only a
black box of MULT18X18D, so these tests (1) check the instance's parameters and connections in
the netlist, and (2) simulate the Verilog of an ECP5 elaboration in Icarus against a
behavioural model of the primitive as Lattice's sysDSP guide (TN1267) describes the mode used:
input registers A and B and the output register on CLK0 with CE0, no pipeline register,
signed operands, ``P = A · B``. The model is ours, so (2) checks the wiring (sign and zero
extension, bit order, the two-stage alignment inside wide products, the clock enable), not the
silicon.
"""

from __future__ import annotations

import random
import shutil
import subprocess

import pytest
from amaranth.back import rtlil, verilog
from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.arith import PipelinedMultiplier
from nmaccel.hw.common.dsp import REGISTERED_PRODUCT_LATENCY, fits_dsp, is_ecp5, registered_product


class FakeECP5:
    """Stands in for amaranth's LatticePlatform of an ECP5 part (only ``family`` is read)."""
    family = "ecp5"


class Product(wiring.Component):
    def __init__(self, a_shape, b_shape):
        self.o_bits = a_shape.width + b_shape.width + 1
        super().__init__({"a": In(a_shape), "b": In(b_shape), "o": Out(signed(self.o_bits))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.o.eq(registered_product(m, self.a, self.b, signed(self.o_bits),
                                                 platform=platform, name="x_"))
        return m


def test_platform_detection_and_fit():
    assert is_ecp5(FakeECP5()) and not is_ecp5(None) and not is_ecp5(object())
    assert fits_dsp(signed(18), unsigned(17)) and fits_dsp(signed(9), signed(8))
    assert not fits_dsp(unsigned(18), signed(8)) and not fits_dsp(signed(19), signed(2))


def test_ecp5_netlist_has_a_registered_mult18x18d():
    text = rtlil.convert(Product(signed(9), signed(8)), platform=FakeECP5())
    assert text.count("cell \\MULT18X18D") == 1
    for param in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"):
        assert f'parameter \\{param} "CLK0"' in text
    assert 'parameter \\REG_PIPELINE_CLK "NONE"' in text
    plain = rtlil.convert(Product(signed(9), signed(8)))
    assert "MULT18X18D" not in plain
    # an operand too wide for the port stays in the fabric (the caller chunks wide products)
    assert "MULT18X18D" not in rtlil.convert(Product(signed(20), signed(8)), platform=FakeECP5())


def _model() -> str:
    """Behavioural MULT18X18D for the mode registered_product uses (see the module doc)."""
    bits = lambda p, n: ", ".join(f"{p}{k}" for k in range(n))          # noqa: E731
    ports = [bits("A", 18), bits("B", 18), bits("C", 18),
             "SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, "
             "RST0, RST1, RST2, RST3", bits("P", 36)]
    return f"""
module MULT18X18D({", ".join(ports)});
  parameter REG_INPUTA_CLK = "NONE"; parameter REG_INPUTA_CE = "CE0";
  parameter REG_INPUTA_RST = "RST0"; parameter REG_INPUTB_CLK = "NONE";
  parameter REG_INPUTB_CE = "CE0"; parameter REG_INPUTB_RST = "RST0";
  parameter REG_INPUTC_CLK = "NONE"; parameter REG_PIPELINE_CLK = "NONE";
  parameter REG_OUTPUT_CLK = "NONE"; parameter REG_OUTPUT_CE = "CE0";
  parameter REG_OUTPUT_RST = "RST0"; parameter GSR = "ENABLED"; parameter RESETMODE = "SYNC";
  parameter SOURCEB_MODE = "B_SHIFT"; parameter MULT_BYPASS = "DISABLED";
  input {bits("A", 18)}, {bits("B", 18)}, {bits("C", 18)};
  input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3;
  input RST0, RST1, RST2, RST3;
  output {bits("P", 36)};
  wire [17:0] a = {{{", ".join(f"A{k}" for k in reversed(range(18)))}}};
  wire [17:0] b = {{{", ".join(f"B{k}" for k in reversed(range(18)))}}};
  reg [17:0] ra = 0, rb = 0; reg [35:0] rp = 0;
  initial if (REG_INPUTA_CLK != "CLK0" || REG_INPUTB_CLK != "CLK0" || REG_OUTPUT_CLK != "CLK0"
              || REG_PIPELINE_CLK != "NONE") begin $display("MODEL: unsupported mode"); $finish; end
  always @(posedge CLK0) if (CE0) begin
    ra <= a; rb <= b;
    if (SIGNEDA && SIGNEDB) rp <= $signed(ra) * $signed(rb);   // not in a ?: with the
    else rp <= ra * rb;                 // unsigned form: that makes both unsigned
  end
  assign {{{", ".join(f"P{k}" for k in reversed(range(36)))}}} = rp;
endmodule
"""


class Pipe(wiring.Component):
    """A PipelinedMultiplier with an explicit stall (as LayerNorm stalls its multipliers)."""

    def __init__(self, a_shape, b_shape):
        self.mul = PipelinedMultiplier(a_shape, b_shape)
        super().__init__({"a": In(a_shape), "b": In(b_shape), "en": In(1),
                          "o": Out(self.mul.o_shape)})

    def elaborate(self, platform):
        from amaranth.hdl import EnableInserter
        m = Module()
        m.submodules.mul = EnableInserter(self.en)(self.mul)
        m.d.comb += [self.mul.a.eq(self.a), self.mul.b.eq(self.b), self.mul.ce.eq(self.en),
                     self.o.eq(self.mul.o)]
        return m


def _run_icarus(tmp_path, top, a_shape, b_shape, vectors, with_enable: bool):
    """Drive ``vectors`` ``(a, b, en)`` one per clock into the ECP5 Verilog of ``top``; return
    ``o`` sampled after each clock edge."""
    src = verilog.convert(top, name="dut", platform=FakeECP5())
    ow = len(top.o)
    lines = ["`timescale 1ns/1ps", "module tb;", "reg clk = 0, rst = 0;",
             f"reg [{a_shape.width - 1}:0] a = 0; reg [{b_shape.width - 1}:0] b = 0;",
             "reg en = 1;", f"wire [{ow - 1}:0] o;",
             "dut d(.clk(clk), .rst(rst), .a(a), .b(b), " + (".en(en), " if with_enable else "")
             + ".o(o));", "initial begin"]
    for a, b, en in vectors:
        lines.append(f"  a = {a_shape.width}'d{a % (1 << a_shape.width)}; "
                     f"b = {b_shape.width}'d{b % (1 << b_shape.width)}; en = {en};")
        lines.append("  #1 clk = 1; #1 clk = 0; $display(\"%0d\", $signed(o));")
    lines += ["  $finish;", "end", "endmodule"]
    (tmp_path / "dut.v").write_text(src)
    (tmp_path / "model.v").write_text(_model())
    (tmp_path / "tb.v").write_text("\n".join(lines))
    subprocess.run(["iverilog", "-g2005", "-o", str(tmp_path / "sim"), str(tmp_path / "tb.v"),
                    str(tmp_path / "dut.v"), str(tmp_path / "model.v")], check=True)
    out = subprocess.run(["vvp", "-n", str(tmp_path / "sim")], check=True, capture_output=True,
                         text=True).stdout.split()
    assert "MODEL:" not in out
    return [int(v) for v in out]


def _rand(rng, shape):
    lo, hi = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed else \
        (0, (1 << shape.width) - 1)
    return rng.choice([lo, hi, 0, 1, -1 if shape.signed else 2, rng.randint(lo, hi),
                       rng.randint(lo, hi)])


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_ecp5_registered_product_matches_in_icarus(tmp_path):
    a_s, b_s = signed(9), signed(8)                   # an STA PE product
    rng = random.Random(1)
    vec = [(_rand(rng, a_s), _rand(rng, b_s), 1) for _ in range(60)]
    out = _run_icarus(tmp_path, Product(a_s, b_s), a_s, b_s, vec, with_enable=False)
    lat = REGISTERED_PRODUCT_LATENCY
    for t in range(lat - 1, len(vec)):
        a, b, _ = vec[t - lat + 1]
        assert out[t] == a * b, (t, a, b, out[t])


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
@pytest.mark.parametrize("a_s,b_s", [(signed(32), unsigned(16)), (signed(26), signed(24))])
def test_ecp5_pipelined_multiplier_with_stalls_matches_in_icarus(tmp_path, a_s, b_s):
    """Wide products (several MULT18X18D partial products, unsigned low chunks, a signed top
    one) through the adder tree, with random stalls: the DSP registers follow ``ce``."""
    rng = random.Random(2)
    vec = [(_rand(rng, a_s), _rand(rng, b_s), int(rng.random() < 0.7)) for _ in range(120)]
    pipe = Pipe(a_s, b_s)
    out = _run_icarus(tmp_path, pipe, a_s, b_s, vec, with_enable=True)
    # The pipeline holds `latency` stages that advance on edges with en = 1: the output after
    # the edge that advances the k-th time shows the input accepted at advance k - latency + 1.
    accepted = [(a, b) for a, b, en in vec if en]
    k = 0
    for (_a, _b, en), o in zip(vec, out):
        k += en
        j = k - pipe.mul.latency
        if en and j >= 0:
            want = accepted[j][0] * accepted[j][1]
            assert o == want, (k, accepted[j], o, want)
