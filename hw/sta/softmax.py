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
    Pass 1 (on the input stream, never stalls): per beat the chunk's integer max
    ``M_c = ceil(max z / 2**F)`` (as the max of the lanes' ceilings), table reads
    ``T[r_i]`` (one ROM per lane), the exact chunk sum ``S_c = Σ T[r_i]·2**(G - q_i)`` and
    the running combine ``M' = max(M, M_c)``, ``S' = (S >> (M' - M)) + (S_c >> (M' - M_c))``
    (``M`` of the row so far is tracked one stage ahead, so the shift and its direction
    come from registers). Every stored beat is also written into a circular beat buffer.
    At the row's last beat ``(M, S >> G)`` enters a pipelined restoring divider (one
    quotient bit per stage, ``Q`` stages) that writes ``R = floor(omax·2**K / S_r)`` into a
    FIFO. Pass 2 re-reads the row from the buffer one beat per cycle and computes
    ``p = min(omax, ((T[r] >> q)·R + 2**(K-1)) >> K)``. Back-pressure on ``o`` stalls
    pass 2; the buffer then fills and ``i.ready`` drops.

Timing (one source of truth: :mod:`nmaccel.spec.softmax_timing`)
    ``latency = softmax_latency(cfg) = Q + 13`` cycles from accepting a row's last beat to
    transferring its first output beat, ``Q = out_bits + K - E + 1``. Throughput one beat
    per cycle on both sides for any mix of row lengths (buffer of
    ``ceil(max_seq/P) + Q + 8`` beats); :func:`~nmaccel.spec.softmax_timing.softmax_cycles`
    gives the exact cycles of a batch of rows.
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
    SOFTMAX_PASS1_STAGES,
    SOFTMAX_PASS2_STAGES,
    softmax_buffer_beats,
    softmax_cycles,
    softmax_latency,
    softmax_max_beats,
    softmax_quotient_bits,
)

__all__ = ["StreamingSoftmax", "softmax_in_layout", "softmax_out_layout"]


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


def _max_tree(values):
    values = list(values)
    while len(values) > 1:
        nxt = [Mux(a > b, a, b) for a, b in zip(values[0::2], values[1::2])]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values[0]


