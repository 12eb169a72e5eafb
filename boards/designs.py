"""The accelerator a board build puts behind its pins, by design name.

``sta``
    ``StaUartTop(cfg, divisor)`` (:mod:`nmaccel.boards.uart_top`: UART bridge + ``StaCore``),
    the design the host driver talks to. Until that module exists in the checkout, the bare
    ``StaCore`` in a :class:`~nmaccel.boards.serial_ports.SerialPortShell` (same logic, no
    host protocol); ``host_link`` in the result says which one was built.
``conv``
    ``ConvUartTop(cfg, divisor)`` (:mod:`nmaccel.boards.uart_top`: the same UART bridge +
    the engine behind its host port, :class:`~nmaccel.hw.conv.host.ConvHost`), the design
    :class:`~nmaccel.boards.conv_driver.ConvBoard` talks to. (Builds before it measured the
    bare engine in a :class:`~nmaccel.boards.serial_ports.SerialPortShell`, ``host_link``
    ``serial-shell`` in their records.)

The UART divisor is ``clk_freq / baud`` rounded (``uart_divisor`` checks the bit-time error).
"""

from __future__ import annotations

import importlib.util
import pathlib
from dataclasses import dataclass

from nmaccel.boards.serial_ports import SerialPortShell
from nmaccel.boards.targets import BoardError
from nmaccel.spec.config import (
    ConfigError,
    ConvConfig,
    StaConfig,
    conv_preset,
    sta_preset,
)

__all__ = ["BuiltDesign", "design_config", "make_design", "uart_divisor_for"]


@dataclass
class BuiltDesign:
    component: object       # rx/tx/busy/done/error component
    config: object          # StaConfig | ConvConfig
    host_link: str          # "uart" | "uart+stage" (a register stage on the host streams)
    #                         | "serial-shell"
    divisor: int | None


def design_config(design: str, preset: str):
    """The hardware config of ``design`` for ``preset``: a preset name, or the path of a config
    JSON file (as ``nmaccel config`` prints it). Clear errors for unknown names/bad files."""
    cls = StaConfig if design == "sta" else ConvConfig
    try:
        if str(preset).endswith(".json"):
            try:
                text = pathlib.Path(preset).read_text()
            except OSError as exc:
                raise BoardError(f"preset: cannot read config file {preset!r}: "
                                 f"{exc.strerror}") from None
            return cls.from_json(text)
        return sta_preset(preset) if design == "sta" else conv_preset(preset)
    except ConfigError as exc:
        raise BoardError(f"preset: {exc}") from None


def uart_divisor_for(clk_freq: float, baud: int) -> int:
    try:
        from nmaccel.hw.common.uart import uart_divisor
    except ImportError:                                  # pragma: no cover - bridge not there
        divisor = round(clk_freq / baud)
        if divisor < 4:
            raise BoardError(f"baud {baud} is too fast for a {clk_freq / 1e6:g} MHz "
                             "clock") from None
        return divisor
    try:
        return uart_divisor(clk_freq, baud)
    except ValueError as exc:
        raise BoardError(str(exc)) from None


def _uart_top_available() -> bool:
    try:
        return importlib.util.find_spec("nmaccel.boards.uart_top") is not None
    except ImportError:                                  # pragma: no cover
        return False


def make_design(design: str, config, clk_freq: float, baud: int,
                host_stage: bool = False) -> BuiltDesign:
    """Build the component for ``design`` with ``config`` at ``clk_freq`` Hz; ``host_stage``:
    register stages between the UART bridge and the core (:class:`~nmaccel.boards.uart_top.
    UartTop`; the board target's :attr:`~nmaccel.boards.targets.BoardTarget.host_stage`)."""
    link = "uart+stage" if host_stage else "uart"
    if design == "sta":
        if not isinstance(config, StaConfig):
            raise TypeError(f"config must be a StaConfig for design 'sta', not {config!r}")
        divisor = uart_divisor_for(clk_freq, baud)
        if _uart_top_available():
            from nmaccel.boards.uart_top import StaUartTop
            return BuiltDesign(StaUartTop(config, divisor, host_stage=host_stage), config,
                               link, divisor)
        from nmaccel.hw.sta.core import StaCore
        return BuiltDesign(SerialPortShell(StaCore(config)), config, "serial-shell", None)
    if design == "conv":
        if not isinstance(config, ConvConfig):
            raise TypeError(f"config must be a ConvConfig for design 'conv', not {config!r}")
        from nmaccel.boards.uart_top import ConvUartTop
        divisor = uart_divisor_for(clk_freq, baud)
        return BuiltDesign(ConvUartTop(config, divisor, host_stage=host_stage), config, link,
                           divisor)
    raise BoardError(f"unknown design {design!r}; expected one of: sta, conv")
