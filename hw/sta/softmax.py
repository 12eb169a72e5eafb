"""Streaming integer softmax unit, bit-exact with :func:`nmaccel.model.softmax.softmax_int`.

Formats (see :mod:`nmaccel.model.softmax`): inputs are signed ``B = softmax_in_bits``
base-2 log values with ``F = softmax_in_frac`` fractional bits; outputs are unsigned
``softmax_out_bits`` probabilities with scale ``1/omax`` (``omax = 2**softmax_out_bits - 1``).

Ports
    ``i``        In stream of ``{"data": P × signed(B), "count": unsigned(clog2(P+1)),
                 "last": 1}``: one lane group of a row per beat, lanes ``0..count-1``
                 valid (the others are ignored), ``last`` on the row's final beat.
    ``o``        Out stream of ``{"data": P × unsigned(out_bits), "count", "last"}``: the
                 row's probabilities with the same beat structure (lanes >= count are 0),
                 rows in input order.
    ``busy``     Out: an accepted beat has not been emitted yet.
    ``overflow`` Out, sticky: a row had more than ``max_seq`` elements (or more than
                 ``ceil(max_seq / P)`` beats); elements past that were dropped and the row
                 was finished at its ``last`` beat with what was stored (the output row is
                 then shorter: its ``last`` is on the last stored beat). ``clear`` (In)
                 clears it; an overflow in the same cycle sets it again.
                 Beats with ``count == 0`` store nothing (a row made of them gives no output)
                 and ``count > P`` is read as ``P``.

Micro-architecture
    Pass 1 (on the input stream, never stalls, one beat per cycle): per beat the chunk's
    integer max ``M_c = ceil(max z / 2**F)`` (the max of the lanes' ceilings), then the
    row's running max ``M`` (a 1-cycle loop on ``B - F + 1`` bits), then every lane's term
    ``T[r_i]·2**(G - q_i)`` relative to that running max (``δ_i = M·2**F - z_i``; one table
    ROM per lane) and their sum ``Y`` (a tree, one adder level a stage). The exact running
    sum is split ``k = SOFTMAX_SPLIT`` ways (:func:`nmaccel.model.softmax.softmax_row_split`
    is the rule): the beat of cycle ``c`` goes to partial sum ``c mod k``, which is held
    relative to the running max of its last update, so its update
    ``P_c = (P_{c-k} >> (M_c - M_{c-k})) + Y_c`` is a loop of ``k`` registers: ``k - 1``
    stages of the barrel shift (the amount comes from a register, computed from the
    running-max history) and one 88-bit add. A partial whose row has ended (a ``last`` beat
    in the ``k`` cycles since its update) is shifted instead to that row's final max and
    leaves the loop (the loop restarts it with the cycle's beat), so within ``k - 1`` cycles
    of a row's last beat every partial of the row is relative to its final max; ``k - 1``
    adds merge them (exact, as in :func:`~nmaccel.model.softmax.softmax_merge`). Every
    stored beat is also written into a circular beat buffer.
    The row's ``(M, S >> G)`` enters a pipelined restoring divider (one quotient bit per
    stage, ``Q`` stages) that writes ``R = floor(omax·2**K / S_r)`` into a FIFO. Pass 2
    re-reads the row from the buffer one beat per cycle and computes
    ``p = min(omax, ((T[r] >> q)·R + 2**(K-1)) >> K)``; the product is a tree over the
    radix-4 digits of ``e = T[r] >> q`` (each digit selects 0, R, 2R or 3R), three adder
    levels, in LUTs whatever the synthesis options. Back-pressure on ``o`` stalls pass 2
    one cycle late (a skid register behind ``o`` takes the beat of that cycle, so pass 2's
    clock enable is a register); the buffer then fills and ``i.ready`` (also a register)
    drops.

Timing (one source of truth: :mod:`nmaccel.spec.softmax_timing`)
    ``latency = softmax_latency(cfg) = softmax_pass1_stages(cfg) + Q + 10`` cycles from
    accepting a row's last beat to transferring its first output beat,
    ``Q = out_bits + K - E + 1``, pass 1 ``5 + 2·L + k`` stages after the registered beat
    with ``L = clog2(P)`` (50 cycles for ``ulx3s_board``, P = 8; 48 for ``ulx3s_lite``,
    P = 4).
    Throughput one beat per cycle on both sides for any mix of row lengths (buffer of
    ``ceil(max_seq/P) + softmax_issue_delay(cfg)`` beats);
    :func:`~nmaccel.spec.softmax_timing.softmax_cycles` gives the exact cycles of a batch of
    rows.
"""

