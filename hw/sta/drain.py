"""Drain unit: shadow accumulators → bias, requant, saturation → output buffer.

Reads one array row (``C`` accumulators) per cycle from the MAC array's shadow registers,
adds the row's bias, requantizes all ``C`` lanes in parallel (``C`` :class:`RequantUnit`
instances, the golden model's rule :func:`nmaccel.model.quant.requant`) and writes the row to
the output buffer as ``C`` lanes of ``acc_bits``.

Output formats (``osel``, :func:`nmaccel.spec.sta_isa.osel_bits`)
    0: ``saturate(round_shift((acc + bias) · mult, shift), act_bits)``
    1: the same, saturated to ``vec_bits``; 3: saturated to ``softmax_in_bits``
    2: ``acc + bias`` (``acc_bits``; mult and shift are ignored)
    Narrow outputs are stored sign-extended in their ``acc_bits`` lane.

Ports
    ``start`` In (pulse, with ``o_addr``, ``p_addr``, ``osel``): drain the shadow now; row ``r``
    is read in cycle ``start + r`` and written to ``o_addr + r`` using PBUF ``p_addr + r``.
    ``row_sel`` Out / ``row`` In: shadow row read (combinational in the array).
    ``p_addr_o`` Out / ``p_data`` In: PBUF read port (synchronous, one cycle).
    ``o_wr_addr``, ``o_wr_data``, ``o_wr_en`` Out: OBUF write port.
    ``o_lanes`` Out (``ArrayLayout(signed(acc_bits), C)``), ``o_row`` Out, ``o_tag`` Out: the
    same row as ``o_wr_data`` with its row index and the ``tag`` given with ``start``
    (``tag_bits`` wide: the core's per-tile destination record).
    ``busy`` Out: a drain is in flight.

Latency: row ``r`` is written ``latency = 2 + REQUANT_LATENCY = 10`` cycles after it is read; a
whole tile takes ``R + latency`` cycles. Throughput: one row per cycle; ``start`` pulses at
least ``R`` cycles apart.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.arith import delay_chain
from nmaccel.hw.sta.isa import param_layout
from nmaccel.hw.sta.requant import RequantUnit
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig, clog2

__all__ = ["DrainUnit"]


class DrainUnit(wiring.Component):
    """Pipelined per-row requantizer between the array's shadow and OBUF (module docstring)."""

    latency = 2 + RequantUnit.latency

    def __init__(self, config: StaConfig, tag_bits: int = 1) -> None:
        StaConfig.require(config)
        if not isinstance(tag_bits, int) or isinstance(tag_bits, bool) or tag_bits < 1:
            raise ValueError(f"tag_bits must be a positive integer, not {tag_bits!r}")
        self.config = config
        self.tag_bits = tag_bits
        cfg = config
        self.o_aw = max(clog2(cfg.obuf_depth), 1)
        self.p_aw = max(clog2(cfg.pbuf_depth), 1)
        super().__init__({
            "start": In(1),
            "o_addr": In(self.o_aw),
            "p_addr": In(self.p_aw),
            "osel": In(3),
            "tag": In(tag_bits),
            "row_sel": Out(max(clog2(cfg.rows), 1)),
            "row": In(data.ArrayLayout(signed(cfg.acc_bits), cfg.cols)),
            "p_addr_o": Out(self.p_aw),
            "p_data": In(param_layout(cfg)),
            "o_wr_addr": Out(self.o_aw),
            "o_wr_data": Out(unsigned(cfg.cols * cfg.acc_bits)),
            "o_wr_en": Out(1),
            "o_lanes": Out(data.ArrayLayout(signed(cfg.acc_bits), cfg.cols)),
            "o_row": Out(range(cfg.rows)),
            "o_tag": Out(tag_bits),
            "busy": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.config
        R, C, AB = cfg.rows, cfg.cols, cfg.acc_bits

        # Row sequencer: row 0 in the start cycle, rows 1..R-1 in the following cycles.
        running = Signal()
        ri = Signal(range(R + 1))
        base_o = Signal(self.o_aw)
        base_p = Signal(self.p_aw)
        osel_l = Signal(3)
        tag_l = Signal(self.tag_bits)
        cur_o = Signal(self.o_aw)
        cur_osel = Signal(3)
        cur_tag = Signal(self.tag_bits)
        cur_row = Signal(range(R))
        read = Signal()
        with m.If(self.start):
            m.d.comb += [self.row_sel.eq(0), self.p_addr_o.eq(self.p_addr),
                         cur_o.eq(self.o_addr), cur_osel.eq(self.osel), read.eq(1),
                         cur_tag.eq(self.tag), cur_row.eq(0)]
            m.d.sync += [base_o.eq(self.o_addr), base_p.eq(self.p_addr), osel_l.eq(self.osel),
                         tag_l.eq(self.tag), ri.eq(1), running.eq(R > 1)]
        with m.Elif(running):
            m.d.comb += [self.row_sel.eq(ri), self.p_addr_o.eq(base_p + ri),
                         cur_o.eq(base_o + ri), cur_osel.eq(osel_l), read.eq(1),
                         cur_tag.eq(tag_l), cur_row.eq(ri)]
            m.d.sync += ri.eq(ri + 1)
            with m.If(ri == R - 1):
                m.d.sync += running.eq(0)

        # Stage 1: registered row (PBUF data arrives next cycle).
        row1 = Signal(data.ArrayLayout(signed(AB), C))
        o1, osel1, v1 = Signal(self.o_aw), Signal(3), Signal()
        m.d.sync += [row1.eq(self.row), o1.eq(cur_o), osel1.eq(cur_osel), v1.eq(read)]
        # Row index and tag ride beside the pipeline.
        tags, rows = [cur_tag], [cur_row]
        for i in range(self.latency):
            t, r_ = Signal(self.tag_bits, name=f"tag{i + 1}"), Signal(range(R), name=f"row{i + 1}")
            m.d.sync += [t.eq(tags[-1]), r_.eq(rows[-1])]
            tags.append(t)
            rows.append(r_)
        m.d.comb += [self.o_tag.eq(tags[-1]), self.o_row.eq(rows[-1])]

        # Stage 2: add bias; int32 output forces mult = 1, shift = 0.
        sum2 = Signal(data.ArrayLayout(signed(AB), C))
        mult2 = Signal(unsigned(cfg.requant_mult_bits))
        shift2 = Signal(unsigned(sta_isa.SHIFT_BITS))
        o2, osel2, v2 = Signal(self.o_aw), Signal(3), Signal()
        for c in range(C):
            m.d.sync += sum2[c].eq(row1[c] + self.p_data.bias)
        raw = osel1 == sta_isa.Osel.ACC
        m.d.sync += [
            mult2.eq(Mux(raw, 1, self.p_data.mult)),
            shift2.eq(Mux(raw, 0, self.p_data.shift)),
            o2.eq(o1), osel2.eq(osel1), v2.eq(v1),
        ]

        # Stages 3..: C requant units (saturating to acc_bits), address/format alongside.
        outs = []
        for c in range(C):
            rq = RequantUnit(cfg, out_bits=AB, signed=True)
            m.submodules[f"rq{c}"] = rq
            m.d.comb += [rq.acc.eq(sum2[c]), rq.mult.eq(mult2), rq.shift.eq(shift2),
                         rq.valid.eq(v2)]
            outs.append(rq)
        # Address, format and a busy bit travel beside the requant units.
        o4 = delay_chain(m, o2, RequantUnit.latency, "o_rq")[-1]
        osel4 = delay_chain(m, osel2, RequantUnit.latency, "osel_rq")[-1]
        v_k = delay_chain(m, v2, RequantUnit.latency, "v_rq", reset_less=False)

        # Output: saturate to the selected width (composition of clamps = the narrow clamp).
        for c, rq in enumerate(outs):
            lane = Signal(signed(AB), name=f"lane{c}")
            v = rq.o
            with m.Switch(osel4):
                for sel in sta_isa.OSEL_NAMES:
                    bits = sta_isa.osel_bits(cfg, sel)
                    if bits >= AB:
                        continue
                    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
                    with m.Case(sel):
                        m.d.comb += lane.eq(Mux(v > hi, hi, Mux(v < lo, lo, v)))
                with m.Default():
                    m.d.comb += lane.eq(v)
            m.d.comb += [self.o_wr_data[c * AB:(c + 1) * AB].eq(lane), self.o_lanes[c].eq(lane)]
        m.d.comb += [self.o_wr_addr.eq(o4), self.o_wr_en.eq(outs[0].o_valid)]
        m.d.comb += self.busy.eq(self.start | running | v1 | Cat(*v_k).any())
        return m
