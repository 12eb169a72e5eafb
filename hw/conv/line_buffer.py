"""Line buffer of the conv engine: ``line_slots`` rows of ``max_width`` pixels × input tiles.

Row ``r`` of the input lives in slot ``r mod line_slots`` (``line_slots`` is a power of two,
so the slot is the low bits of ``r``); word ``(slot, x, it)`` holds the ``p_in`` channel
lanes of tile ``it`` of pixel ``x``. The engine fills the rows an output row needs before it
computes that row, so ``line_slots ≥ k`` rows suffice for stride 1 and 2.

Ports
    ``w_en``, ``w_row``, ``w_x``, ``w_it``, ``w_data``  -- write one word (row low bits)
    ``r_row``, ``r_x``, ``r_it``                        -- read address
    ``r_data``  Out: the word at the read address sampled on the previous tick
Latency: reads 1 cycle (synchronous, not transparent); one read and one write per cycle.
With ``max_width`` and ``max_in_tiles`` powers of two (:attr:`LineBuffer.any_address`) the
word address is ``Cat(it, x, row)``, otherwise ``(row·max_width + x)·max_in_tiles + it``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from nmaccel.spec.config import ConvConfig, clog2

__all__ = ["LineBuffer"]


class LineBuffer(wiring.Component):
    """Row-slotted activation buffer (see the module docstring)."""

    def __init__(self, config: ConvConfig) -> None:
        if not isinstance(config, ConvConfig):
            raise TypeError(f"config must be a ConvConfig, not {type(config).__name__}")
        self.config = config
        self.word = data.ArrayLayout(unsigned(config.data_bits), config.p_in)
        sb = max(clog2(config.line_slots), 1)
        xb = max(clog2(config.max_width), 1)
        tb = max(clog2(config.max_in_tiles), 1)
        super().__init__({
            "w_en": In(1), "w_row": In(sb), "w_x": In(xb), "w_it": In(tb),
            "w_data": In(self.word),
            "r_row": In(sb), "r_x": In(xb), "r_it": In(tb),
            "r_data": Out(self.word),
        })

    @property
    def any_address(self) -> bool:
        """Whether every value of the address ports is a word of the buffer (``max_width`` and
        ``max_in_tiles`` powers of two: the address is the ports' bits side by side, no
        adders), so a reader need not steer padded taps to a valid address."""
        cfg = self.config
        return all(v & (v - 1) == 0 for v in (cfg.max_width, cfg.max_in_tiles))

    def _addr(self, row, x, it):
        cfg = self.config
        if self.any_address:
            return Cat(it, x, row)
        return (row * (cfg.max_width * cfg.max_in_tiles) + x * cfg.max_in_tiles + it)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.mem = mem = Memory(shape=self.word, depth=cfg.line_depth, init=[])
        wp = mem.write_port()
        rp = mem.read_port(domain="sync")
        m.d.comb += [
            wp.addr.eq(self._addr(self.w_row, self.w_x, self.w_it)),
            wp.data.eq(self.w_data),
            wp.en.eq(self.w_en),
            rp.addr.eq(self._addr(self.r_row, self.r_x, self.r_it)),
            self.r_data.eq(rp.data),
        ]
        return m
