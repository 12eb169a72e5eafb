"""PE array of the conv engine: ``p_out`` × ``p_in`` PEs with a per-layer mode.

PE (o, i) sees activation lane ``a = act[i]`` and weight ``w = wt[o][i]`` (``data_bits``
each) and produces, by the run-time ``mode`` (:class:`nmaccel.model.conv_ref.Mode`):

``ADDER``   ``|a' − 2·w|`` with ``a'`` = a (unsigned) or 0 on a padded tap (``sval = 0``);
            0 for a channel lane past C_in (``chan[i] = 0``)
``MUL``     ``a·w`` (int8 × int8), 0 unless ``chan[i] & sval``
``BINARY``  ``XNOR(a[0], w[0])`` and ``w[0]``, both masked by ``chan[i] & sval``

Row ``o`` sums its PEs into ``sum0[o]`` (the term sum; X in binary mode) and ``pw[o]``
(popcount of the masked weight bits); the array also counts ``pa`` (masked activation
bits) and ``n`` (valid taps), shared by all rows. Only the modes in ``config.modes`` are
built (the resource benchmark builds one mode at a time).

Ports
    ``act``   In  ``ArrayLayout(unsigned(data_bits), p_in)``
    ``wt``    In  ``ArrayLayout(ArrayLayout(unsigned(data_bits), p_in), p_out)``
    ``chan``  In  ``p_in``  -- lane i holds a real input channel
    ``sval``  In  1         -- the tap is inside the image (not padding)
    ``mode``  In  2
    ``valid`` In  1
    ``sum0``  Out ``ArrayLayout(signed(sum_bits), p_out)``
    ``pw``    Out ``ArrayLayout(unsigned(clog2(p_in + 1)), p_out)``
    ``pa``, ``n`` Out ``unsigned(clog2(p_in + 1))``
    ``o_valid`` Out 1

The int8 products are ``*`` (a DSP where the flow maps one) or, with ``pe_multipliers =
"lut"``, shift-and-add logic (:func:`nmaccel.hw.common.dsp.lut_product`), same registers.

Latency 5 (inputs registered, a padded tap's activation zeroed as it is; adder/binary terms
(the adder's ``a' − 2w``) and each multiplier's operands registered; the int8 product
registered, the adder's ``|a' − 2w|`` beside it; the selected terms summed in pairs; row
sums registered); one beat per cycle. The input register takes the weight/line-buffer block
RAM outputs off the multiplier path (on the ECP5 the unregistered path limited the engine to
35 MHz); the
product register keeps the DSP's output off the mode mux (the next critical path, 16.2 ns);
the operand registers, one pair per multiplier (on the ECP5 the MULT18X18D's input
registers, :func:`nmaccel.hw.common.dsp.registered_product`), keep the routing to the
multipliers off the critical path (``act_r`` fans out to a column's multipliers and every
row's terms: 4.3 ns of routing to one of them). Out of context on the 85F (``nmaccel bench
block-fmax --only PEArray``) the array ran at 110.2 MHz with ``sval`` zeroing ``a'`` in front
of every row's subtractor and ``|a' − 2w|`` in stage 1 (9.1 ns), 117.7 MHz with the whole
row adder tree in stage 4 (8.5 ns); 128.4 MHz now (the DSP output's routing to the pair sums).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.arith import sum_pairs
from nmaccel.hw.common.dsp import registered_product
from nmaccel.spec.config import ConvConfig, clog2
from nmaccel.spec.conv_format import Mode

__all__ = ["PEArray"]


def _tree_sum(values):
    values = list(values)
    while len(values) > 1:
        nxt = [values[j] + values[j + 1] for j in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values[0]


def _bits_stage(m, modes, po, pi, wbits, abits, mbits, stage: int):
    """The binary mode's per-PE weight bits and per-input activation / mask bits one register
    stage later (registers ``wb{stage}_o_i``, ``ab{stage}_i``, ``mb{stage}_i``; loaded only
    when the array has the binary mode)."""
    w = [[Signal(name=f"wb{stage}_{o}_{i}", reset_less=True) for i in range(pi)]
         for o in range(po)]
    a = [Signal(name=f"ab{stage}_{i}", reset_less=True) for i in range(pi)]
    mk = [Signal(name=f"mb{stage}_{i}", reset_less=True) for i in range(pi)]
    if "binary" in modes:
        m.d.sync += [d.eq(s) for d, s in zip(a + mk, abits + mbits)]
        m.d.sync += [w[o][i].eq(wbits[o][i]) for o in range(po) for i in range(pi)]
    return w, a, mk


class PEArray(wiring.Component):
    """``p_out`` × ``p_in`` adder / binary / int8 PEs (see the module docstring)."""

    latency = 5

    def __init__(self, config: ConvConfig) -> None:
        if not isinstance(config, ConvConfig):
            raise TypeError(f"config must be a ConvConfig, not {type(config).__name__}")
        self.config = config
        db = config.data_bits
        half = 1 << (db - 1)
        self.term_bits = 1
        if "adder" in config.modes:
            self.term_bits = max(self.term_bits, clog2((1 << db) + 2 * half) + 1)
        if "mul" in config.modes:
            self.term_bits = max(self.term_bits, 2 * db)
        if "binary" in config.modes:
            self.term_bits = max(self.term_bits, 2)
        self.sum_bits = self.term_bits + clog2(config.p_in) + 1
        self.cnt_bits = clog2(config.p_in + 1)
        po, pi = config.p_out, config.p_in
        super().__init__({
            "act": In(data.ArrayLayout(unsigned(db), pi)),
            "wt": In(data.ArrayLayout(data.ArrayLayout(unsigned(db), pi), po)),
            "chan": In(pi),
            "sval": In(1),
            "mode": In(2),
            "valid": In(1),
            "sum0": Out(data.ArrayLayout(signed(self.sum_bits), po)),
            "pw": Out(data.ArrayLayout(unsigned(self.cnt_bits), po)),
            "pa": Out(unsigned(self.cnt_bits)),
            "n": Out(unsigned(self.cnt_bits)),
            "o_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        po, pi = cfg.p_out, cfg.p_in
        modes = cfg.modes
        is_add = self.mode == Mode.ADDER
        is_mul = self.mode == Mode.MUL
        is_bin = self.mode == Mode.BINARY

        # Datapath registers have no reset (only the valid bits do): fewer control sets for
        # the packer and no reset net to route to every pipeline bit.
        # stage 0: inputs registered (block RAM outputs feed this stage directly)
        act = Signal.like(self.act, name="act_r", reset_less=True)
        wt = Signal.like(self.wt, name="wt_r", reset_less=True)
        chan = Signal.like(self.chan, name="chan_r", reset_less=True)
        sval, valid0 = Signal(name="sval_r", reset_less=True), Signal(name="valid_r")
        # A padded tap's activation is zeroed as it is registered (a synchronous reset of
        # act_r, no logic): every mode masks it anyway (MUL and BINARY with sval, ADDER reads
        # it as 0), and sval_r no longer fans out through a LUT to every row's subtractor
        # (sval_r → a' → a − 2w → |·| was the array's critical path, 9.1 ns).
        m.d.sync += [act.eq(Mux(self.sval, self.act, 0)), wt.eq(self.wt), chan.eq(self.chan),
                     sval.eq(self.sval), valid0.eq(self.valid)]
        # stage 1: adder / binary terms (the adder's a' − 2w, its magnitude taken in stage 2);
        # each multiplier's operands in registers of its own
        # (act_r feeds every row's terms and, through them, each multiplier of its column:
        # that load between the register and the MULT18X18Ds across the chip was the
        # array's critical path); the activation is zeroed outside MUL mode.
        # stage 2: the int8 product in its own register (the DSP's output: on the ECP5 the
        # unregistered product and the mode mux behind it were the critical path, 16.2 ns);
        # the other modes' terms wait beside it. Both stages are one registered_product: on
        # the ECP5 the registers are the MULT18X18D's own.
        t1 = [[Signal(signed(self.term_bits), name=f"t1_{o}_{i}", reset_less=True)
               for i in range(pi)] for o in range(po)]
        p1 = [[Signal(signed(2 * cfg.data_bits), name=f"p1_{o}_{i}", reset_less=True)
               for i in range(pi)] for o in range(po)]
        use_p1 = [Signal(name=f"use_p1_{i}", reset_less=True) for i in range(pi)]
        wbits = [[Signal(name=f"wb_{o}_{i}", reset_less=True) for i in range(pi)]
                 for o in range(po)]
        abits = [Signal(name=f"ab_{i}", reset_less=True) for i in range(pi)]
        mbits = [Signal(name=f"mb_{i}", reset_less=True) for i in range(pi)]
        valid1, valid2, valid3 = Signal(), Signal(), Signal()
        m.d.sync += [valid1.eq(valid0), valid2.eq(valid1), valid3.eq(valid2)]
        for i in range(pi):
            a = act[i]
            mask = chan[i] & sval
            if "binary" in modes:
                m.d.sync += [abits[i].eq(a[0] & mask & is_bin), mbits[i].eq(mask & is_bin)]
            if "mul" in modes:
                m.d.sync += use_p1[i].eq(is_mul & mask)
            for o in range(po):
                w = wt[o][i]
                term = 0
                if "adder" in modes:
                    diff = a.as_unsigned() - (w.as_signed() << 1)
                    term = Mux(is_add & chan[i], diff, term)
                if "mul" in modes:
                    m.d.comb += p1[o][i].eq(registered_product(
                        m, Mux(is_mul, a.as_signed(), 0), w.as_signed(), p1[o][i].shape(),
                        platform=platform, name=f"p1_{o}_{i}_",
                        lut=cfg.pe_multipliers == "lut"))
                if "binary" in modes:
                    term = Mux(is_bin & mask, ~(a[0] ^ w[0]), term)
                    m.d.sync += wbits[o][i].eq(w[0] & mask & is_bin)
                m.d.sync += t1[o][i].eq(term)

        # stage 2: the stage-1 terms (the adder's as |a' − 2w|: a binary term, 0 or 1, and
        # a masked 0 are their own magnitudes) and bits wait beside the products
        t2 = [[Signal(signed(self.term_bits), name=f"t2_{o}_{i}", reset_less=True)
               for i in range(pi)] for o in range(po)]
        use_p2 = [Signal(name=f"use_p2_{i}", reset_less=True) for i in range(pi)]
        m.d.sync += [t2[o][i].eq(abs(t1[o][i]) if "adder" in modes else t1[o][i])
                     for o in range(po) for i in range(pi)]
        m.d.sync += [u2.eq(u1) for u2, u1 in zip(use_p2, use_p1)]
        wbits, abits, mbits = _bits_stage(m, modes, po, pi, wbits, abits, mbits, 1)

        # stage 3: terms (the product or the other modes' term), summed in pairs (the first
        # level of each row's adder tree: the whole tree behind the stage-3 registers was the
        # array's critical path, 8.5 ns); the bit counts wait here.
        pairs = []
        for o in range(po):
            picks = [Mux(use_p2[i], p1[o][i], t2[o][i]) if "mul" in modes else t2[o][i]
                     for i in range(pi)]
            pairs.append(sum_pairs(m, picks, signed(self.term_bits + (pi > 1)), f"t_{o}",
                                   reset_less=True))
        wbits2, abits2, mbits2 = _bits_stage(m, modes, po, pi, wbits, abits, mbits, 2)

        # stage 4: row sums (the rest of the tree)
        m.d.sync += self.o_valid.eq(valid3)
        for o in range(po):
            m.d.sync += self.sum0[o].eq(_tree_sum(pairs[o]))
            if "binary" in modes:
                m.d.sync += self.pw[o].eq(_tree_sum(wbits2[o]))
        if "binary" in modes:
            m.d.sync += [self.pa.eq(_tree_sum(abits2)), self.n.eq(_tree_sum(mbits2))]
        return m
