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
    ``binarize``, ``out_bits`` (4), ``out_signed`` In  -- layer settings (the saturation range
    is registered from them: hold them from one cycle before a layer's first beat arrives)
    ``valid`` In 1;  ``q`` Out ``ArrayLayout(unsigned(8), p_out)``;
    ``v`` Out ``ArrayLayout(signed(bias_bits), p_out)``;  ``o_valid`` Out 1
Latency ``7 + MUL_LATENCY`` (10), fully pipelined: inputs registered; the four counter
products; two partial sums; ``v``; ``v·mult`` over ``MUL_LATENCY`` stages (split into 17-bit
chunks and summed over registered adder levels by
:class:`nmaccel.hw.common.arith.PipelinedMultiplier`, see :mod:`nmaccel.hw.common.arith`);
+ half; ``>> shift``; saturate / binarize.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.arith import PipelinedMultiplier
from nmaccel.spec.config import MUL_LATENCY, ConvConfig
from nmaccel.spec.conv_format import param_fields

__all__ = ["PostProcess", "param_layout"]


def param_layout(config: ConvConfig) -> data.StructLayout:
    """One lane of the parameter memory, built from :func:`param_fields`."""
    return data.StructLayout({name: (signed(b) if s else unsigned(b))
                              for name, b, s in param_fields(config)})


class PostProcess(wiring.Component):
    """Affine + requantize/binarize (see the module docstring)."""

    latency = 8 - 1 + MUL_LATENCY

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
        po, vb, mb = cfg.p_out, cfg.bias_bits, cfg.mult_bits
        pw = vb + mb + 1                                   # v·mult (and the rounded value)

        def regs(name, shape):
            return [Signal(shape, name=f"{name}_{o}", reset_less=True) for o in range(po)]

        def delay(sigs, name, shape):
            """``sigs`` one stage later."""
            out = regs(name, shape)
            m.d.sync += [d.eq(s_) for d, s_ in zip(out, sigs)]
            return out

        valid = [self.valid]
        for j in range(self.latency):
            nv = Signal(name=f"valid{j + 1}")
            m.d.sync += nv.eq(valid[-1])
            valid.append(nv)
        m.d.comb += self.o_valid.eq(valid[-1])

        # Datapath registers have no reset (only the valid bits do).
        # S1: inputs and parameters registered (the parameter memory's block RAM and the
        # accumulators feed this stage directly)
        s0 = delay([self.s0[o] for o in range(po)], "s0_1", signed(cfg.acc_bits))
        s3 = delay([self.s3[o] for o in range(po)], "s3_1", unsigned(cfg.count_bits))
        s1 = Signal.like(self.s1, name="s1_1", reset_less=True)
        s2 = Signal.like(self.s2, name="s2_1", reset_less=True)
        m.d.sync += [s1.eq(self.s1), s2.eq(self.s2)]
        par = [Signal(param_layout(cfg), name=f"par1_{o}", reset_less=True) for o in range(po)]
        m.d.sync += [par[o].eq(self.params[o]) for o in range(po)]

        # S2: the four counter products
        prods = []
        for j, (src, shared) in enumerate(((s0, False), (s1, True), (s2, True), (s3, False))):
            prods.append([Signal(signed(cfg.coef_bits + cfg.acc_bits + 1), name=f"p{j}_2_{o}",
                                 reset_less=True)
                          for o in range(po)])
            for o in range(po):
                c = getattr(par[o], f"c{j}")
                m.d.sync += prods[j][o].eq(c * (src if shared else src[o]))
        bias2 = delay([par[o].bias for o in range(po)], "bias2", signed(vb))
        mult2 = delay([par[o].mult for o in range(po)], "mult2", unsigned(mb))
        sh2 = delay([par[o].shift for o in range(po)], "sh2", unsigned(cfg.shift_bits))

        # S3: two partial sums; S4: v = their sum + bias, kept as signed bias_bits
        psb = cfg.coef_bits + cfg.acc_bits + 2
        pa = regs("pa3", signed(psb))
        pb = regs("pb3", signed(psb))
        m.d.sync += [pa[o].eq(prods[0][o] + prods[1][o]) for o in range(po)]
        m.d.sync += [pb[o].eq(prods[2][o] + prods[3][o]) for o in range(po)]
        bias3 = delay(bias2, "bias3", signed(vb))
        mult3 = delay(mult2, "mult3", unsigned(mb))
        sh3 = delay(sh2, "sh3", unsigned(cfg.shift_bits))
        v4 = regs("v4", signed(vb))
        m.d.sync += [v4[o].eq(pa[o] + pb[o] + bias3[o]) for o in range(po)]
        mult4 = delay(mult3, "mult4", unsigned(mb))
        sh4 = delay(sh3, "sh4", unsigned(cfg.shift_bits))

        # S5..S(4+MUL_LATENCY): v·mult (PipelinedMultiplier); then + half (round half up),
        # >> shift, saturate / binarize. v and shift travel beside the product.
        prod = []
        for o in range(po):
            m.submodules[f"vmul{o}"] = mul = PipelinedMultiplier(signed(vb), unsigned(mb))
            assert mul.o_shape.width <= pw
            m.d.comb += [mul.a.eq(v4[o]), mul.b.eq(mult4[o])]
            prod.append(mul.o)
        vd, shd = v4, sh4
        for j in range(MUL_LATENCY):
            vd = delay(vd, f"v{5 + j}", signed(vb))
            shd = delay(shd, f"sh{5 + j}", unsigned(cfg.shift_bits))
        tw = max(pw, (1 << cfg.shift_bits) - 1) + 1        # + half for any shift, exactly
        th = regs("t_half", signed(tw))
        m.d.sync += [th[o].eq(prod[o] + ((Const(1, pw) << shd[o]) >> 1)) for o in range(po)]
        vh = delay(vd, "v_half", signed(vb))
        shh = delay(shd, "sh_half", unsigned(cfg.shift_bits))
        rs = regs("r_shift", signed(tw))
        m.d.sync += [rs[o].eq(th[o] >> shh[o]) for o in range(po)]
        vs = delay(vh, "v_shift", signed(vb))

        b = self.out_bits
        one = Const(1, 10)
        # The output range comes from the layer settings (constant over a layer, which
        # reaches this stage many cycles after it is set): registered, off the compare path.
        hi = Signal(signed(11), name="sat_hi", reset_less=True)
        lo = Signal(signed(11), name="sat_lo", reset_less=True)
        half_range = (one << b) >> 1
        m.d.sync += [hi.eq(Mux(self.out_signed, half_range - 1, (one << b) - 1)),
                     lo.eq(Mux(self.out_signed, -half_range, 0))]
        for o in range(po):
            r = rs[o]
            sat = Mux(r > hi, hi, Mux(r < lo, lo, r))
            q = Mux(self.binarize, vs[o] > 0, sat)
            m.d.sync += [self.q[o].eq(q[:8]), self.v[o].eq(vs[o])]
        return m