def _sum_tree(values):
    values = list(values)
    while len(values) > 1:
        nxt = [a + b for a, b in zip(values[0::2], values[1::2])]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values[0]


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

    def _input_stage(self, m: Module, buf_w, occupancy, wp):
        """Accepts a beat while the buffer has room, stores its lanes (at most ``max_seq``
        elements per row); returns ``(accept, store, st_cnt)``."""
        cfg, f = self.config, self._formats()
        P, CB, C = f.P, f.CB, f.C
        accept = Signal()
        m.d.comb += [
            self.i.ready.eq(occupancy < C),
            accept.eq(self.i.valid & self.i.ready),
        ]
        n_elem = Signal(range(cfg.max_seq + 1))       # elements stored in the current row
        n_beats = Signal(range(self.max_beats + 1))   # beats stored in the current row
        cnt_in = Signal(CB)
        m.d.comb += cnt_in.eq(Mux(self.i.payload.count > P, P, self.i.payload.count))
        room = Signal(range(cfg.max_seq + 1))
        m.d.comb += room.eq(Mux(n_beats < self.max_beats, cfg.max_seq - n_elem, 0))
        st_cnt = Signal(CB)                           # lanes stored of this beat
        m.d.comb += st_cnt.eq(Mux(cnt_in > room, room, cnt_in))
        store = Signal()
        m.d.comb += store.eq(st_cnt != 0)

        with m.If(accept):
            with m.If(self.i.payload.last):
                m.d.sync += [n_elem.eq(0), n_beats.eq(0)]
            with m.Else():
                m.d.sync += [n_elem.eq(n_elem + st_cnt), n_beats.eq(n_beats + store)]
        set_ovf = Signal()
        m.d.comb += set_ovf.eq(accept & (st_cnt != cnt_in))
        m.d.sync += self.overflow.eq((self.overflow & ~self.clear) | set_ovf)

        m.d.comb += [
            buf_w.addr.eq(wp),
            buf_w.data.eq(Cat(self.i.payload.data.as_value(), st_cnt)),
            buf_w.en.eq(accept & store),
        ]
        with m.If(accept & store):
            m.d.sync += wp.eq(Mux(wp == C - 1, 0, wp + 1))
        return accept, store, st_cnt

    def _pass1_terms(self, m: Module, rd1, accept, store, st_cnt):
        """Pass 1, stages s1 to s4: the chunk max ``M_c`` and the lanes' shifted table terms;
        returns s4's ``(valid, store, last, mc, terms)``."""
        f = self._formats()
        P, B, F, E, G, MB, QW = f.P, f.B, f.F, f.E, f.G, f.MB, f.QW
        zmin = -(1 << (B - 1))
        # s1: registered beat.
        s1_valid, s1_store, s1_last = Signal(), Signal(), Signal()
        s1_cnt = Signal(f.CB)
        s1_z = [Signal(signed(B), name=f"s1_z{k}") for k in range(P)]
        m.d.sync += [s1_valid.eq(accept), s1_store.eq(store), s1_last.eq(self.i.payload.last),
                     s1_cnt.eq(st_cnt)]
        m.d.sync += [s1_z[k].eq(self.i.payload.data[k]) for k in range(P)]

        # s1 -> s2: per valid lane ceil(z / 2**F) (the lowest value for the others).
        s2_valid, s2_store, s2_last = Signal(), Signal(), Signal()
        s2_mask = Signal(P)
        s2_c = [Signal(signed(MB), name=f"s2_c{k}") for k in range(P)]
        s2_z = [Signal(signed(B), name=f"s2_z{k}") for k in range(P)]
        s1_mask = Cat(*[s1_cnt > k for k in range(P)])
        cmin = zmin >> F                            # = ceil(zmin / 2**F): zmin is a multiple
        m.d.sync += [s2_valid.eq(s1_valid), s2_store.eq(s1_store), s2_last.eq(s1_last),
                     s2_mask.eq(s1_mask)]
        m.d.sync += [s2_c[k].eq(Mux(s1_mask[k], (s1_z[k] + ((1 << F) - 1)) >> F, cmin))
                     for k in range(P)]
        m.d.sync += [s2_z[k].eq(s1_z[k]) for k in range(P)]

        # s2 -> s2x: chunk max M_c = max ceil(z / 2**F) = ceil(max z / 2**F).
        s2x_valid, s2x_store, s2x_last = Signal(), Signal(), Signal()
        s2x_mask = Signal(P)
        mc2 = Signal(signed(MB))
        s2x_z = [Signal(signed(B), name=f"s2x_z{k}") for k in range(P)]
        m.d.sync += [s2x_valid.eq(s2_valid), s2x_store.eq(s2_store), s2x_last.eq(s2_last),
                     s2x_mask.eq(s2_mask), mc2.eq(_max_tree(s2_c))]
        m.d.sync += [s2x_z[k].eq(s2_z[k]) for k in range(P)]

        # s2x -> s3: δ = M_c·2**F - z, table reads.
        s3_valid, s3_store, s3_last = Signal(), Signal(), Signal()
        s3_mask = Signal(P)
        s3_mc = Signal(signed(MB))
        s3_q = [Signal(QW, name=f"s3_q{k}") for k in range(P)]
        m.d.sync += [s3_valid.eq(s2x_valid), s3_store.eq(s2x_store), s3_last.eq(s2x_last),
                     s3_mask.eq(s2x_mask), s3_mc.eq(mc2)]
        for k in range(P):
            delta = Signal(signed(B + 2), name=f"p1_delta{k}")
            m.d.comb += [delta.eq((mc2 << F) - s2x_z[k]),
                         rd1[k].addr.eq(delta[:F])]
            m.d.sync += s3_q[k].eq(delta[F:F + QW])

        # s3 -> s4: shifted terms T[r]·2**(G - q) (exact: q <= G), masked.
        s4_valid, s4_store, s4_last = Signal(), Signal(), Signal()
        s4_mc = Signal(signed(MB))
        s4_term = [Signal(E + 1 + G, name=f"s4_term{k}") for k in range(P)]
        m.d.sync += [s4_valid.eq(s3_valid), s4_store.eq(s3_store), s4_last.eq(s3_last),
                     s4_mc.eq(s3_mc)]
        m.d.sync += [s4_term[k].eq(Mux(s3_mask[k], (rd1[k].data << G) >> s3_q[k], 0))
                     for k in range(P)]
        return s4_valid, s4_store, s4_last, s4_mc, s4_term

    def _pass1_combine(self, m: Module, s4_valid, s4_store, s4_last, s4_mc, s4_term):
        """Pass 1, stages s4 to s6: the chunk sum ``S_c`` and the running combine; returns
        ``(s6_fin, run_m, run_s, run_nb)``: the row's ``(M, S, beats)`` are final."""
        f = self._formats()
        MB, SB, NB = f.MB, f.SB, f.NB
        # The running max of the row so far is kept at s4, one stage ahead of the sums, so
        # that the combine in s5 gets its shift amount and direction from registers.
        pm_has = Signal()                           # stored beats of the row before s4's
        pm = Signal(signed(MB))                     # their max M
        d = Signal(signed(MB + 1))
        m.d.comb += d.eq(s4_mc - pm)
        s5_first = Signal()                         # the beat starts the running (M, S)
        s5_up = Signal()                            # the chunk raises the max
        s5_sh = Signal(MB)                          # |M_c - M|
        with m.If(s4_valid):
            with m.If(s4_store):
                m.d.sync += [pm.eq(Mux(pm_has & (d <= 0), pm, s4_mc)), pm_has.eq(~s4_last)]
            with m.Elif(s4_last):
                m.d.sync += pm_has.eq(0)
        m.d.sync += [s5_first.eq(~pm_has), s5_up.eq(d > 0), s5_sh.eq(Mux(d > 0, d, -d))]

        # s4 -> s5: chunk sum S_c.
        s5_valid, s5_store, s5_last = Signal(), Signal(), Signal()
        s5_mc = Signal(signed(MB))
        s5_sc = Signal(SB)
        m.d.sync += [s5_valid.eq(s4_valid), s5_store.eq(s4_store), s5_last.eq(s4_last),
                     s5_mc.eq(s4_mc), s5_sc.eq(_sum_tree(s4_term))]

        # s5: running combine S' = big + (small >> |M_c - M|).
        run_m = Signal(signed(MB))
        run_s = Signal(SB)
        run_nb = Signal(NB)
        big = Mux(s5_up, s5_sc, run_s)
        small = Mux(s5_up, run_s, s5_sc)
        new_m, new_s, new_nb = Signal(signed(MB)), Signal(SB), Signal(NB)
        with m.If(s5_first):
            m.d.comb += [new_m.eq(s5_mc), new_s.eq(s5_sc), new_nb.eq(1)]
        with m.Else():
            m.d.comb += [new_m.eq(Mux(s5_up, s5_mc, run_m)), new_s.eq(big + (small >> s5_sh)),
                         new_nb.eq(run_nb + 1)]

        s6_fin = Signal()                           # the row's (M, S, beats) are final
        m.d.sync += s6_fin.eq(0)
        with m.If(s5_valid):
            with m.If(s5_store):
                m.d.sync += [run_m.eq(new_m), run_s.eq(new_s), run_nb.eq(new_nb)]
            # ~s5_first: the row had stored beats before this one (pm_has one stage earlier).
            m.d.sync += s6_fin.eq(s5_last & (~s5_first | s5_store))
        return s6_fin, run_m, run_s, run_nb

    def _divider(self, m: Module, rfifo, s6_fin, run_m, run_s, run_nb) -> None:
        """s6: the finished row enters the divider from the running registers (a next row's
        first beat overwrites them only at the end of this cycle). Restoring division of the
        constant omax·2**K by S_r, quotient bit QB-1-j in stage j, into the reciprocal FIFO."""
        f = self._formats()
        G, DB, QB, MB, NB = f.G, f.DB, f.QB, f.MB, f.NB
        numer = ((1 << f.O) - 1) << f.K
        dv_valid = [Signal(name=f"dv{j}_valid") for j in range(QB)]
        dv_d = [Signal(DB, name=f"dv{j}_d") for j in range(QB)]
        dv_rem = [Signal(DB, name=f"dv{j}_rem") for j in range(QB)]
        dv_q = [Signal(max(j, 1), name=f"dv{j}_q") for j in range(QB)]
        dv_m = [Signal(signed(MB), name=f"dv{j}_m") for j in range(QB)]
        dv_nb = [Signal(NB, name=f"dv{j}_nb") for j in range(QB)]
        m.d.sync += [dv_valid[0].eq(s6_fin), dv_d[0].eq(run_s[G:]), dv_rem[0].eq(numer >> QB),
                     dv_m[0].eq(run_m), dv_nb[0].eq(run_nb)]
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

    def _pass2_scale(self, m: Module, buf_r, rd2, ce, p1_valid, p1_last, p1_r, p1_m):
        """Pass 2, stages p1 to p3: ``p = min(omax, ((T[r] >> q)·R + 2**(K-1)) >> K)`` into
        the output register; returns the stage valids ``(p2, p25, p3)``."""
        f = self._formats()
        P, B, F, E, K, QB, QW, CB = f.P, f.B, f.F, f.E, f.K, f.QB, f.QW, f.CB
        omax = (1 << f.O) - 1
        p2_valid, p2_last = Signal(), Signal()
        p2_r = Signal(QB)
        p2_cnt = Signal(CB)
        p2_q = [Signal(QW, name=f"p2_q{k}") for k in range(P)]
        p3_valid, p3_last = Signal(), Signal()
        p3_cnt = Signal(CB)
        p3_prod = [Signal(E + 1 + QB, name=f"p3_prod{k}") for k in range(P)]
        # p1: δ = M·2**F - z, table reads.
        p1_cnt = buf_r.data[P * B:]
        for k in range(P):
            z = buf_r.data[k * B:(k + 1) * B].as_signed()
            delta = Signal(signed(B + 2), name=f"p2_delta{k}")
            m.d.comb += [delta.eq((p1_m << F) - z),
                         rd2[k].addr.eq(delta[:F]),
                         rd2[k].en.eq(ce)]
            with m.If(ce):
                m.d.sync += p2_q[k].eq(delta[F:F + QW])
        with m.If(ce):
            m.d.sync += [p2_valid.eq(p1_valid), p2_last.eq(p1_last), p2_r.eq(p1_r),
                         p2_cnt.eq(p1_cnt)]

        # p2: e = T[r] >> q.
        p25_valid, p25_last = Signal(), Signal()
        p25_r = Signal(QB)
        p25_cnt = Signal(CB)
        p25_e = [Signal(E + 1, name=f"p25_e{k}") for k in range(P)]
        with m.If(ce):
            m.d.sync += [p25_valid.eq(p2_valid), p25_last.eq(p2_last), p25_r.eq(p2_r),
                         p25_cnt.eq(p2_cnt)]
            m.d.sync += [p25_e[k].eq(rd2[k].data >> p2_q[k]) for k in range(P)]

        # p2.5: product e·R.
        with m.If(ce):
            m.d.sync += [p3_valid.eq(p25_valid), p3_last.eq(p25_last), p3_cnt.eq(p25_cnt)]
            m.d.sync += [p3_prod[k].eq(p25_e[k] * p25_r) for k in range(P)]

        # p3: round, clamp, mask -> output register.
        with m.If(ce):
            m.d.sync += [self.o.valid.eq(p3_valid), self.o.payload.last.eq(p3_last),
                         self.o.payload.count.eq(p3_cnt)]
            for k in range(P):
                rounded = (p3_prod[k] + (1 << (K - 1))) >> K
                m.d.sync += self.o.payload.data[k].eq(
                    Mux(p3_cnt > k, Mux(rounded > omax, omax, rounded), 0))
        return p2_valid, p25_valid, p3_valid

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
        wp = Signal(range(C))
        rp = Signal(range(C))

        # Reciprocal FIFO: (R, M, beats) per finished row. It can never overflow: every row
        # in it (or in the divider) still has >= 1 beat in the buffer, which holds C beats.
        rfifo = m.submodules.rfifo = SyncFIFO(width=f.QB + f.MB + f.NB, depth=C)

        accept, store, st_cnt = self._input_stage(m, buf_w, occupancy, wp)
        s4 = self._pass1_terms(m, rd1, accept, store, st_cnt)
        self._divider(m, rfifo, *self._pass1_combine(m, *s4))

        ce = Signal()                                  # pass 2 advances
        m.d.comb += ce.eq(~self.o.valid | self.o.ready)
        issue, p1_valid, p1_last, p1_r, p1_m = self._pass2_issue(m, rfifo, buf_r, rp, ce)
        p2_valid, p25_valid, p3_valid = self._pass2_scale(m, buf_r, rd2, ce, p1_valid, p1_last,
                                                          p1_r, p1_m)

        with m.Switch(Cat(accept & store, issue)):
            with m.Case(0b01):
                m.d.sync += occupancy.eq(occupancy + 1)
            with m.Case(0b10):
                m.d.sync += occupancy.eq(occupancy - 1)

        m.d.comb += self.busy.eq((occupancy != 0) | p1_valid | p2_valid | p25_valid |
                                 p3_valid | self.o.valid)

        # The stage counts above are what the cycle model assumes.
        assert SOFTMAX_PASS1_STAGES == 7 and SOFTMAX_FIFO_STAGES == 1
        assert SOFTMAX_PASS2_STAGES == 5
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
