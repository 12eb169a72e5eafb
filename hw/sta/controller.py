"""Controller of the STA core: runs the program in CBUF, one command at a time.

States per command: FETCH (the command word, presented on the CBUF read port one state ahead,
is registered), DECODE1, DECODE2 (:class:`~nmaccel.hw.sta.checks.CommandChecker`'s extents),
CHECK (errors stop the run), SYNC (≥ 1 cycle: barrier — the MAC path and post stage are empty;
``wait_sm`` — softmax blocks written; a softmax GEMM claims a free score bank), PARAM1 and
PARAM2 (the two PBUF parameter words of post-ops and vector commands), then RUN (one GEMM beat
per cycle from :class:`~nmaccel.hw.sta.tiling.TileWalker`; a tile's last beat waits while the
previous tile's last beat is fewer than ``rows`` cycles old, as the drain reads the shadow one
row per cycle) or VEC (the vector sequencer runs), and NEXT. After the last command, WAIT
until the MAC path, post stage, softmax path and weight-fetch engine are empty. An error goes
to HALT, which waits the same way (and for a full score bank's block) before it raises
``error``: nothing of a failed run reaches the buffers after the next START.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.sta.buffers import read_signature
from nmaccel.hw.sta.checks import CommandChecker
from nmaccel.hw.sta.fetch import fetch_layout
from nmaccel.hw.sta.isa import Dest, Opcode, Post, command_layout, param_layout, status_layout
from nmaccel.hw.sta.layouts import (
    PENDING_SHAPE,
    beat_layout,
    claim_layout,
    entry_bits,
    fetch_max_entries,
    fetch_targets,
    start_layout,
)
from nmaccel.hw.sta.tiling import TileWalker
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig

__all__ = ["StaController"]

_ERR = sta_isa.ERROR_CODES


class StaController(wiring.Component):
    """Fetch, decode, check, synchronisation and issue of the STA's commands.

    Parameters
    ----------
    config : StaConfig

    Attributes
    ----------
    start : In(stream.Signature(start_layout, always_ready=True))
        START with the command count (only while idle). A count of 0 or beyond CBUF raises the
        ``count`` error.
    status : Out(status_layout)
        CSR STATUS: ``busy``, ``done``, ``error`` (kept until the next START), error ``code``
        and the index of the ``command`` that raised it.
    count : Out(32)
        The command count of the last START.
    pc : Out(16)
        Index of the current command.
    cmd : Out(command_layout)
        The current command (from DECODE1 on).
    params : Out(ArrayLayout(param_layout, 2))
        Its parameter words (PARAM1, PARAM2): PBUF ``p_base + m_tiles · rows`` (GEMM post-op),
        ``p_base + length`` (LAYERNORM) or ``p_base`` (REQUANT) and the word after.
    cbuf : In(ReadPort.Signature)
        Command reads: the address is the next command's while the current one runs.
    cbuf_word_addr : In
        Address of the word on the CBUF read data (FETCH waits until it is ``pc``'s).
    first_fetch : Out(1)
        START cycle with a valid count: the first command's address is presented.
    pbuf : In(ReadPort.Signature)
        Parameter reads.
    beats : Out(stream.Signature(beat_layout, always_ready=True))
        GEMM beats (RUN).
    meta_err : In(1)
        N:M metadata error of the array (stops the run in FETCH, SYNC, RUN, WAIT).
    mac_busy, post_busy : In(1)
        The MAC path (array, drain) and the post stage hold a tile.
    claims : Out(stream.Signature(claim_layout, always_ready=True))
        A softmax GEMM claims the next score bank (SYNC).
    bank_free, claimed_bank, softmax_pending, softmax_busy, softmax_full : In
        Score bank state (:class:`~nmaccel.hw.sta.attention.AttentionMover`).
    vector_go : Out(1)
        VEC: the vector sequencer runs the command; ``vector_done`` ends it.
    vector_done : In(1)
    stall, barrier_wait, softmax_wait, command_done : Out(1)
        Counter events: a tile's last beat waits for the drain; SYNC waits for the pipelines,
        for softmax blocks or a bank; NEXT.
    fetch : Out(stream.Signature(fetch_layout))
        With external memory only: a FETCH's request to the weight-fetch engine (SYNC, when
        ``fetch_busy`` is low; the engine takes it in that cycle).
    fetch_busy : In(1)
        With external memory only: the engine works on a request. SYNC holds a FETCH, and
        WAIT and HALT hold the end of a run, until it is low.
    fetch_wait : Out(1)
        With external memory only: SYNC holds a FETCH for the engine (counter event).

    Latency: ``RUN_START`` cycles from FETCH to the first beat of a command without waits or
    parameters (two cycles more with parameters), ``COMMAND_OVERHEAD`` cycles per command
    besides its beats or vector cycles (:mod:`nmaccel.spec.sta_timing`). FETCH takes one
    cycle more when a host read kept the CBUF port in the START cycle.
    """

    def __init__(self, config: StaConfig) -> None:
        StaConfig.require(config)
        self.config = config
        cbuf = read_signature(config, "CBUF")
        super().__init__({
            "start": In(stream.Signature(start_layout(), always_ready=True)),
            "status": Out(status_layout()), "count": Out(32), "pc": Out(16),
            "cmd": Out(command_layout(config)),
            "params": Out(data.ArrayLayout(param_layout(config), 2)),
            "cbuf": In(cbuf), "cbuf_word_addr": In(cbuf.members["addr"].shape),
            "first_fetch": Out(1),
            "pbuf": In(read_signature(config, "PBUF")),
            "beats": Out(stream.Signature(beat_layout(config), always_ready=True)),
            "meta_err": In(1), "mac_busy": In(1), "post_busy": In(1),
            "claims": Out(stream.Signature(claim_layout(config), always_ready=True)),
            "bank_free": In(1), "claimed_bank": In(1), "softmax_busy": In(1),
            "softmax_full": In(1),
            "softmax_pending": In(PENDING_SHAPE),
            "vector_go": Out(1), "vector_done": In(1),
            "stall": Out(1), "barrier_wait": Out(1), "softmax_wait": Out(1),
            "command_done": Out(1),
            **self._fetch_members(config),
        })

    @staticmethod
    def _fetch_members(config: StaConfig) -> dict:
        t = config.sdram_timing
        if t is None:
            return {}
        layout = fetch_layout(t, fetch_targets(config), fetch_max_entries(config))
        return {"fetch": Out(stream.Signature(layout)), "fetch_busy": In(1),
                "fetch_wait": Out(1)}

    def _fetch_idle(self):
        """1 when the weight-fetch engine is idle (always without external memory)."""
        return ~self.fetch_busy if self.config.sdram_timing is not None else 1

    def _idle(self, m: Module, gap) -> None:
        """IDLE: START loads the count and clears the status."""
        cfg, status = self.config, self.status
        count = self.start.payload.count
        with m.If(self.start.valid):
            m.d.sync += [self.count.eq(count), self.pc.eq(0), status.done.eq(0),
                         status.error.eq(0), status.code.eq(0), status.command.eq(0),
                         gap.eq(cfg.rows), status.busy.eq(1)]
            with m.If((count == 0) | (count > cfg.cbuf_depth)):
                m.d.sync += [status.code.eq(_ERR["count"]), status.error.eq(1),
                             status.busy.eq(0)]
            with m.Else():
                m.d.comb += self.first_fetch.eq(1)
                m.next = "FETCH"

    def _param_base(self):
        """PBUF address of the command's first parameter word."""
        cmd = self.cmd
        return Mux(cmd.op == Opcode.GEMM, cmd.p_base + cmd.m_tiles * self.config.rows,
                   Mux(cmd.op == Opcode.LAYERNORM, cmd.p_base + cmd.length, cmd.p_base))

    def _sync(self, m: Module, fail, param_addr, param_base) -> None:
        """SYNC: wait for the pipelines and the softmax path, claim a score bank, then read
        the parameter words or run."""
        cmd = self.cmd
        gemm = cmd.op == Opcode.GEMM
        vector = (cmd.op == Opcode.LAYERNORM) | (cmd.op == Opcode.REQUANT)
        softmax = gemm & (cmd.dest == Dest.SOFTMAX)
        post_op = gemm & (cmd.post != Post.NONE)
        barrier_ok = ~(cmd.barrier | post_op | vector) | (~self.mac_busy & ~self.post_busy)
        pending = self.softmax_pending
        blocks_ok = Mux(cmd.wait_sm == 1, pending == 0, Mux(cmd.wait_sm == 2, pending <= 1, 1))
        bank_ok = ~softmax | self.bank_free
        with m.If(self.meta_err):
            fail(_ERR["meta"])
        with m.Elif(~barrier_ok):
            m.d.comb += self.barrier_wait.eq(1)
        with m.Elif(~blocks_ok | ~bank_ok):
            m.d.comb += self.softmax_wait.eq(1)
        if self.config.sdram_timing is not None:
            fetch = cmd.op == Opcode.FETCH
            with m.Elif(fetch & self.fetch_busy):
                m.d.comb += self.fetch_wait.eq(1)
            with m.Elif(fetch):
                self._issue_fetch(m)
                m.next = "NEXT"
        with m.Else():
            m.d.comb += [self.claims.valid.eq(softmax),
                         self.claims.payload.sbuf_base.eq(cmd.o_base),
                         self.claims.payload.length.eq(cmd.length)]
            m.d.comb += param_addr.eq(param_base)
            with m.If(vector | post_op):
                m.next = "PARAM1"
            with m.Else():
                m.next = "RUN"

    def _issue_fetch(self, m: Module) -> None:
        """Hand the FETCH to the engine (which is idle, so it takes it this cycle)."""
        cmd, req = self.cmd, self.fetch
        m.d.comb += [req.valid.eq(1), req.payload.ext_addr.eq(cmd.ext_addr),
                     req.payload.wbuf_base.eq(cmd.w_base), req.payload.wbuf_count.eq(cmd.ext_wlen),
                     req.payload.pbuf_base.eq(cmd.p_base), req.payload.pbuf_count.eq(cmd.ext_plen)]

    def _next(self, m: Module, cbuf_addr) -> None:
        """NEXT: the command ends; present the next command's address."""
        m.d.comb += [self.command_done.eq(1), cbuf_addr.eq(self.pc + 1)]
        m.d.sync += self.pc.eq(self.pc + 1)
        with m.If(self.pc + 1 == self.count):
            m.next = "WAIT"
        with m.Else():
            m.next = "FETCH"

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg, cmd, status = self.config, self.cmd, self.status
        R = cfg.rows
        m.submodules.checker = checker = CommandChecker(cfg)
        m.submodules.tiles = tiles = TileWalker(cfg)
        word = Signal(command_layout(cfg))          # the fetched command word
        m.d.comb += [checker.word.eq(word), checker.cmd.eq(cmd), tiles.cmd.eq(cmd),
                     tiles.claimed_bank.eq(self.claimed_bank), tiles.advance.eq(self.beats.valid),
                     self.beats.payload.eq(tiles.beat)]
        # The CBUF is read one state ahead: the start cycle and NEXT present the next command.
        cbuf_addr = Signal.like(self.pc)
        m.d.comb += [cbuf_addr.eq(Mux(self.first_fetch, 0, self.pc)), self.cbuf.addr.eq(cbuf_addr)]
        param_addr = Signal(entry_bits(cfg, "PBUF") + 1)
        m.d.comb += self.pbuf.addr.eq(param_addr)
        # the first parameter word's address and the next one, registered: the command is
        # stable from DECODE2 on, and SYNC and PARAM1 (which read them) come after CHECK
        param_base = Signal.like(param_addr)
        param_next = Signal.like(param_addr)
        first_param = self._param_base()
        m.d.sync += [param_base.eq(first_param), param_next.eq(first_param + 1)]
        # ``gap``: cycles since the last tile-completing beat was issued (saturates at R).
        gap = Signal(range(R + 1), init=R)
        with m.If(self.beats.valid & tiles.beat.last):
            m.d.sync += gap.eq(1)
        with m.Elif(gap != R):
            m.d.sync += gap.eq(gap + 1)

        def fail(code):
            m.d.sync += [status.code.eq(code), status.command.eq(self.pc)]
            m.next = "HALT"

        with m.FSM(name="ctrl"):
            with m.State("IDLE"):
                self._idle(m, gap)
            with m.State("FETCH"):                  # the word of pc is on the CBUF port
                with m.If(self.meta_err):
                    fail(_ERR["meta"])
                with m.Elif(self.cbuf_word_addr == self.pc[:len(self.cbuf_word_addr)]):
                    m.d.sync += word.eq(self.cbuf.data[:len(word.as_value())])
                    m.next = "DECODE1"
            with m.State("DECODE1"):
                m.d.sync += cmd.eq(word)
                m.d.comb += checker.decode1.eq(1)
                m.next = "DECODE2"
            with m.State("DECODE2"):
                m.d.comb += checker.decode2.eq(1)
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += tiles.load.eq(1)
                with m.If(cmd.op == Opcode.NOP):
                    m.next = "NEXT"
                with m.Elif(checker.code != 0):
                    fail(checker.code)
                with m.Else():
                    m.next = "SYNC"
            with m.State("SYNC"):
                self._sync(m, fail, param_addr, param_base)
            with m.State("PARAM1"):                 # the first parameter word arrives
                m.d.comb += param_addr.eq(param_next)
                m.d.sync += self.params[0].eq(self.pbuf.data[:len(self.params[0].as_value())])
                m.next = "PARAM2"
            with m.State("PARAM2"):
                m.d.sync += self.params[1].eq(self.pbuf.data[:len(self.params[1].as_value())])
                with m.If((cmd.op == Opcode.LAYERNORM) | (cmd.op == Opcode.REQUANT)):
                    m.next = "VEC"
                with m.Else():
                    m.next = "RUN"
            with m.State("VEC"):
                m.d.comb += self.vector_go.eq(1)
                with m.If(self.vector_done):
                    m.next = "NEXT"
            with m.State("RUN"):
                with m.If(self.meta_err):
                    fail(_ERR["meta"])
                with m.Elif(tiles.beat.last & (gap != R)):
                    m.d.comb += self.stall.eq(1)
                with m.Else():
                    m.d.comb += self.beats.valid.eq(1)
                    with m.If(tiles.beat.last & tiles.last_tile):
                        m.next = "NEXT"
            with m.State("NEXT"):
                self._next(m, cbuf_addr)
            with m.State("HALT"):                   # an error: let the work in flight finish
                # (so nothing of this run reaches the buffers after the next START)
                with m.If(~self.mac_busy & ~self.post_busy & ~self.softmax_busy
                          & ~self.softmax_full & self._fetch_idle()):
                    m.d.sync += [status.error.eq(1), status.busy.eq(0)]
                    m.next = "IDLE"
            with m.State("WAIT"):                   # the pipelines and softmax path empty out
                with m.If(self.meta_err):
                    fail(_ERR["meta"])
                with m.Elif(~self.mac_busy & ~self.post_busy & (self.softmax_pending == 0)
                            & ~self.softmax_busy & self._fetch_idle()):
                    m.d.sync += [status.busy.eq(0), status.done.eq(1)]
                    m.next = "IDLE"
        return m
