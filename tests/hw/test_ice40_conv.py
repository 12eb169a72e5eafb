# amaranth: UnusedElaboratable=no
"""The iCE40UP5K conv-engine options: the single-port (SPRAM) weight memory, the PE products in
logic, and their ConvConfig fields.

The SB_SPRAM256KA instances cannot run in the Amaranth simulator, so the iCE40 form is checked
in the netlist (block count, constant pins) and in Icarus against Yosys' own simulation model of
the primitive (``share/ice40/cells_sim.v`` of the YoWASP Yosys in use): that checks the wiring
(data slices, address, write enable), not the silicon.
"""

from __future__ import annotations

import random

import pytest
from amaranth.back import rtlil, verilog
from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from nmaccel.hw.common.dsp import lut_product
from nmaccel.hw.common.spram import SinglePortRam, is_ice40
from nmaccel.spec.config import ConfigError, ConvConfig, conv_preset


class FakeICE40:
    """Stands in for amaranth's SiliconBluePlatform (only ``family`` is read)."""
    family = "iCE40"


def test_platform_detection():
    assert is_ice40(FakeICE40()) and not is_ice40(None) and not is_ice40(object())
    from nmaccel.boards.targets import board_target
    assert is_ice40(board_target("icebreaker").platform())
    assert not is_ice40(board_target("ulx3s").platform())


def _ram_script(width, depth, n, seed):
    """Random writes then reads: ``[(addr, wen, wdata)]`` and the expected read data."""
    rng = random.Random(seed)
    mem = {}
    ops = []
    for _ in range(n):
        a = rng.randrange(depth)
        if rng.random() < 0.5 or not mem:
            d = rng.getrandbits(width)
            ops.append((a, 1, d, None))
            mem[a] = d
        else:
            a = rng.choice(sorted(mem))
            ops.append((a, 0, 0, mem[a]))
    return ops


def test_single_port_ram_model_reads_what_was_written():
    dut = SinglePortRam(40, 300)
    ops = _ram_script(40, 300, 400, 1)

    async def tb(ctx):
        for a, wen, d, exp in ops:
            ctx.set(dut.addr, a)
            ctx.set(dut.wen, wen)
            ctx.set(dut.wdata, d)
            await ctx.tick()
            if exp is not None:                  # the word read at this edge
                assert ctx.get(dut.rdata) == exp

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def test_single_port_ram_rejects_what_no_spram_holds():
    with pytest.raises(ValueError, match="depth must be <= 16384"):
        SinglePortRam(16, 16385)
    with pytest.raises(ValueError, match="width must be a positive integer, not 0"):
        SinglePortRam(0, 16)


def test_ice40_netlist_has_spram_blocks():
    text = rtlil.convert(SinglePortRam(40, 300), platform=FakeICE40())
    assert text.count("cell \\SB_SPRAM256KA") == 3             # 40 bits: 3 × 16
    assert "$mem" not in text
    assert "cell \\SB_SPRAM256KA" not in rtlil.convert(SinglePortRam(40, 300))
    # the iCEBreaker preset's engine: its 2×2×8-bit weight words in two SPRAMs, no products
    from nmaccel.hw.conv.engine import ConvEngine
    cfg = conv_preset("icebreaker")
    eng = rtlil.convert(ConvEngine(cfg), platform=FakeICE40())
    assert eng.count("cell \\SB_SPRAM256KA") == cfg.spram_blocks == 2
    assert "$mul" not in eng.split("module \\top.pe\n")[1].split("\nend\n")[0]


def test_ice40_spram_wiring_in_icarus(tmp_path, ice40_icarus):
    width, depth = 40, 300
    (tmp_path / "ram.v").write_text(verilog.convert(SinglePortRam(width, depth), name="ram",
                                                    platform=FakeICE40()))
    ops = _ram_script(width, depth, 300, 2)
    lines = ["`timescale 1ns/1ps", "module tb;", "reg clk = 0, rst = 0;",
             f"reg [{(depth - 1).bit_length() - 1}:0] addr = 0; reg wen = 0;",
             f"reg [{width - 1}:0] wdata = 0; wire [{width - 1}:0] rdata; integer errors = 0;",
             "ram dut(.clk(clk), .rst(rst), .addr(addr), .wen(wen), .wdata(wdata), "
             ".rdata(rdata));",
             "always #5 clk = ~clk;", "initial begin", "#1;"]
    for a, wen, d, exp in ops:
        lines += [f"addr = {a}; wen = {wen}; wdata = {width}'d{d};", "@(posedge clk); #1;"]
        if exp is not None:
            lines.append(f"if (rdata !== {width}'d{exp}) begin errors = errors + 1; "
                         f"$display(\"MISMATCH addr {a}: %d\", rdata); end")
    lines += ['if (errors == 0) $display("PASS"); $finish;', "end", "endmodule"]
    (tmp_path / "tb.v").write_text("\n".join(lines) + "\n")
    ice40_icarus("ram.v")


