"""Per-channel affine post-processing and requantize / binarize, ``p_out`` lanes.

For lane o (rule of :func:`nmaccel.model.conv_ref.run_job`)::

    v = c0·S0 + c1·S1 + c2·S2 + c3·S3 + bias            (kept as signed bias_bits)
    q = saturate(round_shift(v·mult, shift), out_bits, out_signed)   (requant)
    q = [v > 0]                                                      (binarize)

``round_shift`` is round half up (:mod:`nmaccel.model.quant`). ``S0`` is per lane
(term sum / XNOR count), ``S1`` (P_a) and ``S2`` (N) are shared, ``S3`` (P_w) is per lane.

Ports
    ``s0`` In ``ArrayLayout(signed(acc_bits), p_out)``; ``s1``, ``s2`` In
    ``unsigned(count_bits)``; ``s3`` In ``ArrayLayout(unsigned(count_bits), p_out)``
    ``params`` In ``ArrayLayout(param lane, p_out)`` (fields of
    :func:`nmaccel.model.conv_ref.param_fields`)
    ``binarize``, ``out_bits`` (4), ``out_signed`` In  -- layer settings
    ``valid`` In 1;  ``q`` Out ``ArrayLayout(unsigned(8), p_out)``;
    ``v`` Out ``ArrayLayout(signed(bias_bits), p_out)``;  ``o_valid`` Out 1
Latency 3 (affine, multiply, round/saturate), fully pipelined.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.config import ConvConfig
from nmaccel.model.conv_ref import param_fields

__all__ = ["PostProcess", "param_layout"]


def param_layout(config: ConvConfig) -> data.StructLayout:
    """One lane of the parameter memory, built from :func:`param_fields`."""
    return data.StructLayout({name: (signed(b) if s else unsigned(b))
                              for name, b, s in param_fields(config)})


class PostProcess(wiring.Component):
    """Affine + requantize/binarize (see the module docstring)."""

    latency = 3

    def __init__(self, config: ConvConfig) -> None:
        if not isinstance(config, ConvConfig):
            raise TypeError(f"config must be a ConvConfig, not {type(config).__name__}")
        self.config = config
        po, cb = config.p_out, config.count_bits
        super().__init__({
            "s0": In(data.ArrayLayout(signed(config.acc_bits), po)),
            "s1": In(unsigned(cb)), "s2": In(unsigned(cb)),
            "s3": In(data.ArrayLayout(unsigned(cb), po)),
            "params": In(data.ArrayLayout(param_layout(config), po)),
            "binarize": In(1), "out_bits": In(4), "out_signed": In(1),
            "valid": In(1),
            "q": Out(data.ArrayLayout(unsigned(8), po)),
            "v": Out(data.ArrayLayout(signed(config.bias_bits), po)),
            "o_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        vb = cfg.bias_bits
        v1 = [Signal(signed(vb), name=f"v1_{o}") for o in range(cfg.p_out)]
        mult1 = [Signal(unsigned(cfg.mult_bits), name=f"mult1_{o}") for o in range(cfg.p_out)]
        sh1 = [Signal(6, name=f"sh1_{o}") for o in range(cfg.p_out)]
        v2 = [Signal(signed(vb), name=f"v2_{o}") for o in range(cfg.p_out)]
        prod2 = [Signal(signed(vb + cfg.mult_bits + 1), name=f"prod2_{o}")
                 for o in range(cfg.p_out)]
        sh2 = [Signal(6, name=f"sh2_{o}") for o in range(cfg.p_out)]
        valid1, valid2 = Signal(), Signal()
        m.d.sync += [valid1.eq(self.valid), valid2.eq(valid1), self.o_valid.eq(valid2)]

        b = self.out_bits
        one = Const(1, 10)
        hi, lo = Signal(signed(11)), Signal(signed(11))
        half_range = (one << b) >> 1
        m.d.comb += [hi.eq(Mux(self.out_signed, half_range - 1, (one << b) - 1)),
                     lo.eq(Mux(self.out_signed, -half_range, 0))]
        for o in range(cfg.p_out):
            p = self.params[o]
            v = (p.c0 * self.s0[o] + p.c1 * self.s1 + p.c2 * self.s2 + p.c3 * self.s3[o]
                 + p.bias)
            m.d.sync += [v1[o].eq(v), mult1[o].eq(p.mult), sh1[o].eq(p.shift)]
            m.d.sync += [v2[o].eq(v1[o]), prod2[o].eq(v1[o] * mult1[o]), sh2[o].eq(sh1[o])]
            half = (Const(1, vb + cfg.mult_bits + 1) << sh2[o]) >> 1
            r = (prod2[o] + half) >> sh2[o]
            sat = Mux(r > hi, hi, Mux(r < lo, lo, r))
            q = Mux(self.binarize, v2[o] > 0, sat)
            m.d.sync += [self.q[o].eq(q[:8]), self.v[o].eq(v2[o])]
        return m
