"""``BoardTop``: PLL, accelerator, UART pins and status LEDs for one board.

The accelerator is any component with ports ``rx`` In(1), ``tx`` Out(1) and ``busy``,
``done``, ``error`` Out(1) (:func:`nmaccel.boards.designs.make_design` builds it). The top
requests the board's clock (through the family's PLL from :mod:`nmaccel.hw.common.pll`, which
also constrains the clock at the achieved frequency), UART 0 and the three LEDs listed in the
:class:`~nmaccel.boards.targets.BoardTarget`, and, for an accelerator with ``sdram`` pins,
the board's SDRAM. The UART rx pin goes through a two-flop synchronizer.
"""

from __future__ import annotations

from amaranth.hdl import Elaboratable, Module
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer

from nmaccel.boards.targets import BoardTarget
from nmaccel.hw.common.pll import Ecp5Pll, Ice40Pll, PllSettings

__all__ = ["BoardTop"]


class BoardTop(Elaboratable):
    """Board-level top: ``board``'s PLL at ``pll`` settings around ``accel``."""

    def __init__(self, board: BoardTarget, accel, pll: PllSettings) -> None:
        if not isinstance(board, BoardTarget):
            raise TypeError(f"board must be a BoardTarget, not {type(board).__name__}")
        for name in ("rx", "tx", "busy", "done", "error"):
            if not hasattr(accel, name):
                raise TypeError(f"accel must have a {name!r} port")
        self.board, self.accel, self.pll = board, accel, pll

    def elaborate(self, platform) -> Module:
        m = Module()
        board = self.board
        if board.pll == "pad":
            m.submodules.pll = pll = Ice40Pll(platform.request(board.clock, dir="-"),
                                              self.pll, pad=True)
        else:
            m.submodules.clk_buf = clk = io.Buffer("i", platform.request(board.clock, dir="-"))
            if board.pll == "core":
                m.submodules.pll = pll = Ice40Pll(clk.i, self.pll, pad=False)
            else:
                m.submodules.pll = pll = Ecp5Pll(clk.i, self.pll)
        m.domains.sync = pll.domain          # defined here, where the accelerator sees it

        m.submodules.accel = accel = self.accel
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.submodules.rx_sync = FFSynchronizer(rx.i, accel.rx, init=1)
        m.d.comb += tx.o.eq(accel.tx)

        if hasattr(accel, "sdram"):
            self._sdram(m, platform, accel.sdram)

        requested = {}
        for i, (status, led) in enumerate(zip((accel.busy, accel.done, accel.error),
                                              board.leds)):
            if led[:2] not in requested:
                requested[led[:2]] = platform.request(led[0], led[1], dir="-")
            res = requested[led[:2]]
            m.submodules[f"led_{i}"] = pin = io.Buffer(
                "o", getattr(res, led[2]) if len(led) > 2 else res)
            m.d.comb += pin.o.eq(status)
        return m

    @staticmethod
    def _sdram(m: Module, platform, pins) -> None:
        """The board's SDRAM on the accelerator's controller pins. The chip's clock is the
        core clock inverted (a DDR output of 0 then 1: its rising edge in the middle of the
        core's cycle), so commands and write data launched at a core edge are sampled half a
        cycle later, and read data (tAC after the chip's edge) is captured at the core's next
        edge; clock enable high."""
        res = platform.request("sdram", 0, dir="-")
        m.submodules.sdram_clk = clk = io.DDRBuffer("o", res.clk)
        m.d.comb += [clk.o[0].eq(0), clk.o[1].eq(1)]
        m.submodules.sdram_cke = cke = io.Buffer("o", res.clk_en)
        m.d.comb += cke.o.eq(1)
        # cs, we, ras, cas are active-low pins (the resource inverts): drive the commands'
        # active-high sense
        for name in ("cs", "we", "ras", "cas"):
            m.submodules[f"sdram_{name}"] = pin = io.Buffer("o", getattr(res, name))
            m.d.comb += pin.o.eq(~getattr(pins, f"{name}_n"))
        for name in ("ba", "a", "dqm"):
            m.submodules[f"sdram_{name}"] = pin = io.Buffer("o", getattr(res, name))
            m.d.comb += pin.o.eq(getattr(pins, name))
        m.submodules.sdram_dq = dq = io.Buffer("io", res.dq)
        m.d.comb += [dq.o.eq(pins.dq_o), dq.oe.eq(pins.dq_oe), pins.dq_i.eq(dq.i)]
