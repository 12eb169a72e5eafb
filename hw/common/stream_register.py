"""``StreamRegister``: one register stage on a stream, every output a register.

A one-entry buffer between a producer and a consumer that sit far apart on a large FPGA (the
UART bridge and a core's host port on the ECP5-85F: the bridge → host-port paths were the
whole-chip builds' critical paths, 11 of their 14.4 ns routing). It takes a beat when empty
and offers it until it is taken, so no combinational path crosses it in either direction:
``o.valid`` and ``o.payload`` are flip-flops, ``i.ready`` one LUT of two flip-flops (its own
``full`` and ``hold``, which the caller drives from a register).

Ports
    ``i`` In(stream of ``shape``): the producer's side.
    ``o`` Out(stream of ``shape``): the consumer's side.
    ``hold`` In(1): while 1, ``i`` takes nothing (a caller's ordering rule: the host read
    stage holds while a host write is still in its own stage, so a read never overtakes a
    write, see :class:`~nmaccel.boards.uart_top.UartTop`).
    ``full`` Out(1): a beat is in the stage (``o.valid``).

Latency and throughput
    A beat taken on ``i`` at clock tick ``t`` is offered on ``o`` from tick ``t`` on (one cycle
    later than without the stage). One beat every two cycles at most: the stage takes the
    next beat the cycle after its beat left (half rate, which the UART bridge's one request per
    three or more cycles never reaches).
"""

from __future__ import annotations

from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StreamRegister"]


class StreamRegister(wiring.Component):
    """One registered, half-rate stage on a stream of ``shape`` (see the module docstring).

    Parameters
    ----------
    shape : shape-castable
        The payload's shape (a ``data.StructLayout`` for the host streams).
    """

    def __init__(self, shape) -> None:
        try:
            Shape.cast(shape)
        except TypeError as exc:
            raise TypeError(f"shape must be shape-castable, not {shape!r}") from exc
        self.shape = shape
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape)),
                          "hold": In(1), "full": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        full = Signal()
        payload = Signal(self.shape)
        taking = Signal()                     # ``i`` hands over a beat on this tick
        m.d.comb += [
            self.i.ready.eq(~full & ~self.hold),
            taking.eq(self.i.valid & self.i.ready),
            self.o.valid.eq(full),
            self.o.payload.eq(payload),
            self.full.eq(full),
        ]
        with m.If(taking):
            m.d.sync += [full.eq(1), payload.eq(self.i.payload)]
        with m.Elif(self.o.ready):
            m.d.sync += full.eq(0)
        return m
