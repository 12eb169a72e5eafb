"""``SerialPortShell``: any component's ports on two registered serial pins (for synthesis).

Used to measure a design on a board when it has no host bridge yet (the conv engine): every
input port bit of the wrapped component is driven from a register of a shift chain fed by
pin ``rx``; every output port bit is captured into a shift chain that shifts out on ``tx``.
Nothing is left unobservable or uncontrollable, so synthesis cannot remove logic, and every
port is registered so pin timing does not mask the design's own paths. It is **not** a host
protocol: to drive the design from a computer use a real bridge.

Ports
    ``rx`` In(1): serial data into the input chain (one bit per cycle).
    ``tx`` Out(1): serial data out of the output chain; it reloads every ``len(out)`` cycles.
    ``busy``, ``done``, ``error`` Out(1): the wrapped component's ports of the same name
    (0 where it has none), registered.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SerialPortShell"]

_STATUS = ("busy", "done", "error")


class SerialPortShell(wiring.Component):
    """The ports of ``inner`` on registered serial pins (see the module docstring)."""

    def __init__(self, inner: wiring.Component) -> None:
        if not isinstance(inner, wiring.Component):
            raise TypeError(f"inner must be an amaranth wiring.Component, not "
                            f"{type(inner).__name__}")
        self.inner = inner
        super().__init__({"rx": In(1), "tx": Out(1), "busy": Out(1), "done": Out(1),
                          "error": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.inner = inner = self.inner
        ins, outs = [], []
        for _path, member, value in inner.signature.flatten(inner):
            (ins if member.flow == In else outs).append(Value.cast(value))
        in_bits = sum(len(v) for v in ins)
        out_bits = sum(len(v) for v in outs)

        if in_bits:
            chain = Signal(in_bits)
            m.d.sync += chain.eq(Cat(self.rx, chain[:-1]))
            m.d.comb += Cat(*ins).eq(chain)
        if out_bits:
            captured = Signal(out_bits)
            count = Signal(range(out_bits + 1))
            m.d.sync += count.eq(count + 1)
            with m.If(count == out_bits - 1):
                m.d.sync += [captured.eq(Cat(*outs)), count.eq(0)]
            with m.Else():
                m.d.sync += captured.eq(captured >> 1)
            m.d.comb += self.tx.eq(captured[0])
        for name in _STATUS:
            if name in inner.signature.members:
                m.d.sync += getattr(self, name).eq(getattr(inner, name))
        return m
