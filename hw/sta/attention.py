"""Attention data movement of the STA core: score banks → StreamingSoftmax → SBUF.

A softmax GEMM (one query tile, ``dest = SOFTMAX``) claims one of two score banks; the post
stage writes its scores there (row ``r`` of key tile ``t`` at bank entry ``r · key_tiles +
t``) and marks the bank full with the last row. The reader then streams the bank row by row
(``cols`` keys per beat, ``length`` keys per row) through a FIFO into
:class:`StreamingSoftmax`, frees the bank, and the writer puts each query's probabilities into
its column of the SBUF block the GEMM named (``dense_window`` keys per window; a row that ends
inside a window gets one more cycle that zeroes the window's remaining slots). The block is
then ready for the P·V GEMM.

Bank states: FREE → CLAIMED (the GEMM starts) → FULL (its last score row is written) → FREE
(the reader has read it). The controller waits for a free bank before a softmax GEMM and, with
``wait_sm``, for written blocks.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.sta.buffers import abuf_granularity, read_signature, slot_enables, write_signature
from nmaccel.hw.sta.layouts import (
    BLOCK_COUNT_BITS,
    PENDING_SHAPE,
    bank_layout,
    claim_layout,
    entry_bits,
)
from nmaccel.hw.sta.softmax import StreamingSoftmax
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig, clog2
from nmaccel.spec.sta_timing import READER_FIFO_DEPTH, READER_ISSUE_LIMIT

__all__ = ["AttentionMover", "BANK_CLAIMED", "BANK_FREE", "BANK_FULL"]

#: score bank states
BANK_FREE, BANK_CLAIMED, BANK_FULL = 0, 1, 2


class AttentionMover(wiring.Component):
    """Score-bank bookkeeping, bank reader, :class:`StreamingSoftmax` and SBUF writer.

    On a config without on-chip attention (:func:`~nmaccel.spec.sta_isa.attention_supported`)
    only the bookkeeping is built (no softmax GEMM passes the controller's checks there).

    Parameters
    ----------
    config : StaConfig

    Attributes
    ----------
    start : In(1)
        START: back to the reset state (both banks free, no blocks, reader and writer idle).
    claims : In(stream.Signature(claim_layout, always_ready=True))
        A softmax GEMM starts: it claims the next bank (alternating) for the SBUF block at
        ``sbuf_base`` with rows of ``length`` keys.
    bank_filled : In(stream.Signature(bank_layout, always_ready=True))
        The post stage wrote the last score row of this bank.
    bank_free : Out(1)
        The bank the next claim takes is free.
    claimed_bank : Out(1)
        The bank of the latest claim (the running softmax GEMM's).
    pending : Out(PENDING_SHAPE)
        Blocks claimed minus blocks written to SBUF.
    busy : Out(1)
        The reader, FIFO, softmax unit or writer holds a beat.
    bank_full : Out(1)
        A bank holds scores the reader has not finished (the reader will start on it).
    scbuf_rd : In(ReadPort.Signature)
        Score bank reads.
    sbuf_wr : In(WritePort.Signature)
        Probability writes (one column of a window per cycle).

    Latency: the first score read of a full bank is issued ``SM_READ_START`` cycles after the
    bank becomes full (:mod:`nmaccel.spec.sta_timing`) and reaches the softmax unit
    ``SM_FIRST_IN`` cycles after; :func:`~nmaccel.spec.softmax_timing.softmax_cycles` times the
    unit. Throughput: one beat per cycle; a block starts once the previous one is read and at
    most one older block is unwritten.
    """

    def __init__(self, config: StaConfig) -> None:
        StaConfig.require(config)
        self.config = config
        self.attention = sta_isa.attention_supported(config) is None
        super().__init__({
            "start": In(1),
            "claims": In(stream.Signature(claim_layout(config), always_ready=True)),
            "bank_filled": In(stream.Signature(bank_layout(), always_ready=True)),
            "bank_free": Out(1),
            "claimed_bank": Out(1),
            "pending": Out(PENDING_SHAPE),
            "busy": Out(1),
            "bank_full": Out(1),
            "scbuf_rd": In(read_signature(config, "SCBUF")),
            "sbuf_wr": In(write_signature(config, "SBUF")),
        })

    def _bookkeeping(self, m: Module, banks: _Banks) -> None:
        """Bank states, the next bank to claim, the block counters."""
        claim, filled = self.claims, self.bank_filled
        next_bank = Signal()
        for b in range(2):
            with m.If(claim.valid & (next_bank == b)):
                m.d.sync += banks.state[b].eq(BANK_CLAIMED)
            with m.Elif(filled.valid & (filled.payload.bank == b)):
                m.d.sync += banks.state[b].eq(BANK_FULL)
            with m.Elif(banks.read_done & (banks.read_bank == b)):
                m.d.sync += banks.state[b].eq(BANK_FREE)
        with m.If(banks.block_written):
            m.d.sync += banks.written.eq(banks.written + 1)
        with m.If(self.start):
            m.d.sync += [next_bank.eq(0), banks.issued.eq(0), banks.written.eq(0),
                         banks.started.eq(0), banks.state[0].eq(BANK_FREE),
                         banks.state[1].eq(BANK_FREE)]
        with m.If(claim.valid):
            m.d.sync += [self.claimed_bank.eq(next_bank), next_bank.eq(~next_bank),
                         banks.issued.eq(banks.issued + 1),
                         banks.sbuf_base[next_bank].eq(claim.payload.sbuf_base),
                         banks.length[next_bank].eq(claim.payload.length)]
        # pending = issued - written, kept in a register of its own with the counters' next
        # values (the same number in every cycle). The controller's SYNC decision reads it
        # and decides the claim, so the subtraction was on the whole-chip critical path
        # (ulx3s_lite, 67.59 MHz: blocks_issued → subtract-compare → claim → bank state,
        # 14.8 ns); the claim now only selects between two differences of registers.
        width = len(banks.issued)                 # the counters wrap at this width
        issued_next = Mux(claim.valid, (banks.issued + 1)[:width],
                          Mux(self.start, 0, banks.issued))
        written_next = Mux(self.start, 0, (banks.written + banks.block_written)[:width])
        pending = Signal(PENDING_SHAPE, name="blocks_pending")
        m.d.sync += pending.eq(issued_next - written_next)
        m.d.comb += [self.bank_free.eq(banks.state[next_bank] == BANK_FREE),
                     self.pending.eq(pending),
                     self.bank_full.eq((banks.state[0] == BANK_FULL)
                                       | (banks.state[1] == BANK_FULL))]

    def _reader(self, m: Module, banks: _Banks, sfifo, block_base) -> Signal:
        """Streams a full bank row by row into the FIFO, ``cols`` keys per beat; returns the
        read-in-flight flag."""
        cfg = self.config
        R, C = cfg.rows, cfg.cols
        key_tiles = -(-cfg.max_seq // C)
        bank, active = banks.read_bank, banks.read_active
        query = Signal(range(R))
        beat = Signal(range(key_tiles + 1))
        remaining = Signal(sta_isa.DIM_BITS)         # keys of the row not yet read
        issue, pending = Signal(), Signal()
        count = Signal(clog2(C + 1))
        last = Signal()
        pending_count, pending_last = Signal.like(count), Signal()
        m.d.comb += [self.scbuf_rd.addr.eq(Mux(bank, R * key_tiles, 0) + query * key_tiles
                                           + beat),
                     count.eq(Mux(remaining >= C, C, remaining)), last.eq(remaining <= C)]
        m.d.sync += [pending.eq(issue), pending_count.eq(count), pending_last.eq(last)]
        m.d.comb += [sfifo.w_en.eq(pending),
                     sfifo.w_data.eq(Cat(self.scbuf_rd.data, pending_count, pending_last))]
        start_ok = ~active & (banks.state[bank] == BANK_FULL) \
            & ((banks.started - banks.written) <= 1)
        with m.If(start_ok):
            m.d.sync += [active.eq(1), query.eq(0), beat.eq(0), remaining.eq(banks.length[bank]),
                         block_base[bank].eq(banks.sbuf_base[bank]),
                         banks.started.eq(banks.started + 1)]
        with m.Elif(active & ((sfifo.level + pending) < READER_ISSUE_LIMIT)):
            m.d.comb += issue.eq(1)
            with m.If(last):
                m.d.sync += [beat.eq(0), remaining.eq(banks.length[bank])]
                with m.If(query == R - 1):
                    m.d.sync += [active.eq(0), bank.eq(~bank)]
                    m.d.comb += banks.read_done.eq(1)
                with m.Else():
                    m.d.sync += query.eq(query + 1)
            with m.Else():
                m.d.sync += [beat.eq(beat + 1), remaining.eq(remaining - C)]
        return pending

    def _writer(self, m: Module, banks: _Banks, smx, block_base) -> tuple:
        """Puts query ``query``'s probabilities into column ``query`` of its block's windows;
        returns its registers (``pad`` first) for the START reset."""
        cfg = self.config
        R, C, Ws, Wd, AB = cfg.rows, cfg.cols, cfg.acts_per_cycle, cfg.dense_window, cfg.act_bits
        bank = Signal()
        query = Signal(range(R))
        window = Signal(entry_bits(cfg, "ABUF") + 2)
        slot = Signal(range(Wd + 1))
        pad = Signal()                               # zero the rest of the row's last window
        slot_en, slot_data = Signal(C * Ws), Signal(C * Ws * AB)
        m.d.comb += [smx.o.ready.eq(~pad), self.sbuf_wr.addr.eq(block_base[bank] + window)]

        def next_query():
            with m.If(query == R - 1):
                m.d.sync += [query.eq(0), bank.eq(~bank)]
                m.d.comb += banks.block_written.eq(1)
            with m.Else():
                m.d.sync += query.eq(query + 1)
        with m.If(pad):
            for c in range(C):
                for j in range(Ws):
                    m.d.comb += slot_en[c * Ws + j].eq((query == c) & (j >= slot) & (j < Wd))
            m.d.sync += [pad.eq(0), window.eq(0), slot.eq(0)]
            next_query()
        with m.Elif(smx.o.valid):
            for c in range(C):
                for j in range(Ws):
                    m.d.comb += [slot_data[(c * Ws + j) * AB:(c * Ws + j + 1) * AB].eq(
                                     smx.o.payload.data[j % C]),
                                 slot_en[c * Ws + j].eq((query == c) & (j >= slot)
                                                        & (j < slot + C))]
            window_full = slot + C >= Wd
            with m.If(smx.o.payload.last):
                with m.If(window_full):
                    m.d.sync += [window.eq(0), slot.eq(0)]
                    next_query()
                with m.Else():
                    m.d.sync += [pad.eq(1), slot.eq(slot + C)]
            with m.Elif(window_full):
                m.d.sync += [slot.eq(0), window.eq(window + 1)]
            with m.Else():
                m.d.sync += slot.eq(slot + C)
        m.d.comb += [self.sbuf_wr.data.eq(slot_data),
                     self.sbuf_wr.en.eq(slot_enables(slot_en, AB // abuf_granularity(cfg)))]
        return pad, bank, query, window, slot

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.config
        C, B = cfg.cols, cfg.softmax_in_bits
        banks = _Banks(cfg)
        self._bookkeeping(m, banks)
        if not self.attention:
            return m

        m.submodules.softmax = smx = StreamingSoftmax(cfg)
        m.submodules.sm_fifo = sfifo = fifo.SyncFIFO(width=C * B + clog2(C + 1) + 1,
                                                     depth=READER_FIFO_DEPTH)
        block_base = Array([Signal(entry_bits(cfg, "ABUF") + 2, name=f"block{i}_sbuf_base")
                            for i in range(2)])
        read_pending = self._reader(m, banks, sfifo, block_base)
        m.d.comb += [smx.i.payload.data[c].eq(sfifo.r_data[c * B:(c + 1) * B].as_signed())
                     for c in range(C)]
        m.d.comb += [smx.i.payload.count.eq(sfifo.r_data[C * B:C * B + clog2(C + 1)]),
                     smx.i.payload.last.eq(sfifo.r_data[-1]), smx.i.valid.eq(sfifo.r_rdy),
                     sfifo.r_en.eq(smx.i.ready), smx.clear.eq(self.start)]
        writer_regs = self._writer(m, banks, smx, block_base)
        pad = writer_regs[0]
        m.d.comb += self.busy.eq(banks.read_active | read_pending | sfifo.r_rdy | smx.busy | pad)
        with m.If(self.start):
            m.d.sync += [reg.eq(0) for reg in (banks.read_bank, banks.read_active) + writer_regs]
        return m


class _Banks:
    """Signals the bookkeeping, the reader and the writer share."""

    def __init__(self, cfg: StaConfig) -> None:
        self.state = Array([Signal(2, name=f"bank{i}_state") for i in range(2)])
        self.sbuf_base = Array([Signal(entry_bits(cfg, "ABUF") + 2, name=f"bank{i}_sbase")
                                for i in range(2)])
        self.length = Array([Signal(sta_isa.DIM_BITS, name=f"bank{i}_len") for i in range(2)])
        self.issued = Signal(BLOCK_COUNT_BITS, name="blocks_issued")    # claims
        self.started = Signal(BLOCK_COUNT_BITS, name="blocks_started")  # reader starts
        self.written = Signal(BLOCK_COUNT_BITS, name="blocks_written")  # writer finishes
        self.read_bank = Signal(name="read_bank")      # the bank the reader takes next
        self.read_active = Signal(name="read_active")  # the reader streams a bank
        self.read_done = Signal(name="read_done")      # ... and has read it (bank free)
        self.block_written = Signal(name="block_written")