class _Prod(wiring.Component):
    def __init__(self, a_shape, b_shape):
        super().__init__({"a": In(a_shape), "b": In(b_shape), "o": Out(signed(24))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.o.eq(lut_product(self.a, self.b))
        return m


@pytest.mark.parametrize("a_shape,b_shape", [(signed(8), signed(8)), (signed(8), unsigned(7))])
def test_lut_product_is_the_product(a_shape, b_shape):
    dut = _Prod(a_shape, b_shape)
    assert "$mul" not in rtlil.convert(dut)
    rng = random.Random(3)

    def rnd(s):
        lo = -(1 << (s.width - 1)) if s.signed else 0
        return rng.randrange(lo, lo + (1 << s.width))

    pairs = [(rnd(a_shape), rnd(b_shape)) for _ in range(3000)]
    pairs += [(-128, -128), (-128, 127), (127, -128), (0, -1)] if b_shape.signed else []

    async def tb(ctx):
        for a, b in pairs:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            assert ctx.get(dut.o) == a * b, (a, b)

    sim = Simulator(dut)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("kw,match", [
    (dict(post_lanes=3, p_out=4), r"post_lanes must be 0 \(one per output lane\) or a divisor "
                                  r"of p_out=4, not 3"),
    (dict(post_lanes=-1), "post_lanes must be 0"),
    (dict(post_pipeline="none"), r"post_pipeline must be one of \('full', 'short'\), not 'none'"),
    (dict(post_lanes=1, p_out=8, out_fifo_depth=4),
     r"out_fifo_depth must be >= p_out / post_lanes = 8 .*, not 4"),
    (dict(weight_memory="ebr"), r"weight_memory must be one of \('block', 'spram'\), not 'ebr'"),
    (dict(pe_multipliers="booth"),
     r"pe_multipliers must be one of \('dsp', 'lut'\), not 'booth'"),
    (dict(weight_memory="spram", p_out=4, p_in=4),
     r"weight_memory 'spram' needs p_out \* p_in \* data_bits <= 64 .*, not 128"),
    (dict(weight_memory="spram", p_out=1, p_in=1, max_in_channels=128, max_out_channels=16),
     "weight_memory 'spram' needs weight_depth <= 16384 words .*, not 18432"),
    (dict(weight_bank_depth=100),
     r"weight_bank_depth must be 0 \(one memory\) or a power of two >= 16, not 100"),
    (dict(weight_bank_depth=8), "weight_bank_depth must be 0 .* >= 16, not 8"),
    (dict(weight_bank_depth=-512), "weight_bank_depth must be 0 .*, not -512"),
    (dict(weight_bank_depth="512"), "weight_bank_depth must be 0 .*, not '512'"),
    (dict(weight_memory="spram", p_out=1, p_in=1, weight_bank_depth=512),
     r"weight_bank_depth must be 0 with weight_memory 'spram' \(banks are block RAM\), "
     "not 512"),
])
def test_ice40_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        ConvConfig(**kw)


def test_icebreaker_preset_derived_sizes_and_json():
    cfg = conv_preset("icebreaker")
    assert ConvConfig.from_json(cfg.to_json()) == cfg
    assert (cfg.out_lanes, cfg.post_cycles, cfg.param_depth) == (1, 2, 32)
    # the short post-processing (8 stages, not 13)
    assert cfg.post_pipeline == "short" and cfg.post_latency == 8
    assert cfg.pipeline_latency == 15 + 2 and cfg.spram_blocks == 2
    plain = ConvConfig()             # block RAM weights: one more read stage (read_latency 2)
    assert (plain.out_lanes, plain.post_cycles, plain.pipeline_latency) == (plain.p_out, 1, 21)
    assert (plain.read_latency, cfg.read_latency) == (2, 1)
    assert plain.spram_blocks == 0
    from nmaccel.boards.targets import board_target
    assert board_target("icebreaker").presets["conv"] == "icebreaker"


class _RegProd(wiring.Component):
    def __init__(self):
        super().__init__({"a": In(signed(8)), "b": In(signed(8)), "ce": In(1),
                          "o": Out(signed(16))})

    def elaborate(self, platform):
        from nmaccel.hw.common.dsp import registered_product
        m = Module()
        m.d.comb += self.o.eq(registered_product(m, self.a, self.b, signed(16), name="x_",
                                                 ce=self.ce, lut=True))
        return m


def test_lut_registered_product_latency_and_enable():
    """The LUT form of registered_product: the product REGISTERED_PRODUCT_LATENCY cycles after
    its operands, holding while ``ce`` is low, with no ``*`` in the netlist."""
    from nmaccel.hw.common.dsp import REGISTERED_PRODUCT_LATENCY
    dut = _RegProd()
    assert "$mul" not in rtlil.convert(dut)
    rng = random.Random(5)
    seq = [(rng.randrange(-128, 128), rng.randrange(-128, 128), rng.random() < 0.7)
           for _ in range(400)]

    async def tb(ctx):
        pipe = []                                   # products entering each enabled stage
        stages = [None] * REGISTERED_PRODUCT_LATENCY
        for a, b, ce in seq:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.ce, ce)
            await ctx.tick()
            if ce:
                stages = [a * b] + stages[:-1]
            if stages[-1] is not None:
                assert ctx.get(dut.o) == stages[-1]
                pipe.append(stages[-1])
        assert len(pipe) > 200

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
