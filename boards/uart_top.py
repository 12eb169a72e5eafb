"""``StaUartTop``: the STA core behind the UART bridge, the design a board runs.

No clocking here: a board top (PLL, pins) instantiates it in its ``sync`` domain.
:func:`verilog` gives the Verilog that :mod:`nmaccel.boards.simulated` builds.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.bridge import UartBridge
from nmaccel.hw.common.sdram import pins_signature
from nmaccel.hw.sta.core import StaCore
from nmaccel.spec.config import StaConfig

__all__ = ["TOPLEVEL", "StaUartTop", "verilog"]

TOPLEVEL = "sta_uart_top"


class StaUartTop(wiring.Component):
    """:class:`~nmaccel.hw.common.bridge.UartBridge` + :class:`~nmaccel.hw.sta.core.StaCore`.

    Ports: ``rx`` In(1) (from the host's TX), ``tx`` Out(1) (to the host's RX), ``busy``,
    ``done``, ``error`` Out(1) (the core's run state, for LEDs), and with external memory
    ``sdram`` (the core's SDRAM pins, :func:`~nmaccel.hw.common.sdram.pins_signature`).
    ``divisor`` is clock cycles per UART bit, ``timeout`` the bridge's inter-byte timeout in
    cycles.
    """

    def __init__(self, config: StaConfig, divisor: int, timeout: int | None = None) -> None:
        # The bridge validates config, divisor and timeout (with their messages).
        self.bridge = UartBridge(config, divisor, timeout=timeout)
        self.core = StaCore(config)
        self.config, self.divisor, self.timeout = config, divisor, self.bridge.timeout
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            **({"sdram": Out(pins_signature(config.sdram_timing))}
               if config.sdram_timing is not None else {}),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.bridge = bridge = self.bridge
        m.submodules.core = core = self.core
        wiring.connect(m, bridge.wr, core.wr)
        wiring.connect(m, bridge.rd, core.rd)
        wiring.connect(m, core.rd_data, bridge.rd_data)
        m.d.comb += [bridge.rx.eq(self.rx), self.tx.eq(bridge.tx), self.busy.eq(core.busy),
                     self.done.eq(core.done), self.error.eq(core.error)]
        if self.config.sdram_timing is not None:
            wiring.connect(m, core.sdram, wiring.flipped(self.sdram))
        return m


def verilog(config: StaConfig, divisor: int, timeout: int | None = None,
            name: str = TOPLEVEL) -> str:
    """Verilog of :class:`StaUartTop` (ports ``clk``, ``rst``, ``rx``, ``tx``, ``busy``,
    ``done``, ``error``)."""
    from amaranth.back import verilog as back
    top = StaUartTop(config, divisor, timeout=timeout)
    return back.convert(top, name=name)
