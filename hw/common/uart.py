"""8N1 UART receiver and transmitter as byte streams.

One start bit (0), eight data bits LSB first, one stop bit (1); the line idles high.
``divisor`` is the number of clock cycles per bit (``clk_freq / baud``, see
:func:`uart_divisor`).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["MIN_DIVISOR", "UartRx", "UartTx", "check_divisor", "uart_divisor"]

#: Fewest clock cycles per bit: the receiver samples mid-bit, ``divisor // 2`` cycles after the
#: start edge, and needs at least two cycles either side.
MIN_DIVISOR = 4


def check_divisor(divisor) -> int:
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be an integer >= {MIN_DIVISOR} (clock cycles per bit), "
                         f"not {divisor!r}")
    return divisor


def uart_divisor(clk_freq: float, baud: int, tolerance: float = 0.02) -> int:
    """Cycles per bit for ``baud`` at ``clk_freq`` Hz; raises if the rounding error of the bit
    time exceeds ``tolerance`` (8N1 receivers tolerate a few percent over a 10-bit byte)."""
    if not isinstance(baud, int) or baud <= 0:
        raise ValueError(f"baud must be a positive integer, not {baud!r}")
    if not clk_freq > 0:
        raise ValueError(f"clk_freq must be positive (Hz), not {clk_freq!r}")
    divisor = round(clk_freq / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud {baud} is too fast for a {clk_freq / 1e6:g} MHz clock: needs "
                         f"at least {MIN_DIVISOR} cycles per bit")
    error = abs(clk_freq / divisor - baud) / baud
    if error > tolerance:
        raise ValueError(f"baud {baud} at {clk_freq / 1e6:g} MHz is off by {error:.1%} "
                         f"(divisor {divisor}); more than the tolerance {tolerance:.1%}")
    return divisor


class UartRx(wiring.Component):
    """8N1 receiver.

    Ports
        ``rx`` In(1): the serial line (asynchronous; a 2-FF synchronizer is inside).
        ``data`` Out(stream of 8 bits): one payload per received byte; ``valid`` stays until
        ``ready``. A byte that completes while the previous one is still waiting is dropped
        and ``overrun`` pulses.
        ``framing_error`` Out(1): one-cycle pulse when a stop bit is 0 (the byte is dropped;
        the receiver waits for the line to go high before looking for the next start bit).
    Timing: the start bit is confirmed and every bit sampled in its middle; ``valid`` rises
    ``divisor // 2 + 2`` cycles into the stop bit (2 cycles of synchronizer).
    """

    def __init__(self, divisor: int) -> None:
        self.divisor = check_divisor(divisor)
        super().__init__({
            "rx": In(1, init=1),
            "data": Out(stream.Signature(unsigned(8))),
            "framing_error": Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        div = self.divisor
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(div))
        bit = Signal(range(8))
        shift = Signal(8)

        with m.If(self.data.ready):
            m.d.sync += self.data.valid.eq(0)
        m.d.sync += [self.framing_error.eq(0), self.overrun.eq(0)]

        with m.FSM(name="uart_rx"):
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(div // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):          # glitch, not a start bit
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(div - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shift.eq((rx << 7) | (shift >> 1)), timer.eq(div - 1),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    with m.If(self.data.valid & ~self.data.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.data.payload.eq(shift), self.data.valid.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += self.framing_error.eq(1)
                    m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """8N1 transmitter.

    Ports
        ``data`` In(stream of 8 bits): bytes to send; accepted (``ready``) only while idle.
        ``tx`` Out(1): the serial line, high when idle.
    Throughput: one byte per ``10 * divisor`` cycles (``ready`` is high in the cycle after
    the stop bit ends, so back-to-back bytes have no gap beyond that cycle).
    """

    def __init__(self, divisor: int) -> None:
        self.divisor = check_divisor(divisor)
        super().__init__({
            "data": In(stream.Signature(unsigned(8))),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        div = self.divisor
        frame = Signal(10, init=0x3FF)       # stop, data[7:0], start; shifted out LSB first
        bits = Signal(range(11))
        timer = Signal(range(div))
        m.d.comb += [self.tx.eq(frame[0]), self.data.ready.eq(bits == 0)]
        with m.If(bits == 0):
            with m.If(self.data.valid):
                m.d.sync += [frame.eq((1 << 9) | (self.data.payload << 1)), bits.eq(10),
                             timer.eq(div - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [frame.eq((1 << 9) | (frame >> 1)), bits.eq(bits - 1), timer.eq(div - 1)]
        return m
