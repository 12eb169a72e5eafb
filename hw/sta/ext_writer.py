"""``ExtWriter``: host writes into the external SDRAM (how the host puts a model there once).

The host sets the SDRAM word address with CSR ``EXT_ADDR`` and then writes data with
``EXT_DATA`` (the 32-bit word as ``32 / data_bits`` SDRAM words, the lowest bits first) or
``EXT_WORD`` (one SDRAM word, the write's lowest bits); each advances the address by the words
written (:mod:`nmaccel.spec.sta_isa`). :class:`~nmaccel.hw.sta.host_port.HostPort` passes
those writes here; the writer turns each into SDRAM write requests, one per cycle while the
controller takes them.

Ports
    ``set_addr`` In  stream of the SDRAM word address (always ready): EXT_ADDR.
    ``data``     In  stream ``{data: 32, words}``: EXT_DATA / EXT_WORD (``words`` SDRAM
                 words of ``data``); ready when the previous write's words are all issued.
    ``mem``      Out stream of :func:`~nmaccel.hw.common.sdram.request_layout` (writes).
    ``addr``     Out: the address of the next word (CSR EXT_ADDR reads it).
    ``busy``     Out: words are waiting to be issued.

Throughput: one SDRAM word per cycle while ``mem`` is ready; a 32-bit write takes
``32 / data_bits`` cycles of the writer.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.sdram import request_layout
from nmaccel.spec.sdram import SdramTiming

__all__ = ["ExtWriter", "ext_data_layout"]


def ext_data_layout(timing: SdramTiming) -> data.StructLayout:
    """An EXT_DATA / EXT_WORD write: the 32-bit data and how many SDRAM words it holds."""
    return data.StructLayout({"data": unsigned(32),
                              "words": unsigned((32 // timing.data_bits).bit_length())})


class ExtWriter(wiring.Component):
    """Host data → SDRAM write requests (module docstring).

    Parameters
    ----------
    timing
        The SDRAM's timing (its address and data widths); ``data_bits`` must divide 32.
    """

    def __init__(self, timing: SdramTiming):
        if 32 % timing.data_bits:
            raise ValueError(f"the SDRAM's data_bits must divide 32, not {timing.data_bits}")
        self.timing = timing
        super().__init__({
            "set_addr": In(stream.Signature(unsigned(timing.addr_bits), always_ready=True)),
            "data": In(stream.Signature(ext_data_layout(timing))),
            "mem": Out(stream.Signature(request_layout(timing))),
            "addr": Out(timing.addr_bits),
            "busy": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        t = self.timing
        held = Signal(32)                            # the write's words still to issue
        left = Signal.like(self.data.payload.words)
        m.d.comb += [self.busy.eq(left != 0), self.data.ready.eq(left == 0)]
        with m.If(self.set_addr.valid):
            m.d.sync += self.addr.eq(self.set_addr.payload)
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [held.eq(self.data.payload.data), left.eq(self.data.payload.words)]
        m.d.comb += [self.mem.valid.eq(left != 0), self.mem.payload.addr.eq(self.addr),
                     self.mem.payload.write.eq(1),
                     self.mem.payload.data.eq(held[:t.data_bits])]
        with m.If(self.mem.valid & self.mem.ready):
            m.d.sync += [self.addr.eq(self.addr + 1), held.eq(held >> t.data_bits),
                         left.eq(left - 1)]
        return m
