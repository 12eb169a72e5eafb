"""STA vector unit: residual add, GELU and LayerNorm over ``lanes`` parallel lanes.

Each component is bit-exact with its golden operator in :mod:`nmaccel.model.intops`
(rounding everywhere :func:`nmaccel.model.quant.round_shift`, round half up, then
saturation). Pipeline depths and LayerNorm's iteration counts come from
:mod:`nmaccel.spec.vector_timing`, which the cycle model reads too.

:class:`ResidualAddLanes` (``latency = RESIDUAL_LATENCY = 10``)
    ``o = saturate(round_shift(a·mult_a + b·mult_b, shift), vec_bits)`` per lane
    (:func:`~nmaccel.model.intops.residual_add`). Stages: the inputs (in the core ``b`` is a
    VBUF block RAM's read data, which fed the multipliers directly and was the ULX3S build's
    critical path); both products (a
    :class:`~nmaccel.hw.common.arith.PipelinedMultiplier` each); their sum; round half up +
    arithmetic shift + saturation (a :class:`~nmaccel.hw.common.arith.RoundShiftSaturate`).

:class:`GeluLanes` (``latency = GELU_LATENCY = 14``)
    I-BERT i-GELU (:func:`~nmaccel.model.intops.gelu_int`) per lane::

        u    = min(|x|, clip)
        poly = cp + sign(x)·(cp − (u − clip)²)
               (= (clip − u)² for x < 0, 2cp − (clip − u)² for x > 0)
        o    = saturate(round_shift(x·poly·mult, shift) + zero, act_bits)

    Bounds with V = ``vec_bits``: ``0 ≤ clip − u < 2**V`` (V bits unsigned), the square
    ``< 2**(2V)``; ``cp < 2**31`` so ``poly ∈ (−2**(2V), 2**32)`` (signed ``max(2V, 32) + 2``
    bits); ``x·poly·mult`` is computed as ``(x·mult)·poly`` (exact integers, so the order does
    not matter): ``x·mult`` runs beside the clip distance, the square and the polynomial, and
    the shared ``mult`` enters one multiplier per lane, not every partial product of the wide
    one. Every intermediate is kept at its full width (no truncation). For ``x = 0`` the
    product is 0 whatever ``poly`` is. Stages: clip distance (``clip ∓ x`` for both signs side
    by side, then one select and the clamp at 0); square; polynomial; ``(x·mult)·poly`` (the
    products pipelined multipliers); round, shift, zero point, saturate.

:class:`LayerNormUnit` (phase-1 ``latency = LAYERNORM_LATENCY = 27``)
    Integer LayerNorm (:func:`~nmaccel.model.intops.layernorm_int` with ``out_bits =
    vec_bits``) of ``lanes`` independent rows (the lanes are tokens), walking the ``d``
    features serially, one feature of all lanes per beat, in two passes over the same data:

    * phase 0 (``d`` beats, ``last`` on feature ``d − 1``): per lane ``S = Σx`` and
      ``Q = Σx²``; ``features`` is sampled with the last beat.
    * statistics (``i.ready`` low, :func:`~nmaccel.spec.vector_timing.layernorm_stats_cycles`
      cycles, all lanes in parallel): one cycle loads ``|S|`` and ``d`` into shift
      registers, then ``d·Q`` and ``S²`` by shift-add (one bit of ``|S|`` per cycle: these
      run once per block, so they take no hardware multipliers), then
      ``V = d·Q − S²`` (= ``Σc²/d`` exactly, since ``Σc² = d·(d·Q − S²)`` with
      ``c = d·x − S``), σ = max(1, isqrt(V)) by shift-subtract (one root bit per cycle, two
      bits of V shifted in: the remainder stays below 2·root, so each step subtracts
      ``vec_bits + 18`` bits, not 2·``vec_bits`` + 30),
      ``R = floor(2**ln_recip_frac / σ)`` by a restoring divider (one quotient bit per cycle;
      it shares the square root's remainder register and subtractor). The steps are driven
      by registered strobes. Per-beat multipliers per lane: ``x²`` (phase 0, registered and
      added the next cycle); ``d·x``, ``c·R``, ``n·(gamma·mult)``, ``y·mult8`` (phase 1);
      shared by the lanes: ``gamma·mult`` and ``beta·mult``.
    * phase 1 (the same ``d`` beats again, in order, with that feature's gamma and beta):
      ``c = d·x − S``; ``n = round_shift(c·R, ln_recip_frac − ln_frac)``;
      ``y = requant(n·gamma + beta, mult, shift, vec_bits)``, its product computed as
      ``n·(gamma·mult) + beta·mult`` (exact: each lane's ``n`` enters one multiplier, and the
      shared ``mult`` and ``gamma`` enter the per-feature products only);
      ``y8 = requant(y, mult8, shift8, act_bits)``; one output beat per phase-1 beat.

    Widths (V = ``vec_bits``, ``d ≤ 2**16 − 1`` = the 16-bit ``features`` port): ``S`` signed
    V + 16 bits (``|S| < 2**(V+15)``), ``Q < d·2**(2V−2)`` unsigned 2V + 14, ``d·Q`` and
    ``S²`` < 2**(2V+30),
    ``V = Σ_{i<j}(x_i − x_j)² ≤ (d/2)²(2**V − 1)² < 2**(2V+30)``, σ < 2**(V+15),
    ``R ≤ 2**K`` (K = ``ln_recip_frac``), ``|c| < d·2**V`` (signed V + 17), ``c·R`` at full
    width. The one narrowed value is ``n``, kept in ``ln_frac + 11`` signed bits, which is
    exact for every input obeying the protocol: with ``Σc = 0``, Cauchy–Schwarz gives
    ``c_i² ≤ (d−1)/d·Σc² = (d−1)·V``, and ``isqrt(V) > sqrt(V)/2`` for ``V ≥ 1``, so
    ``|c_i|/σ < 2·sqrt(d−1) < 2**9`` and ``|n| ≤ |c|·R/2**(K−F) + ½ < 2**(F+9) + 1``
    (``V = 0`` means all ``c = 0``). ``n·(gamma·mult) + beta·mult`` and the rest are full
    width. MiniLM-like inputs (``d = 384``, ``|x| ≤ 2**15``) are tested exact.

    Protocol: phase 1 must repeat phase 0's ``x`` exactly and ``features`` must equal the
    number of phase-0 beats (1..65535); otherwise the outputs are unspecified. The unit
    follows its own phase state (ACC → statistics → NORM → ACC); the ``phase`` bit of the
    payload is informative and not used for control. ``mult``/``shift``/``mult8``/``shift8``
    are sampled with each phase-1 beat and travel with it through the pipeline.

    Streams: ``i.ready`` is high in phase 0, low during the statistics, and in phase 1 equals
    ``advance = ~o.valid | o.ready`` (the whole phase-1 pipeline stalls when the output is
    stalled, so ``o``'s payload is stable while ``o.valid & ~o.ready``; ``o.valid`` is a
    register and never depends on ``o.ready``). Phase 0 of the next row block may start while
    the previous block's outputs are still draining; the reciprocal division of a block
    starts only once the previous block's last beat has passed the ``c·R`` multiplier's input
    (the reciprocal register is then free); ``Σx`` travels with each beat to the subtraction.
    One beat per cycle in both phases when ``o.ready`` is high.
"""

