"""The designs a board runs: a core with a host port behind the UART bridge.

``StaUartTop``: :class:`~nmaccel.hw.sta.core.StaCore` behind the bridge (the host side is
:class:`~nmaccel.boards.driver.StaBoard`); ``ConvUartTop``: the conv engine behind its host
port, :class:`~nmaccel.hw.conv.host.ConvHost` (the host side is
:class:`~nmaccel.boards.conv_driver.ConvBoard`). Both are :class:`UartTop`: the same bridge,
wired the same way.

No clocking here: a board top (PLL, pins) instantiates them in its ``sync`` domain.
:func:`verilog` gives the Verilog that :mod:`nmaccel.boards.simulated` builds.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.bridge import UartBridge
from nmaccel.hw.common.sdram import pins_signature
from nmaccel.hw.common.stream_register import StreamRegister
from nmaccel.spec.config import ConvConfig, StaConfig

__all__ = ["TOPLEVEL", "CONV_TOPLEVEL", "UartTop", "StaUartTop", "ConvUartTop", "toplevel",
           "verilog"]

TOPLEVEL = "sta_uart_top"
CONV_TOPLEVEL = "conv_uart_top"


class UartTop(wiring.Component):
    """:class:`~nmaccel.hw.common.bridge.UartBridge` + ``core`` (any component with a host
    port: ``wr``, ``rd``, ``rd_data`` streams and ``busy``, ``done``, ``error``).

    Ports: ``rx`` In(1) (from the host's TX), ``tx`` Out(1) (to the host's RX), ``busy``,
    ``done``, ``error`` Out(1) (the core's run state, for LEDs), plus ``extra`` members a
    subclass passes through. ``divisor`` is clock cycles per UART bit, ``timeout`` the
    bridge's inter-byte timeout in cycles (the bridge validates config, divisor and timeout).

    ``host_stage``: a :class:`~nmaccel.hw.common.stream_register.StreamRegister` on each of
    the three host streams (``wr``, ``rd``, ``rd_data``), so no combinational path runs
    between the bridge and the core (a large FPGA places them far apart: on the ECP5-85F the
    bridge → host-port paths were the whole-chip critical paths). A request then reaches the
    core a cycle later; the read stage holds while a write is still in the write stage, so a
    read never overtakes the write the bridge has already acknowledged (the bridge replies
    to a WRITE once the stage took its last word). Off on the iCE40UP5K (its ~100 flip-flops
    do not fit beside the lean STA). The board target chooses it
    (:attr:`~nmaccel.boards.targets.BoardTarget.host_stage`).
    """

    def __init__(self, config, core, divisor: int, timeout: int | None = None,
                 extra: dict | None = None, timer_dsp: bool = False,
                 host_stage: bool = False) -> None:
        if not isinstance(host_stage, bool):
            raise TypeError(f"host_stage must be a bool, not {host_stage!r}")
        self.bridge = UartBridge(config, divisor, timeout=timeout, timer_dsp=timer_dsp)
        self.core = core
        self.config, self.divisor, self.timeout = config, divisor, self.bridge.timeout
        self.host_stage = host_stage
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1),
                          "done": Out(1), "error": Out(1), **(extra or {})})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.bridge = bridge = self.bridge
        m.submodules.core = core = self.core
        if self.host_stage:
            streams = {"wr": (bridge.wr, core.wr), "rd": (bridge.rd, core.rd),
                       "rd_data": (core.rd_data, bridge.rd_data)}
            stages = {}
            for name, (source, sink) in streams.items():
                stage = StreamRegister(source.payload.shape())
                m.submodules[f"{name}_stage"] = stages[name] = stage
                wiring.connect(m, source, stage.i)
                wiring.connect(m, stage.o, sink)
            m.d.comb += stages["rd"].hold.eq(stages["wr"].full)
        else:
            wiring.connect(m, bridge.wr, core.wr)
            wiring.connect(m, bridge.rd, core.rd)
            wiring.connect(m, core.rd_data, bridge.rd_data)
        m.d.comb += [bridge.rx.eq(self.rx), self.tx.eq(bridge.tx), self.busy.eq(core.busy),
                     self.done.eq(core.done), self.error.eq(core.error)]
        return m


class StaUartTop(UartTop):
    """The STA core behind the bridge; with external memory also ``sdram`` (the core's SDRAM
    pins, :func:`~nmaccel.hw.common.sdram.pins_signature`)."""

    def __init__(self, config: StaConfig, divisor: int, timeout: int | None = None,
                 host_stage: bool = False) -> None:
        from nmaccel.hw.sta_lean import sta_core
        StaConfig.require(config)
        sdram = ({"sdram": Out(pins_signature(config.sdram_timing))}
                 if config.sdram_timing is not None else {})
        # the lean STA leaves an SB_MAC16 for the bridge's timer (the conv engine uses all 8)
        super().__init__(config, sta_core(config), divisor, timeout, sdram,
                         timer_dsp=bool(config.lean), host_stage=host_stage)

    def elaborate(self, platform) -> Module:
        m = super().elaborate(platform)
        if self.config.sdram_timing is not None:
            wiring.connect(m, self.core.sdram, wiring.flipped(self.sdram))
        return m


class ConvUartTop(UartTop):
    """The conv engine behind its host port (:class:`~nmaccel.hw.conv.host.ConvHost`) and the
    bridge; ``error`` is a sticky host-port misuse flag."""

    def __init__(self, config: ConvConfig, divisor: int, timeout: int | None = None,
                 host_stage: bool = False) -> None:
        from nmaccel.hw.conv.host import ConvHost
        ConvConfig.require(config)
        super().__init__(config, ConvHost(config), divisor, timeout, host_stage=host_stage)


def toplevel(config) -> str:
    """The Verilog top module name of ``config``'s design."""
    return CONV_TOPLEVEL if isinstance(config, ConvConfig) else TOPLEVEL


def verilog(config, divisor: int, timeout: int | None = None, name: str | None = None,
            host_stage: bool = False) -> str:
    """Verilog of :class:`StaUartTop` or :class:`ConvUartTop` (by ``config``'s type; ports
    ``clk``, ``rst``, ``rx``, ``tx``, ``busy``, ``done``, ``error``)."""
    from amaranth.back import verilog as back
    top = (ConvUartTop if isinstance(config, ConvConfig) else StaUartTop)(
        config, divisor, timeout=timeout, host_stage=host_stage)
    return back.convert(top, name=name or toplevel(config))
