"""``WeightFetch``: copies buffer entries from external SDRAM into an on-chip buffer (the
data path of the STA's weight fetch; the core does not use it yet).

One request (:func:`fetch_layout`) names ``entries`` buffer entries at SDRAM word address
``ext_addr`` and their place ``base`` in the buffer. Each entry is ``words_per_entry``
consecutive SDRAM words, the first word holding the entry's lowest bits (little-endian, like
every other word layout of the kit; :func:`pack_entries` is the host-side layout). The engine
issues the reads back to back (one per cycle while the controller takes them), assembles each
entry from the answers and writes it to ``wr`` (a buffer write port, always ready) in the cycle
after its last word arrives.

Ports
    ``req``   In  stream of :func:`fetch_layout`: taken when the engine is idle.
    ``mem``   Out stream of :func:`~nmaccel.hw.common.sdram.request_layout`: to the SDRAM
              controller's ``cmd`` (reads only).
    ``mem_rdata`` In stream of the SDRAM word: the controller's ``rdata``.
    ``wr``    Out stream ``{addr, data}``, always ready: buffer entry writes.
    ``busy``  Out: a request is in progress (until its last entry is written).

Timing
    Cycles from the request to the last write: the SDRAM stream's
    (:func:`nmaccel.model.sdram_cycles.stream_read_cycles` of ``entries * words_per_entry``
    words) plus 2 (the request's register and the entry write).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.sdram import request_layout
from nmaccel.spec.sdram import SdramTiming

__all__ = ["WeightFetch", "fetch_layout", "pack_entries", "words_per_entry"]


def words_per_entry(timing: SdramTiming, entry_bits: int) -> int:
    return -(-entry_bits // timing.data_bits)


def fetch_layout(timing: SdramTiming, addr_bits: int, max_entries: int) -> data.StructLayout:
    return data.StructLayout({"ext_addr": unsigned(timing.addr_bits),
                              "base": unsigned(addr_bits),
                              "entries": unsigned(max(1, max_entries.bit_length()))})


def pack_entries(timing: SdramTiming, entry_bits: int, entries) -> list[int]:
    """The SDRAM words that hold ``entries`` (integers of ``entry_bits`` bits), in order."""
    wpe, w = words_per_entry(timing, entry_bits), timing.data_bits
    out = []
    for e in entries:
        e = int(e)
        if e < 0 or e >> entry_bits:
            raise ValueError(f"entry {e:#x} does not fit {entry_bits} bits")
        out += [(e >> (k * w)) & ((1 << w) - 1) for k in range(wpe)]
    return out


class WeightFetch(wiring.Component):
    """SDRAM → buffer copy engine (module docstring).

    Parameters
    ----------
    timing
        The SDRAM's timing (its address and data widths).
    entry_bits
        Width of one buffer entry.
    addr_bits
        Width of a buffer entry address.
    max_entries
        Most entries one request may copy.
    """

    def __init__(self, timing: SdramTiming, entry_bits: int, addr_bits: int,
                 max_entries: int):
        for name, v in (("entry_bits", entry_bits), ("addr_bits", addr_bits),
                        ("max_entries", max_entries)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self.timing, self.entry_bits, self.addr_bits = timing, entry_bits, addr_bits
        self.max_entries = max_entries
        self.wpe = words_per_entry(timing, entry_bits)
        super().__init__({
            "req": In(stream.Signature(fetch_layout(timing, addr_bits, max_entries))),
            "mem": Out(stream.Signature(request_layout(timing))),
            "mem_rdata": In(stream.Signature(unsigned(timing.data_bits))),
            "wr": Out(stream.Signature(data.StructLayout({"addr": unsigned(addr_bits),
                                                          "data": unsigned(entry_bits)}),
                                       always_ready=True)),
            "busy": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        t, wpe = self.timing, self.wpe
        total_bits = (self.max_entries * wpe).bit_length()
        to_issue = Signal(total_bits)          # read requests still to send
        next_addr = Signal(t.addr_bits)
        to_write = Signal(self.max_entries.bit_length())   # entries still to write
        wr_addr = Signal(self.addr_bits)
        word_no = Signal(range(max(wpe, 2)))   # answers gathered for the current entry
        gather = Signal(wpe * t.data_bits)
        entry_ready = Signal()

        m.d.comb += [self.busy.eq((to_write != 0) | entry_ready),
                     self.req.ready.eq(~self.busy)]
        with m.If(self.req.valid & self.req.ready):
            m.d.sync += [to_issue.eq(self.req.payload.entries * wpe),
                         next_addr.eq(self.req.payload.ext_addr),
                         to_write.eq(self.req.payload.entries),
                         wr_addr.eq(self.req.payload.base), word_no.eq(0)]

        # reads, back to back
        m.d.comb += [self.mem.valid.eq(to_issue != 0),
                     self.mem.payload.addr.eq(next_addr), self.mem.payload.write.eq(0)]
        with m.If(self.mem.valid & self.mem.ready):
            m.d.sync += [to_issue.eq(to_issue - 1), next_addr.eq(next_addr + 1)]

        # answers: shift in from the top, the first word ends in the lowest bits
        m.d.comb += self.mem_rdata.ready.eq(1)
        m.d.sync += entry_ready.eq(0)
        with m.If(self.mem_rdata.valid):
            m.d.sync += gather.eq(Cat(gather[t.data_bits:], self.mem_rdata.payload))
            with m.If(word_no == wpe - 1):
                m.d.sync += [word_no.eq(0), entry_ready.eq(1)]
            with m.Else():
                m.d.sync += word_no.eq(word_no + 1)
        m.d.comb += [self.wr.valid.eq(entry_ready), self.wr.payload.addr.eq(wr_addr),
                     self.wr.payload.data.eq(gather[:self.entry_bits])]
        with m.If(entry_ready):
            m.d.sync += [wr_addr.eq(wr_addr + 1), to_write.eq(to_write - 1)]
        return m