from __future__ import annotations

from typing import NamedTuple

from amaranth.hdl import Cat, EnableInserter, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.arith import PipelinedMultiplier, RoundShiftSaturate, delay_chain
from nmaccel.hw.sta.requant import SHIFT_BITS, RequantUnit
from nmaccel.spec.config import MUL_LATENCY, ROUND_SATURATE_LATENCY, StaConfig
from nmaccel.spec.vector_timing import (
    GELU_LATENCY,
    LAYERNORM_LATENCY,
    RESIDUAL_LATENCY,
    layernorm_div_cycles,
    layernorm_mul_cycles,
    layernorm_sqrt_cycles,
    layernorm_stats_cycles,
    layernorm_var_bits,
)

__all__ = [
    "GeluLanes",
    "LayerNormUnit",
    "ResidualAddLanes",
    "layernorm_input_layout",
    "layernorm_output_layout",
]

#: Width of the LayerNorm ``features`` port (d ≤ 2**16 − 1).
FEATURE_BITS = 16
#: Extra signed bits of the normalised value n over ``ln_frac`` (|n| < 2**(ln_frac + 9) + 1).
NORM_EXTRA_BITS = 11


def _check_args(config, lanes) -> None:
    StaConfig.require(config)
    if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, not {lanes!r}")


