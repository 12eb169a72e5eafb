"""Generic cocotb helpers for Amaranth ``lib.stream`` ports and simple clocked benches.

An Amaranth stream port ``<name>`` becomes three Verilog ports ``<name>__valid``,
``<name>__ready`` and ``<name>__payload``. The helpers drive and sample them with one
unambiguous rule: values are written right after a rising edge, the handshake is read in
the ``ReadOnly`` phase of the same cycle (the values the design samples at the next edge),
and a beat moves when ``valid & ready`` there.

* :func:`stream_put` sends integer payloads, idling ``valid`` at random (``idle``);
* :func:`stream_get` receives ``count`` payloads (or until ``stop()`` is true), dropping
  ``ready`` at random (``stall``: back-pressure);
* :func:`start_clock`, :func:`reset`, :func:`write_words` (a memory write port driven one
  word per cycle) for bench set-up.
"""

from __future__ import annotations

import random
from typing import Callable, Iterable, Optional

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["stream_ports", "stream_put", "stream_get", "start_clock", "reset",
           "write_words"]


def stream_ports(dut, name: str):
    """``(valid, ready, payload)`` handles of the stream port ``name``."""
    try:
        return (getattr(dut, f"{name}__valid"), getattr(dut, f"{name}__ready"),
                getattr(dut, f"{name}__payload"))
    except AttributeError:
        raise AttributeError(f"{dut._name} has no stream port {name!r} (expected "
                             f"{name}__valid/__ready/__payload)") from None


def start_clock(clk, period_ns: int = 10):
    return cocotb.start_soon(Clock(clk, period_ns, unit="ns").start())


async def reset(dut, clk, rst=None, cycles: int = 2):
    rst = dut.rst if rst is None else rst
    rst.value = 1
    for _ in range(cycles):
        await RisingEdge(clk)
    rst.value = 0
    await RisingEdge(clk)


async def stream_put(dut, name: str, beats: Iterable[int], clk, rng: Optional[random.Random] = None,
                     idle: float = 0.0) -> int:
    """Send ``beats`` on stream ``name``; returns the number of cycles it took.

    Call right after a rising edge; returns right after the edge that took the last beat
    (with ``valid`` low)."""
    valid, _ready, payload = stream_ports(dut, name)
    ready = _ready
    beats = list(beats)
    rng = rng or random.Random(0)
    i = cycles = 0
    while i < len(beats):
        send = not (idle and rng.random() < idle)
        valid.value = int(send)
        if send:
            payload.value = int(beats[i])
        await ReadOnly()
        fire = send and int(ready.value)
        await RisingEdge(clk)
        cycles += 1
        if fire:
            i += 1
    valid.value = 0
    return cycles


async def stream_get(dut, name: str, clk, count: Optional[int] = None,
                     rng: Optional[random.Random] = None, stall: float = 0.0,
                     stop: Optional[Callable[[], bool]] = None) -> list[int]:
    """Receive payloads from stream ``name`` until ``count`` beats arrived or ``stop()``
    (evaluated in the ReadOnly phase of each cycle) is true."""
    valid, ready, payload = stream_ports(dut, name)
    rng = rng or random.Random(1)
    got: list[int] = []
    while count is None or len(got) < count:
        take = not (stall and rng.random() < stall)
        ready.value = int(take)
        await ReadOnly()
        if take and int(valid.value):
            got.append(int(payload.value))
        halt = stop is not None and stop()
        await RisingEdge(clk)
        if halt:
            break
    ready.value = 0
    return got


async def write_words(clk, en, addr, data, words: Iterable[int], base: int = 0):
    """Write ``words`` through a memory write port, one per cycle."""
    for a, w in enumerate(words):
        en.value = 1
        addr.value = base + a
        data.value = int(w)
        await RisingEdge(clk)
    en.value = 0
