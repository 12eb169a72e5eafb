"""``ConvUartTop``: the conv engine (:class:`~nmaccel.hw.conv.host.ConvHost`) behind the UART
bridge, the conv design a board runs; the host side is :class:`~nmaccel.boards.conv_driver.
ConvBoard`.

No clocking here: a board top (PLL, pins) instantiates it in its ``sync`` domain.
:func:`verilog` gives the Verilog that :mod:`nmaccel.boards.simulated` builds.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.bridge import UartBridge
from nmaccel.hw.conv.host import ConvHost
from nmaccel.spec.config import ConvConfig

__all__ = ["TOPLEVEL", "ConvUartTop", "verilog"]

TOPLEVEL = "conv_uart_top"


class ConvUartTop(wiring.Component):
    """:class:`~nmaccel.hw.common.bridge.UartBridge` + :class:`~nmaccel.hw.conv.host.ConvHost`.

    Ports: ``rx`` In(1) (from the host's TX), ``tx`` Out(1) (to the host's RX), ``busy``,
    ``done``, ``error`` Out(1) (the engine runs; STATUS done; a sticky host-port error: for
    LEDs). ``divisor`` is clock cycles per UART bit, ``timeout`` the bridge's inter-byte
    timeout in cycles.
    """

    def __init__(self, config: ConvConfig, divisor: int, timeout: int | None = None) -> None:
        ConvConfig.require(config)
        self.bridge = UartBridge(config, divisor, timeout=timeout)
        self.host = ConvHost(config)
        self.config, self.divisor, self.timeout = config, divisor, self.bridge.timeout
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1),
                          "done": Out(1), "error": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.bridge = bridge = self.bridge
        m.submodules.host = host = self.host
        wiring.connect(m, bridge.wr, host.wr)
        wiring.connect(m, bridge.rd, host.rd)
        wiring.connect(m, host.rd_data, bridge.rd_data)
        m.d.comb += [bridge.rx.eq(self.rx), self.tx.eq(bridge.tx), self.busy.eq(host.busy),
                     self.done.eq(host.done), self.error.eq(host.error)]
        return m


def verilog(config: ConvConfig, divisor: int, timeout: int | None = None,
            name: str = TOPLEVEL) -> str:
    """Verilog of :class:`ConvUartTop` (ports ``clk``, ``rst``, ``rx``, ``tx``, ``busy``,
    ``done``, ``error``)."""
    from amaranth.back import verilog as back
    return back.convert(ConvUartTop(config, divisor, timeout=timeout), name=name)
