"""Performance counters of the STA core and the per-command cycle log (CYCLOG)."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.sta.buffers import write_signature
from nmaccel.hw.sta.isa import Mode, Opcode, counters_layout
from nmaccel.spec.config import StaConfig

__all__ = ["PerfCounters"]


class PerfCounters(wiring.Component):
    """The run counters of :data:`~nmaccel.spec.sta_isa.COUNTERS` and the cycle log.

    Parameters
    ----------
    config : StaConfig

    Attributes
    ----------
    clear : In(1)
        START: every counter to 0.
    busy : In(1)
        The core runs (``CYCLES``; and the current command's cycles).
    issue, stall : In(1)
        A beat enters the array (``MAC_ACTIVE``); the last beat of a tile waits for the drain
        (``STALLS``).
    softmax_busy : In(1)
        The softmax path holds a beat (``SOFTMAX_BUSY``, counted while ``busy``).
    softmax_wait, barrier_wait : In(1)
        The controller waits for a score bank or softmax block (``SOFTMAX_WAIT``), for the
        pipelines to empty (``BARRIER_WAIT``).
    fetch_busy, fetch_wait : In(1)
        The weight-fetch engine works (``FETCH_BUSY``, counted while ``busy``); a FETCH waits
        for it (``FETCH_WAIT``).
    command_done : In(1)
        The command ``pc`` ends this cycle (NEXT): ``COMMANDS`` counts it, its cycles go to
        CYCLOG entry ``pc`` and to ``SPARSE_CYCLES`` / ``DENSE_CYCLES`` (GEMM, by ``mode``) or
        ``VECTOR_CYCLES`` (LAYERNORM, REQUANT).
    op, mode : In(Opcode), In(Mode)
        The current command's opcode and mode.
    pc : In(16)
        Index of the current command.
    counters : Out(counters_layout)
        The counters.
    cyclog_wr : In(WritePort.Signature)
        CYCLOG writes.

    Latency 1: an event in cycle ``t`` is counted in ``counters`` from ``t + 1``. A command's
    cycles run from its FETCH to its NEXT cycle, both included.
    """

    def __init__(self, config: StaConfig) -> None:
        StaConfig.require(config)
        self.config = config
        super().__init__({
            "clear": In(1), "busy": In(1), "issue": In(1), "stall": In(1),
            "softmax_busy": In(1), "softmax_wait": In(1), "barrier_wait": In(1),
            "fetch_busy": In(1), "fetch_wait": In(1),
            "command_done": In(1), "op": In(Opcode), "mode": In(Mode), "pc": In(16),
            "counters": Out(counters_layout()),
            "cyclog_wr": In(write_signature(config, "CYCLOG")),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cnt = self.counters
        command_cycles = Signal(32)                   # cycles of the current command so far
        with m.If(self.busy):
            m.d.sync += [cnt.cycles.eq(cnt.cycles + 1), command_cycles.eq(command_cycles + 1)]
            with m.If(self.softmax_busy):
                m.d.sync += cnt.softmax_busy.eq(cnt.softmax_busy + 1)
            with m.If(self.fetch_busy):
                m.d.sync += cnt.fetch_busy.eq(cnt.fetch_busy + 1)
        with m.If(self.fetch_wait):
            m.d.sync += cnt.fetch_wait.eq(cnt.fetch_wait + 1)
        with m.If(self.issue):
            m.d.sync += cnt.mac_active.eq(cnt.mac_active + 1)
        with m.If(self.stall):
            m.d.sync += cnt.stalls.eq(cnt.stalls + 1)
        with m.If(self.barrier_wait):
            m.d.sync += cnt.barrier_wait.eq(cnt.barrier_wait + 1)
        with m.If(self.softmax_wait):
            m.d.sync += cnt.softmax_wait.eq(cnt.softmax_wait + 1)
        with m.If(self.command_done):
            total = command_cycles + 1
            m.d.comb += [self.cyclog_wr.addr.eq(self.pc), self.cyclog_wr.data.eq(total),
                         self.cyclog_wr.en.eq(1)]
            m.d.sync += [command_cycles.eq(0), cnt.commands.eq(cnt.commands + 1)]
            with m.If(self.op == Opcode.GEMM):
                with m.If(self.mode == Mode.SPARSE):
                    m.d.sync += cnt.sparse_cycles.eq(cnt.sparse_cycles + total)
                with m.Else():
                    m.d.sync += cnt.dense_cycles.eq(cnt.dense_cycles + total)
            with m.Elif((self.op == Opcode.LAYERNORM) | (self.op == Opcode.REQUANT)):
                m.d.sync += cnt.vector_cycles.eq(cnt.vector_cycles + total)
        with m.If(self.clear):
            m.d.sync += [cnt.eq(0), command_cycles.eq(0)]
        return m
