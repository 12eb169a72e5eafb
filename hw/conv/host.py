"""``ConvHost``: the conv engine behind a host port (the address map of
:mod:`nmaccel.spec.conv_host`), what the UART bridge talks to on a board.

Block diagram::

    wr ─► decode ─┬─► SETTINGS register ──────────────► engine.layer
                  ├─► WMEM / PMEM slice registers ────► engine.wmem_* / pmem_*
                  ├─► START ──────────────────────────► engine.start
                  └─► IN slice register ─► input FIFO ─► engine.i
    rd ─► decode ─► CSRs / engine.o head slice ─► rd_data
                                   ▲
                                   └── engine.o (the engine's own output FIFO)

Ports
    ``wr`` In(stream of ``host_write_layout``): always ready (the bridge's stream has a
    ``ready``; this port holds it high); one word per cycle.
    ``rd`` In(stream of ``host_read_layout``), ``rd_data`` Out(stream of 32 bits): each read
    is answered one cycle later (``rd`` is ready while no answer waits).
    ``busy``, ``done``, ``error`` Out(1): the engine runs; STATUS ``done``; one of the sticky
    error bits (write_lost, in_overflow, out_underflow) is set.

Flow control is the host's (:mod:`nmaccel.spec.conv_host`): no request ever waits on the
engine, so a host that follows IN_FREE and OUT_COUNT can never deadlock the link.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.bridge import host_read_layout, host_write_layout
from nmaccel.spec import conv_host as H
from nmaccel.spec.config import ConvConfig

from .engine import ConvEngine, input_layout, settings_layout

__all__ = ["ConvHost"]


class ConvHost(wiring.Component):
    """The conv engine with its host port (see the module docstring).

    Parameters
    ----------
    config : ConvConfig
        The engine's configuration; it also sizes the address map.

    Attributes
    ----------
    engine : ConvEngine
        The engine inside (its ports are driven by the host port).
    """

    def __init__(self, config: ConvConfig) -> None:
        ConvConfig.require(config)
        self.config = config
        self.engine = ConvEngine(config)
        ab = H.addr_bits(config)
        super().__init__({
            "wr": In(stream.Signature(host_write_layout(ab))),
            "rd": In(stream.Signature(host_read_layout(ab))),
            "rd_data": Out(stream.Signature(32)),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.config
        m.submodules.engine = engine = self.engine
        shift = H.space_shift(cfg)

        def decode(addr):
            return addr[shift:], addr[:shift]

        in_fifo = m.submodules.in_fifo = SyncFIFOBuffered(width=input_layout(cfg).size,
                                                          depth=H.IN_DEPTH)
        # the output beats are read straight from the engine's output FIFO
        # (config.out_fifo_depth beats): a second FIFO here would only
        # add logic (on the iCE40UP5K ~100 LUT and ~100 FF)
        m.d.comb += [engine.i.valid.eq(in_fifo.r_rdy), engine.i.payload.eq(in_fifo.r_data),
                     in_fifo.r_en.eq(engine.i.ready)]
        out_payload = engine.o.payload.as_value()

        settings_bits = settings_layout(cfg).size
        settings = Signal(32 * H.settings_words(cfg))
        m.d.comb += engine.layer.eq(settings[:settings_bits])

        done = Signal()
        write_lost = Signal()
        in_overflow = Signal()
        out_underflow = Signal()
        status = Cat(engine.busy, done, write_lost, in_overflow, out_underflow)
        assert len(status) == len(H.STATUS_FIELDS)
        m.d.comb += [self.busy.eq(engine.busy), self.done.eq(done),
                     self.error.eq(write_lost | in_overflow | out_underflow)]
        with m.If(engine.done):
            m.d.sync += done.eq(1)

        # -------------------------------------------------------------------- writes
        wr = self.wr.payload
        w_space, w_rest = decode(wr.addr)
        start = Signal()
        m.d.comb += [engine.start.eq(start), self.wr.ready.eq(1)]

        def gather(n, sub, name):
            """The ``n``-slice word the write in flight belongs to, at slice ``sub``: slices
            before the last wait in a stage register; returns ``(last, whole)``, the last
            slice's test and the word with the data in flight as that slice."""
            stage = Signal(32 * max(n - 1, 1), name=f"{name}_stage")
            last = sub == n - 1
            if n > 1:
                with m.If(~last):
                    m.d.sync += stage.word_select(sub, 32).eq(wr.data)
            return last, Cat(stage[:32 * (n - 1)], wr.data)

        def entry_write(space, en, addr, data):
            sb = H.sub_bits(cfg, space)
            last, whole = gather(H.sub_words(cfg, space), w_rest[:sb], space.lower())
            m.d.comb += [addr.eq(w_rest[sb:]), data.eq(whole[:len(data.as_value())])]
            with m.If(last):
                with m.If(engine.busy):
                    m.d.sync += write_lost.eq(1)
                with m.Else():
                    m.d.comb += en.eq(1)

        in_words = H.stream_words(cfg, "IN")
        in_sub = Signal(range(max(in_words, 2)))
        out_words = H.stream_words(cfg, "OUT")
        out_sub = Signal(range(max(out_words, 2)))

        with m.If(self.wr.valid):
            with m.Switch(w_space):
                with m.Case(H.SPACES["CSR"]):
                    with m.If(w_rest == H.CSR["START"]):
                        with m.If(~engine.busy):
                            m.d.comb += start.eq(1)
                            m.d.sync += [done.eq(0), write_lost.eq(0), in_overflow.eq(0),
                                         out_underflow.eq(0), in_sub.eq(0), out_sub.eq(0)]
                    for j in range(H.settings_words(cfg)):
                        with m.Elif(w_rest == H.CSR["SETTINGS"] + j):
                            with m.If(engine.busy):
                                m.d.sync += write_lost.eq(1)
                            with m.Else():
                                m.d.sync += settings[32 * j:32 * (j + 1)].eq(wr.data)
                with m.Case(H.SPACES["WMEM"]):
                    entry_write("WMEM", engine.wmem_en, engine.wmem_addr, engine.wmem_data)
                with m.Case(H.SPACES["PMEM"]):
                    entry_write("PMEM", engine.pmem_en, engine.pmem_addr, engine.pmem_data)
                with m.Case(H.SPACES["IN"]):
                    last, whole = gather(in_words, in_sub, "in")
                    m.d.comb += in_fifo.w_data.eq(whole)
                    with m.If(last):
                        m.d.sync += in_sub.eq(0)
                        with m.If(in_fifo.w_rdy):
                            m.d.comb += in_fifo.w_en.eq(1)
                        with m.Else():
                            m.d.sync += in_overflow.eq(1)
                    with m.Else():
                        m.d.sync += in_sub.eq(in_sub + 1)

        # -------------------------------------------------------------------- reads
        answer = Signal(32)
        answered = Signal()
        m.d.comb += [self.rd_data.valid.eq(answered), self.rd_data.payload.eq(answer),
                     self.rd.ready.eq(~answered | self.rd_data.ready)]
        with m.If(self.rd_data.ready):
            m.d.sync += answered.eq(0)
        r_space, r_rest = decode(self.rd.payload.addr)
        head = Cat(out_payload, Const(0, 32 * out_words - len(out_payload)))
        counters = [engine.cyc_total, engine.cyc_active, engine.cyc_load, engine.cyc_stall]
        assert len(counters) == len(H.COUNTERS)
        with m.If(self.rd.valid & self.rd.ready):
            m.d.sync += [answered.eq(1), answer.eq(0)]
            with m.Switch(r_space):
                with m.Case(H.SPACES["CSR"]):
                    with m.Switch(r_rest):
                        with m.Case(H.CSR["STATUS"]):
                            m.d.sync += answer.eq(status)
                        with m.Case(H.CSR["IN_FREE"]):
                            m.d.sync += answer.eq(H.IN_DEPTH - in_fifo.level)
                        with m.Case(H.CSR["OUT_COUNT"]):
                            m.d.sync += answer.eq(engine.o_level)
                        for name, counter in zip(H.COUNTERS, counters):
                            with m.Case(H.CSR[name]):
                                m.d.sync += answer.eq(counter)
                        for j in range(H.settings_words(cfg)):
                            with m.Case(H.CSR["SETTINGS"] + j):
                                m.d.sync += answer.eq(settings[32 * j:32 * (j + 1)])
                with m.Case(H.SPACES["OUT"]):
                    with m.If(engine.o.valid):
                        m.d.sync += answer.eq(head.word_select(out_sub, 32))
                        with m.If(out_sub == out_words - 1):
                            m.d.comb += engine.o.ready.eq(1)
                            m.d.sync += out_sub.eq(0)
                        with m.Else():
                            m.d.sync += out_sub.eq(out_sub + 1)
                    with m.Else():
                        m.d.sync += out_underflow.eq(1)
        return m
