"""The per-block resource estimate used by benchmarks/{conv,sta}_resources.py."""

from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nmaccel.boards.synth_stats import synth_ecp5_stats


class Mul8(wiring.Component):
    a: In(signed(8))
    b: In(signed(8))
    o: Out(signed(16))

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.o.eq(self.a * self.b)
        return m


def test_multiplier_goes_to_a_dsp_or_to_luts():
    dsp = synth_ecp5_stats(Mul8(), "mul8", nodsp=False)
    lut = synth_ecp5_stats(Mul8(), "mul8", nodsp=True)
    assert dsp["dsp"] == 1 and lut["dsp"] == 0
    assert lut["luts_total"] > dsp["luts_total"] + 40       # an 8x8 product costs LUTs
    assert lut["luts_total"] == lut["lut4"] + 2 * lut["ccu2c"]