from __future__ import annotations

from typing import NamedTuple

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from nmaccel.spec.config import StaConfig, clog2
from nmaccel.spec.softmax_format import exp2_table
from nmaccel.spec.softmax_timing import (
    SOFTMAX_FIFO_STAGES,
    SOFTMAX_PASS1_FIXED_STAGES,
    SOFTMAX_PASS2_STAGES,
    SOFTMAX_SPLIT,
    softmax_buffer_beats,
    softmax_cycles,
    softmax_lane_levels,
    softmax_latency,
    softmax_max_beats,
    softmax_pass1_stages,
    softmax_quotient_bits,
)

__all__ = ["StreamingSoftmax", "softmax_in_layout", "softmax_out_layout"]

#: Adder levels of pass 2's product tree, one a stage (the last stage sums what is left:
#: exactly one level for ``E + 1 <= 16``, i.e. every preset).
_PRODUCT_STAGES = 3


def softmax_in_layout(cfg: StaConfig) -> data.StructLayout:
    """Payload of the input stream (``data`` lanes, ``count``, ``last``)."""
    p = cfg.softmax_lanes
    return data.StructLayout({"data": data.ArrayLayout(signed(cfg.softmax_in_bits), p),
                              "count": unsigned(clog2(p + 1)), "last": 1})


def softmax_out_layout(cfg: StaConfig) -> data.StructLayout:
    """Payload of the output stream (``data`` lanes, ``count``, ``last``)."""
    p = cfg.softmax_lanes
    return data.StructLayout({"data": data.ArrayLayout(unsigned(cfg.softmax_out_bits), p),
                              "count": unsigned(clog2(p + 1)), "last": 1})


def _max_level(values):
    nxt = [Mux(a > b, a, b) for a, b in zip(values[0::2], values[1::2])]
    if len(values) % 2:
        nxt.append(values[-1])
    return nxt


def _sum_level(values):
    nxt = [a + b for a, b in zip(values[0::2], values[1::2])]
    if len(values) % 2:
        nxt.append(values[-1])
    return nxt


def _delay(m: Module, value, n: int, name: str, *, ce=None, reset_less: bool = False):
    """``value`` delayed by ``n`` registers (``n = 0``: ``value`` itself); with ``ce`` the
    registers load only while ``ce`` is high."""
    for j in range(n):
        r = Signal.like(value, name=f"{name}_d{j + 1}", reset_less=reset_less)
        if ce is None:
            m.d.sync += r.eq(value)
        else:
            with m.If(ce):
                m.d.sync += r.eq(value)
        value = r
    return value


