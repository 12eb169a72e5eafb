"""MAC path of the STA core: operand reads → :class:`UnifiedMacArray` → :class:`DrainUnit`.

A beat from the controller names its operand words; they are read (WBUF, or ABUF columns as
dense weight rows for dense × dense; ABUF, or SBUF for probabilities) and enter the array
with the beat one cycle later. The tile record rides a delay line beside the array and reaches
the drain unit in the cycle the array captures the tile into its shadow registers; the drain
unit then emits the tile's rows, one per cycle, to the post stage.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.sta.array import UnifiedMacArray
from nmaccel.hw.sta.buffers import read_signature
from nmaccel.hw.sta.drain import DrainUnit
from nmaccel.hw.sta.isa import ASrc, Mode, WSrc, param_layout
from nmaccel.hw.sta.layouts import beat_layout, record_layout, row_layout, tag_layout
from nmaccel.spec import sta_isa, sta_timing
from nmaccel.spec.config import StaConfig

__all__ = ["MacPath"]


class MacPath(wiring.Component):
    """Operand reads, the MAC array, the tile-record delay line and the drain unit.

    Parameters
    ----------
    config : StaConfig

    Attributes
    ----------
    beats : In(stream.Signature(beat_layout, always_ready=True))
        GEMM beats, at most one per cycle. The operand addresses are read whether or not a
        beat is valid; the record is sampled every cycle.
    mode, wsrc, asrc : In(Mode), In(WSrc), In(ASrc)
        The current command's GEMM mode and operand sources.
    wbuf, abuf : In(ReadPort.Signature)
        WBUF and ABUF reads of the W and A operands (shared with the host).
    abuf_w : In(ReadPort.Signature)
        Second ABUF read port: W operand from ABUF (dense × dense).
    sbuf : In(ReadPort.Signature)
        SBUF read: A operand from the softmax probabilities.
    pbuf : In(ReadPort.Signature)
        The drain unit's PBUF read (bias, mult, shift of each row).
    rows : Out(stream.Signature(row_layout, always_ready=True))
        Drained rows with their tile's tag.
    busy : Out(1)
        A tile-completing beat is between issue and the drain, or the drain unit is busy.
    meta_err : Out(1)
        Sticky N:M metadata error of the array; ``clear_err`` clears it.

    Latency: a beat issued in cycle ``t`` enters the array in ``t + 1``; a tile's last beat in
    ``t`` starts the drain in ``t + capture_delay`` (:func:`~nmaccel.spec.sta_timing.
    capture_delay`), and row ``r`` leaves on ``rows`` in ``t + capture_delay + r +
    DRAIN_LATENCY``. Throughput: one beat per cycle; tile-completing beats at least ``rows``
    cycles apart (the controller enforces it).
    """

    def __init__(self, config: StaConfig) -> None:
        StaConfig.require(config)
        self.config = config
        #: cycles from a beat's issue to the drain start of its tile
        self.capture_delay = sta_timing.capture_delay(config)
        super().__init__({
            "beats": In(stream.Signature(beat_layout(config), always_ready=True)),
            "mode": In(Mode), "wsrc": In(WSrc), "asrc": In(ASrc),
            "wbuf": In(read_signature(config, "WBUF")),
            "abuf": In(read_signature(config, "ABUF")),
            "abuf_w": In(read_signature(config, "ABUF")),
            "sbuf": In(read_signature(config, "SBUF")),
            "pbuf": In(read_signature(config, "PBUF")),
            "rows": Out(stream.Signature(row_layout(config), always_ready=True)),
            "busy": Out(1),
            "meta_err": Out(1),
            "clear_err": In(1),
        })

    def _w_from_abuf(self, m: Module, slice_r, width: int) -> Signal:
        """Dense weight word from the ABUF read: column ``r``'s slice becomes row ``r``'s."""
        cfg = self.config
        L, AB, wb = cfg.lanes, cfg.act_bits, cfg.weight_bits
        word_bits = L * (cfg.weight_bits + cfg.index_bits)
        w_from_a = Signal(width)
        for r in range(min(cfg.rows, cfg.cols)):
            for j in range(L):
                with m.Switch(slice_r):
                    for sli in range(sta_isa.dense_ratio(cfg)):
                        with m.Case(sli):
                            lo = (r * cfg.acts_per_cycle + sli * L + j) * AB
                            m.d.comb += w_from_a[r * word_bits + j * wb:
                                                 r * word_bits + (j + 1) * wb].eq(
                                self.abuf_w.data[lo:lo + AB].as_signed())
        return w_from_a

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.config
        m.submodules.array = array = UnifiedMacArray(cfg)
        m.submodules.drain = drain = DrainUnit(cfg, tag_bits=tag_layout(cfg).size)
        beat = self.beats.payload

        # Operand reads; the beat enters the array with the read data one cycle later.
        m.d.comb += [self.wbuf.addr.eq(beat.w_addr), self.abuf_w.addr.eq(beat.w_addr),
                     self.abuf.addr.eq(beat.a_addr), self.sbuf.addr.eq(beat.a_addr)]
        valid_r, first_r, last_r = Signal(), Signal(), Signal()
        slice_r = Signal.like(beat.slice)
        m.d.sync += [valid_r.eq(self.beats.valid), first_r.eq(self.beats.valid & beat.first),
                     last_r.eq(self.beats.valid & beat.last), slice_r.eq(beat.slice)]
        w_from_a = self._w_from_abuf(m, slice_r, len(array.w_word))
        w_abuf = self.wsrc == WSrc.ABUF
        a_sbuf = self.asrc == ASrc.SBUF
        a_data = Mux(a_sbuf, self.sbuf.data, self.abuf.data)
        m.d.comb += [
            array.valid.eq(valid_r), array.clear.eq(first_r), array.last.eq(last_r),
            array.mode.eq(self.mode == Mode.DENSE), array.slice.eq(slice_r),
            array.a_unsigned.eq(a_sbuf),
            array.w_word.eq(Mux(w_abuf, w_from_a, self.wbuf.data[:len(array.w_word)])),
            array.a_word.eq(a_data[:len(array.a_word)]),
            array.clear_err.eq(self.clear_err), self.meta_err.eq(array.meta_err),
        ]

        # The tile record rides beside the array; valid only with a tile's last beat.
        record = Signal(record_layout(cfg))
        tile_done = Signal()
        m.d.comb += [record.eq(beat.record), tile_done.eq(self.beats.valid & beat.last)]
        in_flight = []
        for i in range(self.capture_delay):
            record_next = Signal(record_layout(cfg), name=f"record{i}")
            done_next = Signal(name=f"tile_done{i}")
            m.d.sync += [record_next.eq(record), done_next.eq(tile_done)]
            record, tile_done = record_next, done_next
            in_flight.append(done_next)
        assert self.capture_delay == 1 + array.latency + 1, "array latency differs from the spec"

        m.d.comb += [
            drain.start.eq(array.captured),
            drain.o_addr.eq(record.obuf_addr), drain.p_addr.eq(record.pbuf_addr),
            drain.osel.eq(record.osel), drain.tag.eq(record.tag),
            array.row_sel.eq(drain.row_sel), drain.row.eq(array.row),
            self.pbuf.addr.eq(drain.p_addr_o),
            drain.p_data.eq(self.pbuf.data[:param_layout(cfg).size]),
            self.rows.valid.eq(drain.o_wr_en), self.rows.payload.lanes.eq(drain.o_lanes),
            self.rows.payload.row.eq(drain.o_row), self.rows.payload.tag.eq(drain.o_tag),
            self.busy.eq(Cat(*in_flight).any() | drain.busy),
        ]
        return m
