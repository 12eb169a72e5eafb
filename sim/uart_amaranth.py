"""UART line helpers for ``amaranth.sim`` testbenches (``async def tb(ctx)``): send bytes on a
DUT's ``rx`` pin and receive bytes from its ``tx`` pin, 8N1 at ``divisor`` cycles per bit."""

from __future__ import annotations

__all__ = ["UartLineTimeout", "uart_recv", "uart_recv_byte", "uart_send", "uart_send_byte"]


class UartLineTimeout(TimeoutError):
    """No start bit on the line within the allowed cycles."""


async def uart_send_byte(ctx, pin, byte: int, divisor: int, stop_bit: int = 1,
                         gap: int = 0) -> None:
    """Drive one 8N1 byte onto ``pin`` (``stop_bit=0`` makes a framing error), then keep the
    line idle for ``gap`` more cycles."""
    bits = [0] + [(byte >> i) & 1 for i in range(8)] + [stop_bit]
    for b in bits:
        ctx.set(pin, b)
        await ctx.tick().repeat(divisor)
    ctx.set(pin, 1)
    if not stop_bit:                       # let the receiver see the line go high again
        await ctx.tick().repeat(divisor)
    if gap:
        await ctx.tick().repeat(gap)


async def uart_send(ctx, pin, data: bytes, divisor: int, gaps=None) -> None:
    """Send ``data``; ``gaps`` (an iterable of idle cycles per byte) adds random pauses."""
    gaps = iter(gaps) if gaps is not None else None
    for byte in data:
        await uart_send_byte(ctx, pin, byte, divisor, gap=next(gaps) if gaps else 0)


async def uart_recv_byte(ctx, pin, divisor: int, timeout: int) -> int:
    """Wait up to ``timeout`` cycles for a start bit on ``pin``, then sample the byte mid-bit.
    Raises :class:`UartLineTimeout` or ``ValueError`` (bad stop bit)."""
    waited = 0
    while ctx.get(pin):
        await ctx.tick()
        waited += 1
        if waited > timeout:
            raise UartLineTimeout(f"no byte on the line within {timeout} cycles")
    await ctx.tick().repeat(divisor // 2)           # middle of the start bit
    if ctx.get(pin):
        raise ValueError("start bit glitch on the tx line")
    value = 0
    for i in range(8):
        await ctx.tick().repeat(divisor)
        value |= ctx.get(pin) << i
    await ctx.tick().repeat(divisor)
    if not ctx.get(pin):
        raise ValueError("bad stop bit on the tx line")
    return value


async def uart_recv(ctx, pin, n: int, divisor: int, timeout: int) -> bytes:
    return bytes([await uart_recv_byte(ctx, pin, divisor, timeout) for _ in range(n)])
