"""Vector sequencer of the STA core: VBUF reader → LayerNormUnit | requant → VBUF + ABUF writer.

A vector command (LAYERNORM or REQUANT) walks ``n_tiles`` token tiles of VBUF; a token tile
is ``length`` words (one feature of ``cols`` tokens each) from ``a_base + tile · a_stride``.
The reader sends each word with its PBUF parameter word (``p_base + feature``: gamma and beta
for LayerNorm) through a FIFO to the unit: LAYERNORM reads every tile twice (the unit's two
passes), REQUANT once. The writer puts LayerNorm's 16-bit outputs back in place in VBUF and,
for REQUANT or a LAYERNORM with ``dest = ABUF``, the int8 outputs into ABUF windows of the
``olay`` layout from ``o_base + tile · o_stride``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.sta.buffers import abuf_granularity, read_signature, slot_enables, write_signature
from nmaccel.hw.sta.isa import Dest, Opcode, command_layout, param_layout
from nmaccel.hw.sta.requant import RequantUnit
from nmaccel.hw.sta.vector import LayerNormUnit
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig
from nmaccel.spec.sta_timing import READER_FIFO_DEPTH, READER_ISSUE_LIMIT

__all__ = ["VectorSequencer"]

#: width of the running VBUF / ABUF row addresses (base + tile · stride)
ROW_BITS = 2 * sta_isa.DIM_BITS + 8


class VectorSequencer(wiring.Component):
    """Runs one vector command on :class:`LayerNormUnit` or ``cols`` requant units.

    Parameters
    ----------
    config : StaConfig

    Attributes
    ----------
    go : In(1)
        Held by the controller from the command's start until ``done``; the command and
        ``params`` are stable meanwhile.
    done : Out(1)
        Pulse with the command's last output write.
    active : Out(1)
        The sequencer owns the VBUF and PBUF read ports (``go``).
    cmd : In(command_layout)
        The vector command.
    params : In(ArrayLayout(param_layout, 2))
        Its parameter words (LayerNorm: ``mult``/``shift`` of ``y`` in word 0, of the int8 copy
        in word 1; REQUANT: word 0).
    vbuf_rd, pbuf_rd : In(ReadPort.Signature)
        Reads of the input words and their parameter words.
    vbuf_wr, abuf_wr : In(WritePort.Signature)
        Writes of the outputs (VBUF: all enables or none; ABUF: one slot per column).

    Latency: the first VBUF read is issued ``VEC_START - 1`` cycles after ``go`` rises
    (:mod:`nmaccel.spec.sta_timing`); ``done`` comes ``VEC_TAIL - 1`` cycles after the unit's
    last output, which the model :func:`~nmaccel.model.sta_cycles.vector_cycles` places.
    Throughput: one word per cycle while the unit accepts; the reader keeps at most
    ``READER_ISSUE_LIMIT`` words in its FIFO and in flight.
    """

    def __init__(self, config: StaConfig) -> None:
        StaConfig.require(config)
        self.config = config
        super().__init__({
            "go": In(1), "done": Out(1), "active": Out(1),
            "cmd": In(command_layout(config)),
            "params": In(data.ArrayLayout(param_layout(config), 2)),
            "vbuf_rd": In(read_signature(config, "VBUF")),
            "pbuf_rd": In(read_signature(config, "PBUF")),
            "vbuf_wr": In(write_signature(config, "VBUF")),
            "abuf_wr": In(write_signature(config, "ABUF")),
        })

    def _reader(self, m: Module, vfifo, begin) -> None:
        """Reads ``n_tiles`` tiles of ``length`` words (twice each for LayerNorm) into the FIFO
        with their parameter words, the pass and a last-rd_feature flag."""
        cfg, cmd = self.config, self.cmd
        C, VB, GB = cfg.cols, cfg.vec_bits, cfg.ln_gamma_bits
        is_ln = cmd.op == Opcode.LAYERNORM
        rd_active, rd_second_pass = Signal(), Signal()
        rd_tile, rd_feature = Signal(sta_isa.DIM_BITS), Signal(sta_isa.DIM_BITS)
        rd_row = Signal(ROW_BITS)
        rd_issue, rd_pending = Signal(), Signal()
        rd_pending_pass, rd_pending_last = Signal(), Signal()
        last_feature = rd_feature == cmd.length - 1
        with m.If(begin):
            m.d.sync += [rd_active.eq(1), rd_second_pass.eq(~is_ln), rd_tile.eq(0),
                         rd_feature.eq(0), rd_row.eq(cmd.a_base)]
        with m.Elif(rd_active & ((vfifo.level + rd_pending) < READER_ISSUE_LIMIT)):
            m.d.comb += rd_issue.eq(1)
            with m.If(last_feature):
                m.d.sync += rd_feature.eq(0)
                with m.If(is_ln & ~rd_second_pass):
                    m.d.sync += rd_second_pass.eq(1)
                with m.Else():
                    m.d.sync += [rd_second_pass.eq(~is_ln), rd_tile.eq(rd_tile + 1),
                                 rd_row.eq(rd_row + cmd.a_stride)]
                    with m.If(rd_tile == cmd.n_tiles - 1):
                        m.d.sync += rd_active.eq(0)
            with m.Else():
                m.d.sync += rd_feature.eq(rd_feature + 1)
        m.d.sync += [rd_pending.eq(rd_issue), rd_pending_pass.eq(rd_second_pass),
                     rd_pending_last.eq(last_feature)]
        m.d.comb += [self.pbuf_rd.addr.eq(cmd.p_base + rd_feature),
                     self.vbuf_rd.addr.eq(rd_row + rd_feature)]
        param = Signal(param_layout(cfg))
        m.d.comb += param.as_value().eq(self.pbuf_rd.data[:len(param.as_value())])
        m.d.comb += [vfifo.w_en.eq(rd_pending),
                     vfifo.w_data.eq(Cat(self.vbuf_rd.data[:C * VB], param.mult[:GB], param.bias,
                                         rd_pending_pass, rd_pending_last))]

    def _writer(self, m: Module, out_valid, out_y, out_y8, begin) -> None:
        """Writes each output word back to VBUF (LayerNorm) and its int8 copy to ABUF."""
        cfg, cmd = self.config, self.cmd
        C, Ws, Wd, VB, AB = cfg.cols, cfg.acts_per_cycle, cfg.dense_window, cfg.vec_bits, \
            cfg.act_bits
        is_ln = cmd.op == Opcode.LAYERNORM
        wr_tile, wr_feature = Signal(sta_isa.DIM_BITS), Signal(sta_isa.DIM_BITS)
        wr_row, wr_out_row, wr_window = Signal(ROW_BITS), Signal(ROW_BITS), Signal(ROW_BITS)
        wr_slot = Signal(range(max(Ws, Wd) + 1))
        with m.If(begin):
            m.d.sync += [wr_tile.eq(0), wr_feature.eq(0), wr_row.eq(cmd.a_base),
                         wr_out_row.eq(cmd.o_base), wr_window.eq(0), wr_slot.eq(0)]
        m.d.comb += [self.vbuf_wr.addr.eq(wr_row + wr_feature),
                     self.abuf_wr.addr.eq(wr_out_row + wr_window)]
        with m.If(out_valid & is_ln):
            m.d.comb += self.vbuf_wr.en.eq(-1)
        m.d.comb += [self.vbuf_wr.data[c * VB:(c + 1) * VB].eq(out_y[c]) for c in range(C)]
        slot_en, slot_data = Signal(C * Ws), Signal(C * Ws * AB)
        with m.If(out_valid & (~is_ln | (cmd.dest == Dest.ABUF))):
            for c in range(C):
                for j in range(Ws):
                    m.d.comb += [slot_data[(c * Ws + j) * AB:(c * Ws + j + 1) * AB].eq(out_y8[c]),
                                 slot_en[c * Ws + j].eq(wr_slot == j)]
        m.d.comb += [self.abuf_wr.data.eq(slot_data),
                     self.abuf_wr.en.eq(slot_enables(slot_en, AB // abuf_granularity(cfg)))]
        with m.If(out_valid):
            with m.If(wr_feature == cmd.length - 1):
                m.d.sync += [wr_feature.eq(0), wr_window.eq(0), wr_slot.eq(0),
                             wr_tile.eq(wr_tile + 1), wr_row.eq(wr_row + cmd.a_stride),
                             wr_out_row.eq(wr_out_row + cmd.o_stride)]
                with m.If(wr_tile == cmd.n_tiles - 1):
                    m.d.comb += self.done.eq(1)
            with m.Else():
                m.d.sync += wr_feature.eq(wr_feature + 1)
                with m.If(wr_slot + 1 == Mux(cmd.olay, Wd, Ws)):
                    m.d.sync += [wr_slot.eq(0), wr_window.eq(wr_window + 1)]
                with m.Else():
                    m.d.sync += wr_slot.eq(wr_slot + 1)

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg, cmd = self.config, self.cmd
        C, VB, GB, ACC = cfg.cols, cfg.vec_bits, cfg.ln_gamma_bits, cfg.acc_bits
        AB = cfg.act_bits
        word0, word1 = self.params[0], self.params[1]
        is_ln = cmd.op == Opcode.LAYERNORM
        m.submodules.layernorm = ln = LayerNormUnit(cfg, C)
        m.submodules.vec_fifo = vfifo = fifo.SyncFIFO(width=C * VB + GB + ACC + 2,
                                                      depth=READER_FIFO_DEPTH)
        started = Signal()                       # the command's reader and writer are set up
        begin = self.go & ~started
        m.d.comb += self.active.eq(self.go)
        with m.If(begin):
            m.d.sync += started.eq(1)
        with m.If(self.done):
            m.d.sync += started.eq(0)
        self._reader(m, vfifo, begin)

        # FIFO → LayerNormUnit (LAYERNORM) or the requant units (REQUANT, never stall).
        x = vfifo.r_data[:C * VB]
        gamma = vfifo.r_data[C * VB:C * VB + GB]
        beta = vfifo.r_data[C * VB + GB:C * VB + GB + ACC]
        m.d.comb += [ln.i.payload.x[c].eq(x[c * VB:(c + 1) * VB].as_signed()) for c in range(C)]
        m.d.comb += [ln.i.payload.gamma.eq(gamma.as_signed()),
                     ln.i.payload.beta.eq(beta.as_signed()),
                     ln.i.payload.phase.eq(vfifo.r_data[C * VB + GB + ACC]),
                     ln.i.payload.last.eq(vfifo.r_data[C * VB + GB + ACC + 1]),
                     ln.features.eq(cmd.length), ln.mult.eq(word0.mult), ln.shift.eq(word0.shift),
                     ln.mult8.eq(word1.mult), ln.shift8.eq(word1.shift), ln.o.ready.eq(1)]
        requant_valid = Signal()
        with m.If(is_ln):
            m.d.comb += [ln.i.valid.eq(vfifo.r_rdy), vfifo.r_en.eq(ln.i.ready)]
        with m.Else():
            m.d.comb += [vfifo.r_en.eq(1), requant_valid.eq(vfifo.r_rdy)]
        requant = []
        for c in range(C):
            rq = m.submodules[f"vec_rq{c}"] = RequantUnit(cfg, out_bits=AB, signed=True)
            m.d.comb += [rq.acc.eq(x[c * VB:(c + 1) * VB].as_signed()), rq.mult.eq(word0.mult),
                         rq.shift.eq(word0.shift), rq.valid.eq(requant_valid)]
            requant.append(rq)

        out_valid = Mux(is_ln, ln.o.valid, requant[0].o_valid)
        out_y8 = [Mux(is_ln, ln.o.payload.y8[c], requant[c].o) for c in range(C)]
        self._writer(m, out_valid, ln.o.payload.y, out_y8, begin)
        return m