def _srange(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


# -- residual add ---------------------------------------------------------------------------

class ResidualAddLanes(wiring.Component):
    """``lanes`` parallel residual adders (module docstring).

    Ports
        ``a``, ``b``  In  ``ArrayLayout(signed(vec_bits), lanes)``
        ``valid``     In  1
        ``mult_a``, ``mult_b``  In ``unsigned(requant_mult_bits)``
        ``shift``     In  ``unsigned(6)``
        ``o``         Out ``ArrayLayout(signed(vec_bits), lanes)``
        ``o_valid``   Out 1

    Inputs (data and parameters) presented in cycle ``t`` give ``o`` in cycle ``t + latency``.
    """

    latency = RESIDUAL_LATENCY

    def __init__(self, config: StaConfig, lanes: int) -> None:
        _check_args(config, lanes)
        self.config = config
        self.lanes = lanes
        vec = data.ArrayLayout(signed(config.vec_bits), lanes)
        super().__init__({
            "a": In(vec),
            "b": In(vec),
            "valid": In(1),
            "mult_a": In(unsigned(config.requant_mult_bits)),
            "mult_b": In(unsigned(config.requant_mult_bits)),
            "shift": In(unsigned(SHIFT_BITS)),
            "o": Out(vec),
            "o_valid": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.config
        vb, mb = cfg.vec_bits, cfg.requant_mult_bits
        lo, hi = _srange(vb)

        # Stages: inputs (1); products (MUL_LATENCY); their sum (1); round/shift/saturate.
        t_sum = 1 + MUL_LATENCY + 1
        valid = delay_chain(m, self.valid, self.latency - 1, "valid", reset_less=False)
        shift = delay_chain(m, self.shift, t_sum, "shift")          # shift travels with its data
        m.d.sync += self.o_valid.eq(valid[self.latency - 1])
        a_r = Signal.like(self.a, name="a_r", reset_less=True)
        b_r = Signal.like(self.b, name="b_r", reset_less=True)
        ma_r = Signal.like(self.mult_a, name="mult_a_r", reset_less=True)
        mb_r = Signal.like(self.mult_b, name="mult_b_r", reset_less=True)
        m.d.sync += [a_r.eq(self.a), b_r.eq(self.b), ma_r.eq(self.mult_a), mb_r.eq(self.mult_b)]
        for lane in range(self.lanes):
            ma = m.submodules[f"mul_a{lane}"] = PipelinedMultiplier(signed(vb), unsigned(mb))
            mb_ = m.submodules[f"mul_b{lane}"] = PipelinedMultiplier(signed(vb), unsigned(mb))
            total = Signal(signed(len(ma.o) + 1), name=f"sum{lane}", reset_less=True)
            rss = m.submodules[f"rss{lane}"] = RoundShiftSaturate(total.shape(), vb)
            m.d.comb += [ma.a.eq(a_r[lane]), ma.b.eq(ma_r),
                         mb_.a.eq(b_r[lane]), mb_.b.eq(mb_r),
                         rss.value.eq(total), rss.shift.eq(shift[t_sum]),
                         self.o[lane].eq(rss.o)]
            m.d.sync += total.eq(ma.o + mb_.o)
        assert t_sum + rss.latency == self.latency, "pipeline depth differs from the cycle model"
        return m


# -- GELU -----------------------------------------------------------------------------------

class GeluLanes(wiring.Component):
    """``lanes`` parallel integer GELUs (module docstring).

    Ports
        ``x``       In  ``ArrayLayout(signed(vec_bits), lanes)``
        ``valid``   In  1
        ``clip``    In  ``unsigned(vec_bits)``
        ``cp``      In  ``unsigned(31)``
        ``mult``    In  ``unsigned(requant_mult_bits)``
        ``shift``   In  ``unsigned(6)``
        ``zero``    In  ``signed(act_bits)`` (output zero point)
        ``o``       Out ``ArrayLayout(signed(act_bits), lanes)``
        ``o_valid`` Out 1

    Inputs (data and parameters) presented in cycle ``t`` give ``o`` in cycle ``t + latency``.
    """

    latency = GELU_LATENCY
    CP_BITS = 31

    def __init__(self, config: StaConfig, lanes: int) -> None:
        _check_args(config, lanes)
        self.config = config
        self.lanes = lanes
        super().__init__({
            "x": In(data.ArrayLayout(signed(config.vec_bits), lanes)),
            "valid": In(1),
            "clip": In(unsigned(config.vec_bits)),
            "cp": In(unsigned(self.CP_BITS)),
            "mult": In(unsigned(config.requant_mult_bits)),
            "shift": In(unsigned(SHIFT_BITS)),
            "zero": In(signed(config.act_bits)),
            "o": Out(data.ArrayLayout(signed(config.act_bits), lanes)),
            "o_valid": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.config
        vb, mb = cfg.vec_bits, cfg.requant_mult_bits
        lo, hi = _srange(cfg.act_bits)
        sq_bits = 2 * vb
        poly_bits = max(sq_bits, self.CP_BITS + 1) + 2

        # Stage times (the cycle in which a value sits in its register, input = 0).
        t_dist = 1
        t_sq = t_dist + MUL_LATENCY
        t_poly = t_sq + 1
        t_xm = t_poly - MUL_LATENCY               # x·mult starts here, done with poly
        t_prod = t_poly + MUL_LATENCY
        assert t_prod + ROUND_SATURATE_LATENCY == self.latency, \
            "pipeline depth differs from the cycle model"
        # Parameters travel with the data: param[k] holds the values of stage k's data.
        valid = delay_chain(m, self.valid, self.latency - 1, "valid", reset_less=False)
        cp = delay_chain(m, self.cp, t_sq, "cp")
        mult = delay_chain(m, self.mult, t_xm, "mult")
        shift = delay_chain(m, self.shift, t_prod, "shift")
        zero = delay_chain(m, self.zero, t_prod, "zero")
        m.d.sync += self.o_valid.eq(valid[self.latency - 1])

        for lane in range(self.lanes):
            x = delay_chain(m, self.x[lane], t_sq, f"x{lane}")
            # 1: distance to the clip point, clip − min(|x|, clip) = max(clip − |x|, 0) ∈
            # [0, 2**vb): both signs' differences side by side, then one select and the clamp.
            near = Signal(signed(vb + 2), name=f"near{lane}")
            m.d.comb += near.eq(Mux(x[0] < 0, self.clip + x[0], self.clip - x[0]))
            dist = Signal(unsigned(vb), name=f"dist{lane}", reset_less=True)
            m.d.sync += dist.eq(Mux(near < 0, 0, near))
            # square.
            sq = m.submodules[f"sq{lane}"] = PipelinedMultiplier(unsigned(vb), unsigned(vb))
            m.d.comb += [sq.a.eq(dist), sq.b.eq(dist)]
            # polynomial (x = 0 makes the product 0 whichever branch is taken).
            poly = Signal(signed(poly_bits), name=f"poly{lane}", reset_less=True)
            m.d.sync += poly.eq(Mux(x[t_sq] < 0, sq.o, (cp[t_sq] << 1) - sq.o))
            # x · mult, beside the polynomial (mult enters one multiplier per lane).
            xm = m.submodules[f"xm{lane}"] = PipelinedMultiplier(signed(vb), unsigned(mb))
            m.d.comb += [xm.a.eq(x[t_xm]), xm.b.eq(mult[t_xm])]
            # (x · mult) · poly = x · poly · mult.
            g = m.submodules[f"g{lane}"] = PipelinedMultiplier(xm.o_shape, signed(poly_bits))
            m.d.comb += [g.a.eq(xm.o), g.b.eq(poly)]
            # round half up, shift, zero point, saturate.
            rss = m.submodules[f"rss{lane}"] = RoundShiftSaturate(
                g.o_shape, cfg.act_bits, zero_bits=cfg.act_bits)
            m.d.comb += [rss.value.eq(g.o), rss.shift.eq(shift[t_prod]),
                         rss.zero.eq(zero[t_prod]), self.o[lane].eq(rss.o)]
        return m


# -- LayerNorm ------------------------------------------------------------------------------

def layernorm_input_layout(config: StaConfig, lanes: int) -> data.StructLayout:
    """Payload of :class:`LayerNormUnit`'s input stream."""
    return data.StructLayout({
        "x": data.ArrayLayout(signed(config.vec_bits), lanes),
        "gamma": signed(config.ln_gamma_bits),
        "beta": signed(config.acc_bits),
        "phase": 1,
        "last": 1,
    })


def layernorm_output_layout(config: StaConfig, lanes: int) -> data.StructLayout:
    """Payload of :class:`LayerNormUnit`'s output stream."""
    return data.StructLayout({
        "y": data.ArrayLayout(signed(config.vec_bits), lanes),
        "y8": data.ArrayLayout(signed(config.act_bits), lanes),
        "last": 1,
    })


class LayerNormUnit(wiring.Component):
    """Two-pass integer LayerNorm of ``lanes`` rows in parallel (module docstring).

    Ports
        ``i``        In  ``stream.Signature(layernorm_input_layout(config, lanes))``
        ``features`` In  ``unsigned(16)`` (d, sampled with the last phase-0 beat)
        ``mult``, ``mult8``   In ``unsigned(requant_mult_bits)``
        ``shift``, ``shift8`` In ``unsigned(6)``  (sampled with each phase-1 beat)
        ``o``        Out ``stream.Signature(layernorm_output_layout(config, lanes))``

    Timing: ``latency`` (phase-1 beat accepted in cycle ``t`` → output valid in cycle
    ``t + latency``); ``stats_cycles`` with ``i.ready`` low between the phases.
    """

    latency = LAYERNORM_LATENCY

    def __init__(self, config: StaConfig, lanes: int) -> None:
        _check_args(config, lanes)
        self.config = config
        self.lanes = lanes
        self.var_bits = layernorm_var_bits(config)
        self.sqrt_cycles = layernorm_sqrt_cycles(config)
        self.div_cycles = layernorm_div_cycles(config)
        self.mul_cycles = layernorm_mul_cycles(config)
        self.stats_cycles = layernorm_stats_cycles(config)
        self.norm_bits = config.ln_frac + NORM_EXTRA_BITS
        super().__init__({
            "i": In(stream.Signature(layernorm_input_layout(config, lanes))),
            "features": In(unsigned(FEATURE_BITS)),
            "mult": In(unsigned(config.requant_mult_bits)),
            "mult8": In(unsigned(config.requant_mult_bits)),
            "shift": In(unsigned(SHIFT_BITS)),
            "shift8": In(unsigned(SHIFT_BITS)),
            "o": Out(stream.Signature(layernorm_output_layout(config, lanes))),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        control = self._control(m)
        sums, recips = self._statistics(m, control)
        self._normalize(m, control, sums, recips)
        return m

    def _control(self, m: Module) -> _LayerNormControl:
        """The phase state machine (ACC → LOAD → MUL → SUB → SQRT → DIV → NORM → ACC) and the
        strobes it gives the statistics and the phase-1 pipeline. The strobes that drive every
        lane's statistics registers are registers of their own, set on entering their state
        and cleared on leaving it (no state decode in front of their fan-out)."""
        NM, NS, ND = self.mul_cycles, self.sqrt_cycles, self.div_cycles
        pay = self.i.payload

        advance = Signal()                         # the phase-1 pipeline moves this cycle
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        accept_acc = Signal()                      # a phase-0 beat is taken
        accept_norm = Signal()                     # a phase-1 beat is taken
        clear = Signal()                           # after the last phase-1 beat: S, Q ← 0
        load = Signal()                            # LOAD: the shift-add operands are loaded
        mul_step = Signal()                        # MUL
        in_sub = Signal()                          # SUB
        sqrt_step = Signal()                       # SQRT
        in_div = Signal()                          # DIV
        div_first = Signal()                       # no quotient bit taken yet in DIV
        div_step = Signal()
        d = Signal(unsigned(FEATURE_BITS))         # features of the current row block
        v1 = Signal()                              # a beat still has to read R (stages 1..t_c)
        count = Signal(range(max(NM, NS, ND) + 1))
        d_sh = Signal(unsigned(NM))                # d, shifted left once per step (MSB used)
        m.d.comb += div_step.eq(in_div & ~v1)      # R is free once no old beat still needs it

        with m.FSM(name="ln_fsm"):
            with m.State("ACC"):
                m.d.comb += [self.i.ready.eq(1), accept_acc.eq(self.i.valid)]
                with m.If(self.i.valid & pay.last):
                    m.d.sync += [d.eq(self.features), count.eq(0), load.eq(1)]
                    m.next = "LOAD"
            with m.State("LOAD"):                  # S and Q are final: load the shift-adds
                m.d.sync += [d_sh.eq(d), load.eq(0), mul_step.eq(1)]
                m.next = "MUL"
            with m.State("MUL"):                   # d·Q and S², MSB first, one bit per cycle
                m.d.sync += d_sh.eq(d_sh << 1)
                m.d.sync += count.eq(count + 1)
                with m.If(count == NM - 1):
                    m.d.sync += [mul_step.eq(0), in_sub.eq(1)]
                    m.next = "SUB"
            with m.State("SUB"):                   # V = d·Q − S²
                m.d.sync += [count.eq(0), in_sub.eq(0), sqrt_step.eq(1)]
                m.next = "SQRT"
            with m.State("SQRT"):                  # one root bit per cycle
                m.d.sync += count.eq(count + 1)
                with m.If(count == NS - 1):
                    m.d.sync += [count.eq(0), sqrt_step.eq(0), in_div.eq(1), div_first.eq(1)]
                    m.next = "DIV"
            with m.State("DIV"):                   # one quotient bit per cycle
                with m.If(~v1):
                    m.d.sync += [count.eq(count + 1), div_first.eq(0)]
                    with m.If(count == ND - 1):
                        m.d.sync += [count.eq(0), in_div.eq(0)]
                        m.next = "NORM"
            with m.State("NORM"):
                m.d.comb += [self.i.ready.eq(advance), accept_norm.eq(self.i.valid & advance)]
                with m.If(accept_norm & pay.last):
                    m.next = "ACC"
        # S and Q are cleared the cycle after the last phase-1 beat is taken (that beat reads S
        # as it is taken), by a register: the taking depends on o.ready and o.valid, and the
        # path from the output's valid register through it to every lane's S and Q was
        # LayerNorm's critical path (8.0 ns out of context).
        m.d.sync += clear.eq(accept_norm & pay.last)

        return _LayerNormControl(advance=advance, accept_acc=accept_acc, accept_norm=accept_norm,
                                 clear=clear, load=load, mul_step=mul_step, in_sub=in_sub,
                                 sqrt_step=sqrt_step, in_div=in_div, div_step=div_step,
                                 div_first=div_first, d=d, d_sh=d_sh, v1=v1)

    def _statistics(self, m: Module, control: _LayerNormControl) -> tuple[list, list]:
        """Per lane ``S = Σx`` and ``Q = Σx²`` (phase 0), then ``V = d·Q − S²``, σ and the
        reciprocal ``R``; returns the lanes' ``S`` and ``R`` registers."""
        cfg = self.config
        L, vb, K = self.lanes, cfg.vec_bits, cfg.ln_recip_frac
        WV, NM, NS = self.var_bits, self.mul_cycles, self.sqrt_cycles
        pay = self.i.payload
        clear, accept_acc, load = control.clear, control.accept_acc, control.load
        mul_step, in_sub, sqrt_step = control.mul_step, control.in_sub, control.sqrt_step
        in_div, div_step, div_first = control.in_div, control.div_step, control.div_first
        d_sh = control.d_sh
        # x² of a phase-0 beat is registered (a multiplier's output) and added the next
        # cycle; Q is final when MUL's first step reads it (LOAD lies between).
        acc1 = Signal(name="acc1")
        m.d.sync += acc1.eq(accept_acc)
        sums, recips = [], []
        for lane in range(L):
            x = pay.x[lane]
            s = Signal(signed(vb + 16), name=f"s{lane}")          # |Σx| ≤ d·2**(vb-1)
            q = Signal(unsigned(2 * vb + 14), name=f"q{lane}")    # Σx² < d·2**(2vb-2)
            sq = Signal(unsigned(2 * vb - 1), name=f"sq{lane}", reset_less=True)  # x²
            m.d.sync += sq.eq(x * x)
            with m.If(clear):                      # ACC's first beat may be taken already
                m.d.sync += [s.eq(Mux(accept_acc, x, 0)), q.eq(0)]
            with m.Else():
                with m.If(accept_acc):
                    m.d.sync += s.eq(s + x)
                with m.If(acc1):
                    m.d.sync += q.eq(q + sq)
            # d·Q and S² by shift-add (Horner, MSB first): no multipliers for once-per-block work.
            dq = Signal(unsigned(WV), name=f"dq{lane}")           # d·Q < 2**WV
            ss = Signal(unsigned(WV), name=f"ss{lane}")           # S² < 2**WV
            abs_s = Signal(unsigned(NM), name=f"abs_s{lane}")     # |S| < 2**(vb+15)
            s_sh = Signal(unsigned(NM), name=f"s_sh{lane}")       # |S| shifted left per step
            abs_now = Signal(unsigned(NM), name=f"abs_now{lane}")
            m.d.comb += abs_now.eq(Mux(s < 0, -s, s))
            with m.If(load):
                m.d.sync += [abs_s.eq(abs_now), s_sh.eq(abs_now), dq.eq(0), ss.eq(0)]
            with m.Elif(mul_step):
                m.d.sync += [s_sh.eq(s_sh << 1),
                             dq.eq((dq << 1) + Mux(d_sh[NM - 1], q, 0)),
                             ss.eq((ss << 1) + Mux(s_sh[NM - 1], abs_s, 0))]
            # σ = max(1, isqrt(V)) two radicand bits per step (V shifts out of vsh, MSB first):
            # the remainder stays below 2·root, so the step compares NS + 3 bits, not WV.
            # R = floor(2**K / σ) by restoring division, one quotient bit per step. Both share
            # the remainder register and one subtractor.
            vsh = Signal(unsigned(WV), name=f"vsh{lane}")
            rem = Signal(unsigned(NS + 1), name=f"rem{lane}")     # < 2·root + 1, or < σ
            root = Signal(unsigned(NS), name=f"root{lane}")
            nz = Signal(name=f"nz{lane}")                         # root > 0
            recip = Signal(unsigned(K + 1), name=f"recip{lane}")  # R ≤ 2**K
            sigma = Signal(unsigned(NS), name=f"sigma{lane}")     # max(1, root)
            m.d.comb += sigma.eq(Cat(root[0] | ~nz, root[1:]))
            # minuend and subtrahend: SQRT 4·rem + next two bits of V and 4·root + 1; DIV
            # 2·rem + (first step: the dividend's leading 1, remainder still 0) and σ.
            part = Signal(unsigned(NS + 1), name=f"part{lane}")
            m.d.comb += part.eq(Cat(div_first, Mux(div_first, 0, rem[:NS])))
            a = Signal(unsigned(NS + 3), name=f"a{lane}")
            b = Signal(unsigned(NS + 2), name=f"b{lane}")
            m.d.comb += [a.eq(Mux(in_div, part, Cat(vsh[WV - 2:], rem))),
                         b.eq(Mux(in_div, sigma, Cat(1, 0, root)))]
            diff = Signal(signed(NS + 4), name=f"diff{lane}")
            m.d.comb += diff.eq(a - b)
            ge = Signal(name=f"ge{lane}")
            m.d.comb += ge.eq(diff >= 0)
            with m.If(in_sub):
                m.d.sync += [vsh.eq(dq - ss), rem.eq(0), root.eq(0), nz.eq(0)]
            with m.If(sqrt_step | div_step):
                m.d.sync += rem.eq(Mux(ge, diff, a))
            with m.If(sqrt_step):
                m.d.sync += [vsh.eq(vsh << 2), root.eq(Cat(ge, root)), nz.eq(nz | ge)]
            with m.If(div_step):
                m.d.sync += recip.eq(Cat(ge, recip))
            sums.append(s)
            recips.append(recip)
        return sums, recips

    def _normalize(self, m: Module, control: _LayerNormControl, sums, recips) -> None:
        """The phase-1 pipeline: ``c = d·x − S``, ``n``, ``y·mult = n·(gamma·mult) +
        beta·mult``, ``y``, ``y8`` (advances together; stalls when the output is stalled)."""
        cfg = self.config
        L = self.lanes
        vb, mb, gb, ab = cfg.vec_bits, cfg.requant_mult_bits, cfg.ln_gamma_bits, cfg.acc_bits
        K, F = cfg.ln_recip_frac, cfg.ln_frac
        pay = self.i.payload
        lo_y, hi_y = _srange(vb)
        advance, accept_norm, d, v1 = control.advance, control.accept_norm, control.d, control.v1
        # Stage times: a beat accepted in cycle t sits in stage k's registers in cycle t + k.
        t_dx = MUL_LATENCY                        # d·x
        t_c = t_dx + 1                            # c = d·x − Σx
        t_cr = t_c + MUL_LATENCY                  # c·R
        t_n = t_cr + 1                            # n = round_shift(c·R, K − F)
        t_ng = t_n + MUL_LATENCY                  # n·(gamma·mult), beta·mult beside it
        t_y = t_ng + 1                            # y·mult = their sum
        t_out = t_y + ROUND_SATURATE_LATENCY      # 16-bit y
        assert t_out + RequantUnit.latency == self.latency, \
            "pipeline depth differs from the cycle model"

        def stage_regs(name, shape, n, reset_less=True):
            return [Signal(shape, name=f"{name}{k}", reset_less=reset_less and k > 0)
                    for k in range(n + 1)]

        # gamma·mult is ready for n (stage t_n), beta·mult for the sum (stage t_y).
        t_gm, t_bm = t_n - MUL_LATENCY, t_ng - MUL_LATENCY
        valid = stage_regs("v", 1, t_out, reset_less=False)
        last = stage_regs("last", 1, self.latency, reset_less=False)
        gamma = stage_regs("gamma", signed(gb), t_gm)
        beta = stage_regs("beta", signed(ab), t_bm)
        mult = stage_regs("mult", unsigned(mb), max(t_gm, t_bm))
        shift = stage_regs("shift", unsigned(SHIFT_BITS), t_y)
        mult8 = stage_regs("mult8_", unsigned(mb), t_out)
        shift8 = stage_regs("shift8_", unsigned(SHIFT_BITS), t_out)
        m.d.comb += [valid[0].eq(accept_norm), last[0].eq(pay.last), gamma[0].eq(pay.gamma),
                     beta[0].eq(pay.beta), mult[0].eq(self.mult), shift[0].eq(self.shift),
                     mult8[0].eq(self.mult8), shift8[0].eq(self.shift8)]
        # R is read at the c·R multiplier's input (stage t_c): the next block's reciprocal
        # division waits until no beat is in stages 1..t_c. v1 is that condition, registered:
        # next cycle's stages 1..t_c hold what stages 0..t_c − 1 hold now if the pipeline
        # advances, else what they hold now (the OR in front of the divider's step, which
        # fans out to every lane, was LayerNorm's critical path).
        m.d.sync += v1.eq(Mux(advance, Cat(*valid[0:t_c]).any(), Cat(*valid[1:t_c + 1]).any()))

        # The int8 copy reuses RequantUnit with an accumulator port exactly as wide as y
        # (no wider than the multiplier needs; acc_bits ≥ act_bits + weight_bits is kept).
        rq_cfg = cfg.replace(acc_bits=max(vb, cfg.act_bits + cfg.weight_bits))
        half = 1 << (K - F - 1)
        for regs in (valid, last, gamma, beta, mult, shift, mult8, shift8):
            with m.If(advance):
                m.d.sync += [regs[k].eq(regs[k - 1]) for k in range(1, len(regs))]

        def stalled(name, unit):
            m.submodules[name] = EnableInserter(advance)(unit)
            if "ce" in unit.signature.members:    # DSP registers: EnableInserter misses them
                m.d.comb += unit.ce.eq(advance)
            return unit

        # (n·gamma + beta)·mult = n·(gamma·mult) + beta·mult, exactly: the per-feature
        # products are shared by the lanes, and each lane's n enters one product, not two.
        gm = stalled("gm", PipelinedMultiplier(signed(gb), unsigned(mb)))
        bm = stalled("bm", PipelinedMultiplier(signed(ab), unsigned(mb)))
        m.d.comb += [gm.a.eq(gamma[t_gm]), gm.b.eq(mult[t_gm]),
                     bm.a.eq(beta[t_bm]), bm.b.eq(mult[t_bm])]
        for lane in range(L):
            dx = stalled(f"dx{lane}", PipelinedMultiplier(unsigned(FEATURE_BITS), signed(vb)))
            s_k = stage_regs(f"s{lane}_", signed(vb + 16), t_dx)   # Σx travels with the beat
            c = Signal(signed(vb + 17), name=f"c{lane}", reset_less=True)   # |c| < d·2**vb
            cr = stalled(f"cr{lane}", PipelinedMultiplier(c.shape(), unsigned(K + 1)))
            n = Signal(signed(self.norm_bits), name=f"n{lane}", reset_less=True)  # proven bound
            ng = stalled(f"ng{lane}", PipelinedMultiplier(n.shape(), gm.o_shape))
            ym = Signal(signed(max(len(ng.o), len(bm.o)) + 1), name=f"ym{lane}",
                        reset_less=True)                           # y·mult
            rss = stalled(f"rss{lane}", RoundShiftSaturate(ym.shape(), vb, lo=lo_y, hi=hi_y))
            y16 = stage_regs(f"y16_{lane}_", signed(vb), RequantUnit.latency)
            m.d.comb += [
                dx.a.eq(d), dx.b.eq(pay.x[lane]), s_k[0].eq(sums[lane]),
                cr.a.eq(c), cr.b.eq(recips[lane]),
                ng.a.eq(n), ng.b.eq(gm.o),
                rss.value.eq(ym), rss.shift.eq(shift[t_y]),
                y16[0].eq(rss.o),
            ]
            with m.If(advance):
                m.d.sync += [s_k[k].eq(s_k[k - 1]) for k in range(1, len(s_k))]
                m.d.sync += [y16[k].eq(y16[k - 1]) for k in range(1, len(y16))]
                m.d.sync += [
                    c.eq(dx.o - s_k[t_dx]),
                    n.eq((cr.o + half) >> (K - F)),
                    ym.eq(ng.o + bm.o),
                ]
            rq = stalled(f"rq8_{lane}", RequantUnit(rq_cfg, out_bits=cfg.act_bits))
            m.d.comb += [
                rq.acc.eq(rss.o), rq.mult.eq(mult8[t_out]), rq.shift.eq(shift8[t_out]),
                rq.valid.eq(valid[t_out]),
                self.o.payload.y[lane].eq(y16[-1]),
                self.o.payload.y8[lane].eq(rq.o),
            ]
            if lane == 0:
                m.d.comb += self.o.valid.eq(rq.o_valid)
        m.d.comb += self.o.payload.last.eq(last[self.latency])


class _LayerNormControl(NamedTuple):
    """Control signals of :class:`LayerNormUnit` (names of its ``_control``)."""
    advance: Signal         # the phase-1 pipeline moves this cycle
    accept_acc: Signal      # a phase-0 beat is taken
    accept_norm: Signal     # a phase-1 beat is taken
    clear: Signal           # the cycle after the last phase-1 beat: S, Q ← 0
    load: Signal            # the shift-add operands are loaded (LOAD)
    mul_step: Signal        # one shift-add step of d·Q and S² (MUL)
    in_sub: Signal          # V = d·Q − S² (SUB)
    sqrt_step: Signal       # one square-root bit (SQRT)
    in_div: Signal          # the reciprocal's state (DIV)
    div_step: Signal        # one reciprocal bit
    div_first: Signal       # no reciprocal bit taken yet
    d: Signal               # features of the current row block
    d_sh: Signal            # d, shifted left once per step (MSB used)
    v1: Signal              # a beat still has to read R (driven by the phase-1 pipeline)