def _split_bits(width: int, parts: int) -> list[tuple[int, int]]:
    """``(offset, width)`` of ``parts`` contiguous groups covering ``width`` bits, the most
    significant group first (the first shift stage takes the coarse part of the amount)."""
    sizes = [width // parts + (1 if j < width % parts else 0) for j in range(parts)]
    out, top = [], width
    for size in sizes:
        top -= size
        out.append((top, size))
    return out


class StreamingSoftmax(wiring.Component):
    """P-lane streaming integer softmax (see the module docstring).

    Parameters
        ``config``  a :class:`StaConfig` (``softmax_*`` fields and ``max_seq``)

    Attributes
        ``latency``        cycles from a row's last input beat to its first output beat
        ``buffer_beats``   depth of the beat buffer and of the reciprocal FIFO
        ``quotient_bits``  width of the per-row reciprocal (= divider stages)
        ``get_exp_cycles(row_lengths)``  predicted cycles (FINN style)
    """

    def __init__(self, config: StaConfig) -> None:
        StaConfig.require(config)
        cfg = self.config = config
        self.latency = softmax_latency(cfg)
        self.buffer_beats = softmax_buffer_beats(cfg)
        self.quotient_bits = softmax_quotient_bits(cfg)
        self.max_beats = softmax_max_beats(cfg)
        super().__init__({
            "i": In(stream.Signature(softmax_in_layout(cfg))),
            "o": Out(stream.Signature(softmax_out_layout(cfg))),
            "busy": Out(1),
            "overflow": Out(1),
            "clear": In(1),
        })

    def get_exp_cycles(self, row_lengths) -> int:
        """Cycles for rows of these lengths, input always valid and output always ready
        (:func:`~nmaccel.spec.softmax_timing.softmax_cycles`)."""
        return softmax_cycles(self.config, row_lengths)

    def _formats(self) -> _Formats:
        cfg = self.config
        P, B, F = cfg.softmax_lanes, cfg.softmax_in_bits, cfg.softmax_in_frac
        SB, G = cfg.softmax_sum_bits, cfg.softmax_max_shift
        return _Formats(
            P=P, B=B, F=F, E=cfg.softmax_exp_bits, K=cfg.softmax_recip_frac,
            O=cfg.softmax_out_bits, G=G, SB=SB,
            DB=SB - G,                          # bits of S_r = S >> G (the divisor)
            QB=self.quotient_bits,
            MB=B - F + 1,                       # signed integer max: M in [-G/2, G/2]
            QW=B - F + 1,                       # q = δ >> F: 0..G for valid lanes
            CB=clog2(P + 1),
            NB=clog2(self.max_beats + 1),       # beats of a stored row
            C=self.buffer_beats,
        )

    def _input_stage(self, m: Module, buf_w, room_ok, wp):
        """Accepts a beat while the buffer has room (``room_ok``, a register), stores its
        lanes (at most ``max_seq`` elements per row); returns ``(accept, store, st_cnt,
        nb)``, ``nb`` the row's stored beats including this one."""
        cfg, f = self.config, self._formats()
        P, CB, C = f.P, f.CB, f.C
        accept = Signal()
        m.d.comb += [
            self.i.ready.eq(room_ok),
            accept.eq(self.i.valid & self.i.ready),
        ]
        # room: elements the current row may still store (max_seq minus those stored, 0 once
        # it has stored max_beats beats); a register, so that the overflow clamp below is
        # one compare deep.
        room = Signal(range(cfg.max_seq + 1), init=cfg.max_seq)
        n_beats = Signal(range(self.max_beats + 1))   # beats stored in the current row
        cnt_in = Signal(CB)
        m.d.comb += cnt_in.eq(Mux(self.i.payload.count > P, P, self.i.payload.count))
        over = Signal()                               # the beat has more lanes than room
        m.d.comb += over.eq(cnt_in > room)
        st_cnt = Signal(CB)                           # lanes stored of this beat
        m.d.comb += st_cnt.eq(Mux(over, room, cnt_in))
        store = Signal()
        m.d.comb += store.eq((cnt_in != 0) & (room != 0))
        nb = Signal(f.NB)
        m.d.comb += nb.eq(n_beats + store)
        full = Signal()                               # this beat is the row's last storable
        m.d.comb += full.eq(store & (n_beats == self.max_beats - 1))

        with m.If(accept):
            with m.If(self.i.payload.last):
                m.d.sync += [room.eq(cfg.max_seq), n_beats.eq(0)]
            with m.Else():
                m.d.sync += [room.eq(Mux(over | full, 0, room - cnt_in)), n_beats.eq(nb)]
        set_ovf = Signal()
        m.d.comb += set_ovf.eq(accept & over)
        m.d.sync += self.overflow.eq((self.overflow & ~self.clear) | set_ovf)

        m.d.comb += [
            buf_w.addr.eq(wp),
            buf_w.data.eq(Cat(self.i.payload.data.as_value(), st_cnt)),
            buf_w.en.eq(accept & store),
        ]
        with m.If(accept & store):
            m.d.sync += wp.eq(Mux(wp == C - 1, 0, wp + 1))
        return accept, store, st_cnt, nb

    def _pass1_max(self, m: Module, accept, store, st_cnt, nb):
        """Pass 1 up to the running max (stage ``3 + L`` from the accepting edge); returns
        that stage's ``(z, mask, mrun, end, fin, nb)``: the beat's lanes and lane mask, the
        row's running max including the beat (held through idle cycles and beats that store
        nothing, until the next row's first stored beat), ``end``: an accepted ``last`` beat,
        ``fin``: one that finishes a row with stored beats, and the row's stored beats."""
        f = self._formats()
        P, B, F, MB = f.P, f.B, f.F, f.MB
        zmin = -(1 << (B - 1))
        # s1: registered beat.
        s1_valid, s1_store, s1_last = Signal(), Signal(), Signal()
        s1_cnt = Signal(f.CB)                       # lanes stored (0: no beat stored)
        s1_nb = Signal(f.NB)
        s1_z = [Signal(signed(B), name=f"s1_z{k}") for k in range(P)]
        m.d.sync += [s1_valid.eq(accept), s1_store.eq(store), s1_last.eq(self.i.payload.last),
                     s1_cnt.eq(Mux(accept, st_cnt, 0)), s1_nb.eq(nb)]
        m.d.sync += [s1_z[k].eq(self.i.payload.data[k]) for k in range(P)]

        # s1 -> s2: per valid lane ceil(z / 2**F) (the lowest value for the others).
        s2_valid, s2_store, s2_last = Signal(), Signal(), Signal()
        s2_mask = Signal(P)
        s2_c = [Signal(signed(MB), name=f"s2_c{k}") for k in range(P)]
        s1_mask = Cat(*[s1_cnt > k for k in range(P)])
        cmin = zmin >> F                            # = ceil(zmin / 2**F): zmin is a multiple
        m.d.sync += [s2_valid.eq(s1_valid), s2_store.eq(s1_store), s2_last.eq(s1_last),
                     s2_mask.eq(s1_mask)]
        m.d.sync += [s2_c[k].eq(Mux(s1_mask[k], (s1_z[k] + ((1 << F) - 1)) >> F, cmin))
                     for k in range(P)]

        # s2 -> s(2 + L): chunk max M_c = max ceil(z / 2**F) = ceil(max z / 2**F), one tree
        # level a stage.
        nmax = softmax_lane_levels(self.config)
        level = s2_c
        for j in range(nmax):
            level = _max_level(level)
            regs = [Signal(signed(MB), name=f"mx{j}_{n}") for n in range(len(level))]
            m.d.sync += [r.eq(v) for r, v in zip(regs, level)]
            level = regs
        assert len(level) == 1
        mc = level[0]
        v_in = _delay(m, s2_valid, nmax, "p1v")
        st_in = _delay(m, s2_store, nmax, "p1st")
        last_in = _delay(m, s2_last, nmax, "p1last")

        # running max of the row (the one-cycle loop of pass 1 on MB bits).
        has = Signal()                              # the row has stored beats before this one
        mrun = Signal(signed(MB))
        with m.If(v_in):
            with m.If(st_in):
                m.d.sync += [mrun.eq(Mux(has & (mrun > mc), mrun, mc)), has.eq(~last_in)]
            with m.Elif(last_in):
                m.d.sync += has.eq(0)
        end, fin = Signal(), Signal()
        m.d.sync += [end.eq(v_in & last_in), fin.eq(v_in & last_in & (has | st_in))]
        z = [_delay(m, s1_z[k], 2 + nmax, f"p1z{k}", reset_less=True) for k in range(P)]
        mask = _delay(m, s2_mask, 1 + nmax, "p1mask")
        nbr = _delay(m, s1_nb, 2 + nmax, "p1nb")
        return z, mask, mrun, end, fin, nbr

    def _pass1_terms(self, m: Module, rd1, z, mask, mrun):
        """Pass 1 from the running max to the beat's term sum ``Y`` (every term relative
        to the running max): table read, table word register, shifted terms, the sum tree;
        returns ``Y`` (``softmax_lane_levels`` stages after the terms)."""
        f = self._formats()
        P, F, E, G, QW = f.P, f.F, f.E, f.G, f.QW
        # table read: δ = M·2**F - z (>= 0 for the stored lanes).
        t_q = [Signal(QW, name=f"t_q{k}") for k in range(P)]
        for k in range(P):
            delta = Signal(signed(f.B + 2), name=f"p1_delta{k}")
            m.d.comb += [delta.eq((mrun << F) - z[k]), rd1[k].addr.eq(delta[:F])]
            m.d.sync += t_q[k].eq(delta[F:F + QW])
        t_mask = _delay(m, mask, 1, "t_mask")
        # table word registered (block RAM output).
        u_t = [_delay(m, rd1[k].data, 1, f"u_t{k}", reset_less=True) for k in range(P)]
        u_q = [_delay(m, t_q[k], 1, f"u_q{k}", reset_less=True) for k in range(P)]
        u_mask = _delay(m, t_mask, 1, "u_mask")
        # shifted terms T[r]·2**(G - q) (exact: q <= G), masked.
        level = [Signal(E + 1 + G, name=f"term{k}", reset_less=True) for k in range(P)]
        m.d.sync += [level[k].eq(Mux(u_mask[k], (u_t[k] << G) >> u_q[k], 0)) for k in range(P)]
        # sum tree, one adder level a stage.
        for j in range(softmax_lane_levels(self.config)):
            nxt = _sum_level(level)
            regs = [Signal(f.SB, name=f"ys{j}_{n}", reset_less=True) for n in range(len(nxt))]
            m.d.sync += [r.eq(v) for r, v in zip(regs, nxt)]
            level = regs
        assert len(level) == 1
        return level[0]

    def _pass1_split_sum(self, m: Module, y, mrun, end, fin, nbr):
        """The ``k``-way split running sum and the end-of-row merge; returns the divider's
        entry ``(valid, S_r, M, beats)`` (registered: ``softmax_pass1_stages`` after the
        accepting edge of the row's last beat).

        Every cycle ``c`` (beat or not) has a pass: the partial sum last updated ``k`` cycles
        before, ``P_{c-k}``, relative to the running max ``M_{c-k}`` of its own row, is
        shifted (``k - 1`` stages) to ``M_c`` if no row ended since (``same``), else to the
        final max of the row it belongs to (the first ``end`` at or after ``c - k``); the
        add stage then gives ``P_c = (same ? shifted : 0) + Y_c``. The shift amounts and
        ``same`` are computed from the running-max history at the running-max stage. For a
        row ending in cycle ``t``: ``S = P_t + Σ_{i<k} [no end in t+i-k..t-1]·E_{t+i}``, with
        ``E_{t+i}`` the shifted (leaving) partial of pass ``t + i``."""
        f = self._formats()
        G, SB, MB = f.G, f.SB, f.MB
        k = SOFTMAX_SPLIT
        assert k >= 2
        SHB = f.MB                                  # shift amounts 0..G
        # History at the running-max stage (cycle c): M_{c-j}, end_{c-j} for j = 1..k.
        hm = [mrun] + [Signal(signed(MB), name=f"hm{j}") for j in range(1, k + 1)]
        he = [end] + [Signal(name=f"he{j}") for j in range(1, k + 1)]
        for j in range(1, k + 1):
            m.d.sync += [hm[j].eq(hm[j - 1]), he[j].eq(he[j - 1])]
        same = ~Cat(*he[1:]).any()
        m_end = hm[1]                               # the first end at or after c - k
        for j in range(2, k + 1):
            m_end = Mux(he[j], hm[j], m_end)
        target = Mux(same, mrun, m_end)
        c_sh = Signal(SHB)
        c_same = Signal()
        c_merge = [Signal(name=f"c_merge{i}") for i in range(k)]   # [0] unused
        diff = Signal(signed(MB + 1))
        m.d.comb += diff.eq(target - hm[k])
        m.d.sync += [c_sh.eq(diff[:SHB]), c_same.eq(same)]
        # row ending at c: the partial leaving at c + i is the row's iff no end in
        # c+i-k .. c-1.
        m.d.sync += [c_merge[i].eq(~Cat(*he[1:k - i + 1]).any()) for i in range(1, k)]
        c_fin = Signal()
        c_m = Signal(signed(MB))
        c_nb = Signal(f.NB)
        m.d.sync += [c_fin.eq(fin), c_m.eq(mrun), c_nb.eq(nbr)]
        # The control registers above sit at the table-read stage (running max + 1); Y sits
        # at running max + 3 + lane levels.
        ctl = 1
        sy = 3 + softmax_lane_levels(self.config)

        # The loop: k - 1 shift stages, then the add.
        groups = _split_bits(SHB, k - 1)
        reg_p = Signal(SB)
        val = reg_p
        for j, (off, width) in enumerate(groups):
            stage = sy - (k - 1) + j                # the stage holding this shift's control
            assert stage >= ctl
            amount = _delay(m, c_sh, stage - ctl, f"ring_sh{j}")[off:off + width]
            r = Signal(SB, name=f"ring{j}", reset_less=True)
            m.d.sync += r.eq(val >> (amount << off) if off else val >> amount)
            val = r
        reg_b = val                                 # pass c's shifted partial, beside Y_c
        same_y = _delay(m, c_same, sy - ctl, "ring_same")
        m.d.sync += reg_p.eq(Mux(same_y, reg_b, 0) + y)

        # Merge: k - 1 adds, the last one into the divider.
        acc = reg_p
        for i in range(1, k):
            sel = _delay(m, c_merge[i], sy + i - ctl, f"merge{i}")
            total = acc + Mux(sel, reg_b, 0)
            if i < k - 1:
                r = Signal(SB, name=f"merge_acc{i}", reset_less=True)
                m.d.sync += r.eq(total)
                acc = r
        # the divider's entry register (running max + 3 + lane levels + k)
        n = sy + k - 1 - ctl
        dv_valid = Signal()
        dv_d = Signal(f.DB)
        m.d.sync += [dv_valid.eq(_delay(m, c_fin, n, "fin")), dv_d.eq(total[G:])]
        dv_m = Signal(signed(MB))
        dv_nb = Signal(f.NB)
        m.d.sync += [dv_m.eq(_delay(m, c_m, n, "finm")), dv_nb.eq(_delay(m, c_nb, n, "finnb"))]
        return dv_valid, dv_d, dv_m, dv_nb

    def _divider(self, m: Module, rfifo, valid, d, m_int, nb) -> None:
        """Restoring division of the constant omax·2**K by ``d = S_r`` (registered stage 0),
        quotient bit QB-1-j in stage j, into the reciprocal FIFO with the row's ``M`` and
        beats."""
        f = self._formats()
        DB, QB, MB, NB = f.DB, f.QB, f.MB, f.NB
        numer = ((1 << f.O) - 1) << f.K
        dv_valid = [valid] + [Signal(name=f"dv{j}_valid") for j in range(1, QB)]
        dv_d = [d] + [Signal(DB, name=f"dv{j}_d") for j in range(1, QB)]
        dv_rem = [Const(numer >> QB, DB)] + [Signal(DB, name=f"dv{j}_rem") for j in range(1, QB)]
        dv_q = [Const(0, 1)] + [Signal(j, name=f"dv{j}_q") for j in range(1, QB)]
        dv_m = [m_int] + [Signal(signed(MB), name=f"dv{j}_m") for j in range(1, QB)]
        dv_nb = [nb] + [Signal(NB, name=f"dv{j}_nb") for j in range(1, QB)]
        for j in range(QB):
            r2 = Signal(DB + 1, name=f"dv{j}_r2")
            diff = Signal(signed(DB + 2), name=f"dv{j}_diff")
            bit = Signal(name=f"dv{j}_bit")
            m.d.comb += [r2.eq(Cat(Const((numer >> (QB - 1 - j)) & 1, 1), dv_rem[j])),
                         diff.eq(r2 - dv_d[j]),
                         bit.eq(diff >= 0)]
            rem_next = Mux(bit, diff[:DB], r2[:DB])
            q_next = Cat(bit, dv_q[j][:j]) if j else bit
            if j + 1 < QB:
                m.d.sync += [dv_valid[j + 1].eq(dv_valid[j]), dv_d[j + 1].eq(dv_d[j]),
                             dv_rem[j + 1].eq(rem_next), dv_q[j + 1].eq(q_next),
                             dv_m[j + 1].eq(dv_m[j]), dv_nb[j + 1].eq(dv_nb[j])]
            else:
                m.d.comb += [rfifo.w_en.eq(dv_valid[j]),
                             rfifo.w_data.eq(Cat(q_next, dv_m[j], dv_nb[j]))]

    def _pass2_issue(self, m: Module, rfifo, buf_r, rp, ce):
        """Pass 2 issue: re-reads each finished row from the buffer, one beat per cycle while
        ``ce``; returns ``(issue, p1_valid, p1_last, p1_r, p1_m)``."""
        f = self._formats()
        QB, MB, NB, C = f.QB, f.MB, f.NB, f.C
        f_r = rfifo.r_data[:QB]
        f_m = rfifo.r_data[QB:QB + MB].as_signed()
        f_nb = rfifo.r_data[QB + MB:]
        cur_valid = Signal()                           # a row is being re-read
        cur_r = Signal(QB)
        cur_m = Signal(signed(MB))
        cur_rem = Signal(NB)                           # its beats still to re-read
        issue = Signal()
        m.d.comb += [
            issue.eq(ce & (cur_valid | rfifo.r_rdy)),
            rfifo.r_en.eq(ce & ~cur_valid),
            buf_r.addr.eq(rp),
            buf_r.en.eq(ce),
        ]
        with m.If(issue):
            m.d.sync += rp.eq(Mux(rp == C - 1, 0, rp + 1))
            with m.If(cur_valid):
                m.d.sync += [cur_rem.eq(cur_rem - 1), cur_valid.eq(cur_rem != 1)]
            with m.Else():
                m.d.sync += [cur_rem.eq(f_nb - 1), cur_valid.eq(f_nb != 1),
                             cur_r.eq(f_r), cur_m.eq(f_m)]

        # p1: buffer data arrives (registered row parameters beside it).
        p1_valid, p1_last = Signal(), Signal()
        p1_r = Signal(QB)
        p1_m = Signal(signed(MB))
        with m.If(ce):
            m.d.sync += [
                p1_valid.eq(issue),
                p1_last.eq(Mux(cur_valid, cur_rem == 1, f_nb == 1)),
                p1_r.eq(Mux(cur_valid, cur_r, f_r)),
                p1_m.eq(Mux(cur_valid, cur_m, f_m)),
            ]
        return issue, p1_valid, p1_last, p1_r, p1_m

    def _pass2_scale(self, m: Module, buf_r, rd2, ce, skid_valid, p1_valid, p1_last, p1_r,
                     p1_m):
        """Pass 2, stages p1 to the output register:
        ``p = min(omax, ((T[r] >> q)·R + 2**(K-1)) >> K)``; returns the stage valids."""
        f = self._formats()
        P, B, F, E, K, QB, QW = f.P, f.B, f.F, f.E, f.K, f.QB, f.QW
        omax = (1 << f.O) - 1
        valids = [p1_valid]

        def stage(value, name):
            return _delay(m, value, 1, name, ce=ce, reset_less=True)

        # p2: the buffer word registered (block RAM output).
        p2_valid = _delay(m, p1_valid, 1, "p2_valid", ce=ce)
        valids.append(p2_valid)
        p2_last, p2_r, p2_m = stage(p1_last, "p2_last"), stage(p1_r, "p2_r"), stage(p1_m, "p2_m")
        p2_word = stage(buf_r.data, "p2_word")
        p2_cnt = p2_word[P * B:]

        # p3: δ = M·2**F - z, table reads; 3R for the product.
        p3_valid = _delay(m, p2_valid, 1, "p3_valid", ce=ce)
        valids.append(p3_valid)
        p3_last, p3_r, p3_cnt = stage(p2_last, "p3_last"), stage(p2_r, "p3_r"), stage(p2_cnt,
                                                                                          "p3_cnt")
        p3_r3 = stage(p2_r + (p2_r << 1), "p3_r3")
        p3_q = []
        for k in range(P):
            z = p2_word[k * B:(k + 1) * B].as_signed()
            delta = Signal(signed(B + 2), name=f"p2_delta{k}")
            m.d.comb += [delta.eq((p2_m << F) - z),
                         rd2[k].addr.eq(delta[:F]),
                         rd2[k].en.eq(ce)]
            p3_q.append(stage(delta[F:F + QW], f"p3_q{k}"))

        # p4: the table word registered (block RAM output).
        p4_valid = _delay(m, p3_valid, 1, "p4_valid", ce=ce)
        valids.append(p4_valid)
        p4_last, p4_cnt = stage(p3_last, "p4_last"), stage(p3_cnt, "p4_cnt")
        p4_r, p4_r3 = stage(p3_r, "p4_r"), stage(p3_r3, "p4_r3")
        p4_t = [stage(rd2[k].data, f"p4_t{k}") for k in range(P)]
        p4_q = [stage(p3_q[k], f"p4_q{k}") for k in range(P)]

        # p5: e = T[r] >> q.
        p5_valid = _delay(m, p4_valid, 1, "p5_valid", ce=ce)
        valids.append(p5_valid)
        p5_last, p5_cnt = stage(p4_last, "p5_last"), stage(p4_cnt, "p5_cnt")
        p5_r, p5_r3 = stage(p4_r, "p5_r"), stage(p4_r3, "p5_r3")
        p5_e = [stage(p4_t[k] >> p4_q[k], f"p5_e{k}") for k in range(P)]

        # p6..p8: e·R as a tree over the radix-4 digits of e (digit d selects d·R).
        valid, last, cnt = p5_valid, p5_last, p5_cnt
        width = E + 1 + QB
        trees = []
        for k in range(P):
            pp = []
            e = Cat(p5_e[k], Const(0, 1))           # an even number of bits
            for j in range(0, E + 1, 2):
                digit = e[j:j + 2]
                sel = Mux(digit[1], Mux(digit[0], p5_r3, p5_r << 1), Mux(digit[0], p5_r, 0))
                pp.append(sel << j)
            trees.append(pp)
        for s in range(_PRODUCT_STAGES):
            valid = _delay(m, valid, 1, f"pm{s}_valid", ce=ce)
            valids.append(valid)
            last, cnt = stage(last, f"pm{s}_last"), stage(cnt, f"pm{s}_cnt")
            for k in range(P):
                level = trees[k]
                if s + 1 < _PRODUCT_STAGES:
                    level = _sum_level(level)
                else:
                    level = [sum(level[1:], level[0])]
                trees[k] = [stage(v[:width], f"pm{s}_{k}_{n}") for n, v in enumerate(level)]
        prod = [t[0] for t in trees]

        # round, clamp, mask -> the output register. ``ce`` is ~skid_valid, a register (its
        # fan-out is all of pass 2): when ``o`` stalls, pass 2 still advances once and its
        # beat waits in the skid register; ``o`` takes it when ready, then pass 2 resumes.
        nxt = Signal(softmax_out_layout(self.config))
        m.d.comb += [nxt.last.eq(last), nxt.count.eq(cnt)]
        for k in range(P):
            rounded = (prod[k] + (1 << (K - 1))) >> K
            m.d.comb += nxt.data[k].eq(Mux(cnt > k, Mux(rounded > omax, omax, rounded), 0))
        skid = Signal(softmax_out_layout(self.config))
        with m.If(~skid_valid):
            with m.If(self.o.valid & ~self.o.ready):
                m.d.sync += [skid_valid.eq(valid), skid.eq(nxt)]
            with m.Else():
                m.d.sync += [self.o.valid.eq(valid), self.o.payload.eq(nxt)]
        with m.Elif(self.o.ready):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(skid), skid_valid.eq(0)]
        assert len(valids) == SOFTMAX_PASS2_STAGES - 1
        return valids

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg, f = self.config, self._formats()
        P, B, CB, C = f.P, f.B, f.CB, f.C
        table = [int(v) for v in exp2_table(cfg)]

        # Exp tables: one ROM per lane, one read port for each pass.
        rd1, rd2 = [], []
        for k in range(P):
            rom = Memory(shape=unsigned(f.E + 1), depth=1 << f.F, init=table)
            m.submodules[f"exp_rom{k}"] = rom
            rd1.append(rom.read_port())
            rd2.append(rom.read_port())

        # Beat buffer: z lanes and the stored count of every beat of the buffered rows.
        buf = Memory(shape=unsigned(P * B + CB), depth=C, init=[])
        m.submodules.buffer = buf
        buf_w = buf.write_port()
        buf_r = buf.read_port()
        occupancy = Signal(range(C + 1))
        room_ok = Signal(init=1)                       # occupancy < C
        wp = Signal(range(C))
        rp = Signal(range(C))

        # Reciprocal FIFO: (R, M, beats) per finished row. It can never overflow: every row
        # in it (or in the divider) still has >= 1 beat in the buffer, which holds C beats.
        rfifo = m.submodules.rfifo = SyncFIFO(width=f.QB + f.MB + f.NB, depth=C)

        accept, store, st_cnt, nb = self._input_stage(m, buf_w, room_ok, wp)
        z, mask, mrun, end, fin, nbr = self._pass1_max(m, accept, store, st_cnt, nb)
        y = self._pass1_terms(m, rd1, z, mask, mrun)
        self._divider(m, rfifo, *self._pass1_split_sum(m, y, mrun, end, fin, nbr))

        ce = Signal()                                  # pass 2 advances
        skid_valid = Signal()                          # an output beat waits behind o
        m.d.comb += ce.eq(~skid_valid)
        issue, p1_valid, p1_last, p1_r, p1_m = self._pass2_issue(m, rfifo, buf_r, rp, ce)
        valids = self._pass2_scale(m, buf_r, rd2, ce, skid_valid, p1_valid, p1_last, p1_r,
                                   p1_m)

        # room_ok = occupancy < C, kept as a register: one more beat leaves room iff
        # occupancy < C - 1 (compared on the register), one fewer always does.
        with m.Switch(Cat(accept & store, issue)):
            with m.Case(0b01):
                m.d.sync += [occupancy.eq(occupancy + 1), room_ok.eq(occupancy < C - 1)]
            with m.Case(0b10):
                m.d.sync += [occupancy.eq(occupancy - 1), room_ok.eq(1)]

        m.d.comb += self.busy.eq((occupancy != 0) | Cat(*valids).any() | skid_valid |
                                 self.o.valid)

        # The stage counts above are what the cycle model assumes (pass 1 after s1: ceilings,
        # max tree, running max, table read, table register, terms, sum tree, split sum and
        # merge; the divider's stage 0 is pass 1's last).
        assert SOFTMAX_PASS1_FIXED_STAGES == 5 and SOFTMAX_FIFO_STAGES == 1
        assert softmax_pass1_stages(cfg) == (1 + softmax_lane_levels(cfg) + 1 + 3
                                             + softmax_lane_levels(cfg) + SOFTMAX_SPLIT)
        return m


class _Formats(NamedTuple):
    """Widths of :class:`StreamingSoftmax` (names of the module docstring)."""
    P: int          # lanes
    B: int          # input bits
    F: int          # input fraction bits
    E: int          # table entry bits
    K: int          # reciprocal fraction bits
    O: int          # output bits
    G: int          # max shift
    SB: int         # running sum bits
    DB: int         # divisor bits
    QB: int         # quotient bits
    MB: int         # max bits
    QW: int         # shift (q) bits
    CB: int         # count bits
    NB: int         # stored-beats bits
    C: int          # buffer beats
