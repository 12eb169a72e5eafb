"""Post stage of the STA core: drained rows → GELU | residual add → OBUF, VBUF, ABUF, scores.

Each drained row gets its buffer address from its tile's tag (OBUF and VBUF: one row per
entry; ABUF: scattered into the windows of the consumer's layout, or transposed; scores: row
``r`` of query tile ``t`` at bank entry ``r · key_tiles + t``). The VBUF word at that address
is read as the residual operand, the row passes the post-op (none, GELU or residual add; the
parameters are the command's two PBUF words) and is written to its destination.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.arith import delay_chain
from nmaccel.hw.sta.buffers import abuf_granularity, read_signature, slot_enables, write_signature
from nmaccel.hw.sta.isa import Dest, Post, param_layout
from nmaccel.hw.sta.layouts import bank_layout, row_layout, tag_layout
from nmaccel.hw.sta.vector import GeluLanes, ResidualAddLanes
from nmaccel.spec import sta_isa, sta_timing
from nmaccel.spec.config import StaConfig

__all__ = ["PostStage"]


class PostStage(wiring.Component):
    """Address generation, residual read, post-ops and buffer writes of drained rows.

    Parameters
    ----------
    config : StaConfig

    Attributes
    ----------
    rows : In(stream.Signature(row_layout, always_ready=True))
        Drained rows with their tile's tag.
    params : In(ArrayLayout(param_layout, 2))
        The command's post-op parameters (GELU: ``cp``, ``mult``, ``shift`` in word 0, ``clip``
        and the zero point in word 1; residual add: ``mult_a``, ``mult_b``, ``shift``).
    vbuf_rd : In(ReadPort.Signature)
        VBUF read of the residual operand, addressed in the cycle the row arrives.
    obuf_wr, vbuf_wr, abuf_wr, scbuf_wr : In(WritePort.Signature)
        Buffer writes of the finished rows (VBUF: all enables or none; ABUF: the slots of the
        row's window).
    bank_filled : Out(stream.Signature(bank_layout, always_ready=True))
        The last row of a softmax GEMM's last tile is written to this score bank.
    busy : Out(1)
        A row is between ``rows`` and its buffer write.

    Latency: a row arriving in cycle ``t`` is written in cycle ``t + post_latency``
    (:func:`~nmaccel.spec.sta_timing.post_latency`). Throughput: one row per cycle.
    """

    def __init__(self, config: StaConfig) -> None:
        StaConfig.require(config)
        self.config = config
        #: cycles from a drained row to its buffer write
        self.latency = sta_timing.post_latency(config)
        super().__init__({
            "rows": In(stream.Signature(row_layout(config), always_ready=True)),
            "params": In(data.ArrayLayout(param_layout(config), 2)),
            "vbuf_rd": In(read_signature(config, "VBUF")),
            "obuf_wr": In(write_signature(config, "OBUF")),
            "vbuf_wr": In(write_signature(config, "VBUF")),
            "abuf_wr": In(write_signature(config, "ABUF")),
            "scbuf_wr": In(write_signature(config, "SCBUF")),
            "bank_filled": Out(stream.Signature(bank_layout(), always_ready=True)),
            "busy": Out(1),
        })

    def _row_address(self, m: Module, tag, row):
        """Buffer address and ABUF slot of drained row ``row`` of a tile tagged ``tag``."""
        cfg = self.config
        R = cfg.rows
        key_tiles = -(-cfg.max_seq // cfg.cols)
        addr = Signal(len(tag.addr) + 1)
        slot = Signal(len(tag.slot))
        with m.Switch(tag.dest):
            with m.Case(Dest.ABUF):
                for olay in (0, 1):
                    window = sta_isa.window(cfg, olay)
                    with m.If(tag.olay == olay):
                        if window % R == 0:
                            m.d.comb += [addr.eq(tag.addr), slot.eq(tag.slot + row)]
                        elif R % window == 0:
                            with m.Switch(row):
                                for r in range(R):
                                    with m.Case(r):
                                        m.d.comb += [addr.eq(tag.addr + r // window),
                                                     slot.eq(r % window)]
            with m.Case(Dest.ABUF_T):
                m.d.comb += [addr.eq(tag.addr), slot.eq(tag.slot)]
            with m.Case(Dest.SOFTMAX):
                m.d.comb += addr.eq(tag.addr + row * key_tiles)
            with m.Default():
                m.d.comb += addr.eq(tag.addr + row)
        return addr, slot

    def _post_ops(self, m: Module, lanes, tag, valid):
        """GELU and residual-add units on the registered row; their outputs ``latency - 1``
        cycles after it."""
        cfg = self.config
        C, VB, AB = cfg.cols, cfg.vec_bits, cfg.act_bits
        word0, word1 = self.params[0], self.params[1]
        m.submodules.gelu = gelu = GeluLanes(cfg, C)
        m.submodules.radd = radd = ResidualAddLanes(cfg, C)
        for c in range(C):
            m.d.comb += [gelu.x[c].eq(lanes[c]), radd.a[c].eq(lanes[c]),
                         radd.b[c].eq(self.vbuf_rd.data[c * VB:(c + 1) * VB].as_signed())]
        m.d.comb += [
            gelu.valid.eq(valid & (tag.post == Post.GELU)),
            gelu.clip.eq(word1.bias[:VB]), gelu.cp.eq(word0.bias[:31]), gelu.mult.eq(word0.mult),
            gelu.shift.eq(word0.shift), gelu.zero.eq(word1.mult[:AB].as_signed()),
            radd.valid.eq(valid & (tag.post == Post.ADD)),
            radd.mult_a.eq(word0.mult), radd.mult_b.eq(word0.bias[:cfg.requant_mult_bits]),
            radd.shift.eq(word0.shift),
        ]
        stages = self.latency - 1
        gelu_out = delay_chain(m, gelu.o, stages - gelu.latency, "gelu_o", reset_less=False)[-1]
        radd_out = delay_chain(m, radd.o, stages - radd.latency, "radd_o", reset_less=False)[-1]
        return gelu_out, radd_out

    def _writes(self, m: Module, lanes, tag, row, addr, slot, valid) -> None:
        """Buffer writes of the finished row."""
        cfg = self.config
        C, Ws, VB, AB = cfg.cols, cfg.acts_per_cycle, cfg.vec_bits, cfg.act_bits
        B = cfg.softmax_in_bits
        m.d.comb += [self.obuf_wr.addr.eq(addr), self.vbuf_wr.addr.eq(addr),
                     self.abuf_wr.addr.eq(addr), self.scbuf_wr.addr.eq(addr),
                     self.obuf_wr.en.eq(valid & (tag.dest == Dest.OBUF)),
                     self.scbuf_wr.en.eq(valid & (tag.dest == Dest.SOFTMAX))]
        for c in range(C):
            m.d.comb += [self.obuf_wr.data[c * cfg.acc_bits:(c + 1) * cfg.acc_bits].eq(lanes[c]),
                         self.vbuf_wr.data[c * VB:(c + 1) * VB].eq(lanes[c][:VB]),
                         self.scbuf_wr.data[c * B:(c + 1) * B].eq(lanes[c][:B])]
        with m.If(valid & (tag.dest == Dest.VBUF)):
            m.d.comb += self.vbuf_wr.en.eq(-1)
        m.d.comb += [
            self.bank_filled.valid.eq(valid & (tag.dest == Dest.SOFTMAX) & tag.lastcmd
                                      & (row == cfg.rows - 1)),
            self.bank_filled.payload.bank.eq(tag.bank),
        ]
        slot_en = Signal(C * Ws)
        slot_data = Signal(C * Ws * AB)
        with m.If(valid & (tag.dest == Dest.ABUF)):
            for c in range(C):
                for j in range(Ws):
                    m.d.comb += [slot_data[(c * Ws + j) * AB:(c * Ws + j + 1) * AB].eq(
                                     lanes[c][:AB]),
                                 slot_en[c * Ws + j].eq(slot == j)]
        with m.Elif(valid & (tag.dest == Dest.ABUF_T)):
            for c in range(C):
                for j in range(Ws):
                    m.d.comb += [slot_data[(c * Ws + j) * AB:(c * Ws + j + 1) * AB].eq(
                                     lanes[j % C][:AB]),
                                 slot_en[c * Ws + j].eq((row == c) & (j >= slot)
                                                        & (j < slot + C))]
        m.d.comb += [self.abuf_wr.data.eq(slot_data),
                     self.abuf_wr.en.eq(slot_enables(slot_en, AB // abuf_granularity(cfg)))]

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.config
        tag, row, valid = self.rows.payload.tag, self.rows.payload.row, self.rows.valid
        addr, slot = self._row_address(m, tag, row)
        m.d.comb += self.vbuf_rd.addr.eq(addr)

        # Stage 1: the registered row; the VBUF word (residual operand) arrives.
        lanes_r = Signal(data.ArrayLayout(signed(cfg.acc_bits), cfg.cols))
        tag_r, row_r = Signal(tag_layout(cfg)), Signal(range(cfg.rows))
        addr_r, slot_r, valid_r = Signal.like(addr), Signal.like(slot), Signal()
        m.d.sync += [lanes_r.eq(self.rows.payload.lanes), tag_r.eq(tag), row_r.eq(row),
                     addr_r.eq(addr), slot_r.eq(slot), valid_r.eq(valid)]
        gelu_out, radd_out = self._post_ops(m, lanes_r, tag_r, valid_r)

        # The row waits beside the post-ops until the write stage.
        stages = self.latency - 1

        def delay(sig, name):
            return delay_chain(m, sig, stages, name, reset_less=False)[-1]
        out_raw = delay(lanes_r, "lanes")
        out_tag = delay(tag_r, "tag")
        out_row = delay(row_r, "row")
        out_addr = delay(addr_r, "addr")
        out_slot = delay(slot_r, "slot")
        out_valid = delay(valid_r, "valid")
        # busy: a valid row anywhere between ``rows`` and the write stage
        busy_bits = [valid, valid_r] + delay_chain(m, valid_r, stages, "pb", reset_less=False)[1:]
        m.d.comb += self.busy.eq(Cat(*busy_bits).any())

        out_lanes = Signal.like(lanes_r)
        with m.Switch(out_tag.post):
            with m.Case(Post.GELU):
                m.d.comb += [out_lanes[c].eq(gelu_out[c]) for c in range(cfg.cols)]
            with m.Case(Post.ADD):
                m.d.comb += [out_lanes[c].eq(radd_out[c]) for c in range(cfg.cols)]
            with m.Default():
                m.d.comb += out_lanes.eq(out_raw)
        self._writes(m, out_lanes, out_tag, out_row, out_addr, out_slot, out_valid)
        return m
