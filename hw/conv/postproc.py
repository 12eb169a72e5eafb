"""Per-channel affine post-processing and requantize / binarize, ``lanes`` lanes (default
``p_out``; the engine builds ``config.out_lanes`` and, when they are fewer than ``p_out``,
feeds them one lane group per cycle).

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
Latency ``9 + MUL_LATENCY`` (13), fully pipelined: inputs registered; the four counter
products' operands and their partial products (17-bit chunks, one multiplier each, with
operand registers of their own: :func:`nmaccel.hw.common.arith.partial_products`); the
partial products once more, in logic cells (off the DSP rows); two partial sums; ``v``;
``v·mult`` over ``MUL_LATENCY`` stages (split into 17-bit chunks and summed over
registered adder levels by :class:`nmaccel.hw.common.arith.PipelinedMultiplier`, see
:mod:`nmaccel.hw.common.arith`); then ``round_shift(x, s) = (((2x) >> s) + 1) >> 1`` in
three stages: ``>> (s & ~7)``, the saturation bounds scaled by ``2**(s & 7)`` beside it;
``>> (s & 7)`` (its low ``ROUND_BITS`` bits), the saturation compares beside it (they read
the coarse-shifted value against the scaled bounds, exactly); round and select the layer's
bound or the rounded value / binarize. (Out of context on the 85F, ``nmaccel bench
block-fmax --only PostProcess``: 124.4 MHz with the compares behind the fine shift, reading
a ``sat_lo2`` that fans out to every lane, in the last stage; 148.3 MHz with them a stage
earlier.)

``config.post_pipeline = "short"`` (slow devices, the iCE40UP5K): latency 8
(:data:`~nmaccel.spec.config.CONV_POST_LATENCY`): no input registers (the products'
operand registers read the inputs); the partial products; ``v`` (their sum + bias, one
adder level); ``v·mult``'s operand and partial-product registers (``partial_products``,
summed in front of the coarse shift); then the same three stages. The same arithmetic
(bit-exact), fewer delay registers beside it (on the iCE40 a register fed by a register
costs a logic cell of its own).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.arith import (
    FINE_BITS,
    PipelinedMultiplier,
    partial_products,
    product_shape,
)
from nmaccel.spec.config import CONV_POST_LATENCY, MUL_LATENCY, ConvConfig
from nmaccel.spec.conv_format import param_fields

__all__ = ["PostProcess", "param_layout"]

#: Low bits of the shifted product kept for the rounding: the low 8 bits of
#: ``(pre + 1) >> 1`` need pre's low 9 (the saturation compares read the whole value).
ROUND_BITS = 9


def param_layout(config: ConvConfig) -> data.StructLayout:
    """One lane of the parameter memory, built from :func:`param_fields`."""
    return data.StructLayout({name: (signed(b) if s else unsigned(b))
                              for name, b, s in param_fields(config)})


class PostProcess(wiring.Component):
    """Affine + requantize/binarize (see the module docstring)."""

    #: the full form's depth (``post_pipeline = "full"``); an instance's ``latency`` is its
    #: config's :attr:`~nmaccel.spec.config.ConvConfig.post_latency`
    latency = CONV_POST_LATENCY["full"]

    def __init__(self, config: ConvConfig, lanes: int | None = None) -> None:
        if not isinstance(config, ConvConfig):
            raise TypeError(f"config must be a ConvConfig, not {type(config).__name__}")
        lanes = config.p_out if lanes is None else lanes
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self.config, self.lanes = config, lanes
        self.latency = config.post_latency
        po, cb = lanes, config.count_bits
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
        po, vb, mb = self.lanes, cfg.bias_bits, cfg.mult_bits
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
        short = cfg.post_pipeline == "short"

        # Datapath registers have no reset (only the valid bits do).
        # S1: inputs and parameters registered (the parameter memory's block RAM and the
        # accumulators feed this stage directly); short: none (the shadow registers, the
        # accumulators and the block RAM's read register feed the product operands)
        if short:
            s0 = [self.s0[o] for o in range(po)]
            s3 = [self.s3[o] for o in range(po)]
            s1, s2 = self.s1, self.s2
            par = [self.params[o] for o in range(po)]
        else:
            s0 = delay([self.s0[o] for o in range(po)], "s0_1", signed(cfg.acc_bits))
            s3 = delay([self.s3[o] for o in range(po)], "s3_1", unsigned(cfg.count_bits))
            s1 = Signal.like(self.s1, name="s1_1", reset_less=True)
            s2 = Signal.like(self.s2, name="s2_1", reset_less=True)
            m.d.sync += [s1.eq(self.s1), s2.eq(self.s2)]
            par = [Signal(param_layout(cfg), name=f"par1_{o}", reset_less=True)
                   for o in range(po)]
            m.d.sync += [par[o].eq(self.params[o]) for o in range(po)]

        # S2, S3: the four counter products, in partial products of at most 17-bit chunks
        # (one MULT18X18D each, with operand registers of their own: partial_products; c0·S0,
        # 26-bit S0, is two), summed in S4 (Yosys would join them behind the multipliers in
        # the same cycle)
        parts = ([], [])                                   # S4's two partial sums
        for j, (src, shared) in enumerate(((s0, False), (s1, True), (s2, True), (s3, False))):
            for o in range(po):
                c = getattr(par[o], f"c{j}")
                pp = partial_products(m, c, src if shared else src[o], name=f"c{j}_{o}_",
                                      platform=platform, gate=not short)
                parts[j // 2].append((o, pp))

        def delays(sigs, name, shape, n):
            for k in range(n):
                sigs = delay(sigs, f"{name}{k + 1}", shape)
            return sigs

        bias = [par[o].bias for o in range(po)]
        mult = [par[o].mult for o in range(po)]
        shift = [par[o].shift for o in range(po)]
        shs = unsigned(cfg.shift_bits)
        if short:
            # S3 (short): v = the partial products' sum + bias, one adder level (mod
            # 2**bias_bits, as the full form's two); S4, S5: v·mult's operand and partial
            # product registers (partial_products), summed in front of the coarse shift
            bias2 = delays(bias, "bias", signed(vb), 2)
            mult3 = delays(mult, "mult", unsigned(mb), 3)
            v4 = regs("v3", signed(vb))
            m.d.sync += [v4[o].eq(sum(p << off for _, terms in ((0, parts[0]), (1, parts[1]))
                                      for o_, pp in terms if o_ == o for p, off in pp)
                                  + bias2[o]) for o in range(po)]
            prod = []
            for o in range(po):
                po_shape = product_shape(signed(vb), unsigned(mb))
                assert po_shape.width <= pw
                p_ = Signal(po_shape, name=f"vmul_{o}")
                m.d.comb += p_.eq(sum(p << off for p, off in
                                      partial_products(m, v4[o], mult3[o], name=f"vm_{o}_",
                                                       platform=platform, gate=False)))
                prod.append(p_)
            shd = delays(shift, "sh", shs, 5)
            vd = delays(v4, "v", signed(vb), 2)
        else:
            bias2 = delays(bias, "bias", signed(vb), 3)
            mult2 = delays(mult, "mult", unsigned(mb), 3)
            sh2 = delays(shift, "sh", shs, 3)

            # S4: each partial product registered in logic cells (a multiplier's output
            # crosses from the DSP rows: 5.8 ns of routing into S5's adders was the 98.49 MHz
            # ULX3S conv build's critical path); S5: two partial sums; S6: v = their sum +
            # bias, kept as signed bias_bits
            psb = cfg.coef_bits + cfg.acc_bits + 2
            pa = regs("pa3", signed(psb))
            pb = regs("pb3", signed(psb))
            for dst, terms in ((pa, parts[0]), (pb, parts[1])):
                for o in range(po):
                    products = []
                    for k, (o_, pp) in enumerate(terms):
                        if o_ != o:
                            continue
                        for i, (p, off) in enumerate(pp):
                            r = Signal.like(p, name=f"{dst[o].name}_p{k}_{i}", reset_less=True)
                            m.d.sync += r.eq(p)
                            products.append(r << off)
                    m.d.sync += dst[o].eq(sum(products))
            bias3 = delay(bias2, "bias4", signed(vb))
            mult3 = delay(mult2, "mult4", unsigned(mb))
            sh3 = delay(sh2, "sh4", shs)
            v4 = regs("v5", signed(vb))
            m.d.sync += [v4[o].eq(pa[o] + pb[o] + bias3[o]) for o in range(po)]
            mult4 = delay(mult3, "mult5", unsigned(mb))
            sh4 = delay(sh3, "sh5", shs)

            # S7..S(6+MUL_LATENCY): v·mult (PipelinedMultiplier). v and shift travel beside
            # it.
            prod = []
            for o in range(po):
                m.submodules[f"vmul{o}"] = mul = PipelinedMultiplier(signed(vb), unsigned(mb))
                assert mul.o_shape.width <= pw
                m.d.comb += [mul.a.eq(v4[o]), mul.b.eq(mult4[o])]
                prod.append(mul.o)
            vd, shd = v4, sh4
            for j in range(MUL_LATENCY):
                vd = delay(vd, f"v{7 + j}", signed(vb))
                shd = delay(shd, f"sh{7 + j}", shs)

        # Then requant = saturate(round_shift(v·mult, shift)) with round_shift(x, s) =
        # (((2x) >> s) + 1) >> 1 (round half up, any s >= 0), over three stages:
        # coarse shift (by shift & ~7), the saturation bounds scaled by 2**(shift & 7) beside
        # it; fine shift (by shift & 7, the low ROUND_BITS bits kept) with the saturation
        # compares beside it (they read the coarse value, not the shifted one); round and
        # select (or binarize).
        #
        # The output range comes from the layer settings (constant over a layer, which
        # reaches these stages many cycles after it is set): registered, off the datapath.
        # With pre = coarse >> fine (floor), rounded = floor((pre + 1) / 2) > hi iff
        # pre >= 2·hi + 1 iff coarse >= (2·hi + 1)·2**fine, and < lo iff pre < 2·lo − 1 iff
        # coarse < (2·lo − 1)·2**fine: exact for any coarse, so no overflow flag is needed
        # and the rounded value needs only pre's low bits.
        b = self.out_bits
        one = Const(1, 10)
        hi = Signal(signed(11), name="sat_hi", reset_less=True)
        lo = Signal(signed(11), name="sat_lo", reset_less=True)
        hi2 = Signal(signed(13), name="sat_hi2", reset_less=True)
        lo2 = Signal(signed(13), name="sat_lo2", reset_less=True)
        half_range = (one << b) >> 1
        m.d.sync += [hi.eq(Mux(self.out_signed, half_range - 1, (one << b) - 1)),
                     lo.eq(Mux(self.out_signed, -half_range, 0)),
                     hi2.eq((hi << 1) + 1), lo2.eq((lo << 1) - 1)]
        fb = FINE_BITS
        coarse = regs("coarse", signed(pw + 1))
        fine = regs("fine", unsigned(fb))
        hi_sh = regs("hi_sh", signed(len(hi2) + (1 << fb) - 1))
        lo_sh = regs("lo_sh", signed(len(lo2) + (1 << fb) - 1))
        for o in range(po):
            m.d.sync += [coarse[o].eq((prod[o] << 1) >> (shd[o][fb:] << fb)),
                         fine[o].eq(shd[o][:fb]),
                         hi_sh[o].eq(hi2 << shd[o][:fb]), lo_sh[o].eq(lo2 << shd[o][:fb])]
        vc = delay(vd, "v_coarse", signed(vb))
        pre = regs("pre", unsigned(ROUND_BITS))
        over = regs("over", 1)                             # rounded > hi
        under = regs("under", 1)                           # rounded < lo
        vpos = regs("vpos", 1)
        for o in range(po):
            m.d.sync += [pre[o].eq((coarse[o] >> fine[o])[:ROUND_BITS]),
                         over[o].eq(coarse[o] >= hi_sh[o]), under[o].eq(coarse[o] < lo_sh[o]),
                         vpos[o].eq(vc[o] > 0)]
        vs = delay(vc, "v_shift", signed(vb))

        for o in range(po):
            rounded = (pre[o] + 1)[1:]                      # the low 8 bits of (pre + 1) >> 1
            sat = Mux(over[o], hi, Mux(under[o], lo, rounded))
            q = Mux(self.binarize, vpos[o], sat)
            m.d.sync += [self.q[o].eq(q[:8]), self.v[o].eq(vs[o])]
        return m
