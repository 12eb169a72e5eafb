"""Generic cocotb helpers for Amaranth ``lib.stream`` ports and simple clocked benches.

An Amaranth stream port ``<name>`` becomes three Verilog ports ``<name>__valid``,
``<name>__ready`` and ``<name>__payload``. The helpers drive and sample them with one
unambiguous rule: values are written right after a rising edge, the handshake is read in
the ``ReadOnly`` phase of the same cycle (the values the design samples at the next edge),
and a beat moves when ``valid & ready`` there.

* :func:`stream_put` sends integer payloads, idling ``valid`` at random (``idle``);
* :func:`stream_get` receives ``count`` payloads (or until ``stop()`` is true), dropping
  ``ready`` at random (``stall``: back-pressure);
* :func:`wait_high` sleeps (no Python per cycle) until one of some signals is high;
* :func:`start_clock`, :func:`reset`, :func:`write_words` (a memory write port driven one
  word per cycle) for bench set-up.

Every wait has a cycle limit (``max_cycles``): on expiry it raises :class:`BenchTimeout`, an
``AssertionError`` that fails the cocotb test with a message naming what was awaited, how
many cycles passed and the state of the handshake. Handshake bits that are ``X``/``Z`` (a
4-state simulator's verdict on logic that was never initialised) fail with their name
instead of ``int()``'s bare ``ValueError``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Optional

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import First, ReadOnly, RisingEdge, Timer

__all__ = ["BenchTimeout", "bit", "stream_ports", "stream_put", "stream_get", "wait_high",
           "start_clock", "reset", "write_words"]

#: Clock period of :func:`start_clock` and of the benches' clocks, in ns.
CLOCK_NS = 10


class BenchTimeout(AssertionError):
    """A bench waited longer than its cycle limit.

    The design hangs or is far slower than predicted. An ``AssertionError``, so cocotb
    reports the test as failed with the message.
    """


def bit(handle, what: str = "") -> int:
    """Value of a 1-bit handshake signal as an ``int``.

    Parameters
    ----------
    handle
        The signal (``dut.<name>``), read in the ``ReadOnly`` phase.
    what
        What the bench is doing, for the message.

    Returns
    -------
    int
        0 or 1.

    Raises
    ------
    AssertionError
        The signal is ``X`` or ``Z``; the message names it and ``what``.
    """
    value = handle.value
    if not value.is_resolvable:
        doing = f" while {what}" if what else ""
        raise AssertionError(f"{handle._path} is {value}{doing}: the design drives an "
                             f"unknown value (uninitialised logic in a 4-state simulation)")
    return int(value)


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
                     idle: float = 0.0, max_cycles: Optional[int] = None, what: str = "",
                     hint: str = "") -> int:
    """Send ``beats`` on stream ``name``.

    Call right after a rising edge; returns right after the edge that took the last beat
    (with ``valid`` low).

    Parameters
    ----------
    dut, name, clk
        The design, the stream port's name (``<name>__valid`` etc.) and its clock.
    beats
        Integer payloads, in order.
    rng, idle
        ``valid`` stays low in a cycle with probability ``idle``, drawn from ``rng``.
    max_cycles
        Cycles the transfer may take (``None``: no limit).
    what, hint
        What the transfer is and what to do when it overruns, for the message.

    Returns
    -------
    int
        The cycles the transfer took.

    Raises
    ------
    BenchTimeout
        Not all beats were taken within ``max_cycles`` cycles.
    """
    valid, _ready, payload = stream_ports(dut, name)
    ready = _ready
    beats = list(beats)
    rng = rng or random.Random(0)
    i = cycles = 0
    while i < len(beats):
        if max_cycles is not None and cycles >= max_cycles:
            valid.value = 0
            raise BenchTimeout(
                f"stream_put on {name!r}{_for(what)}: the design took {i} of {len(beats)} "
                f"beats in {cycles} cycles, the limit (max_cycles={max_cycles}); "
                f"{name}__ready={ready.value}; {hint or _HINT}")
        send = not (idle and rng.random() < idle)
        valid.value = int(send)
        if send:
            payload.value = int(beats[i])
        await ReadOnly()
        fire = send and bit(ready, f"sending beat {i} on {name!r}{_for(what)}")
        await RisingEdge(clk)
        cycles += 1
        if fire:
            i += 1
    valid.value = 0
    return cycles


async def stream_get(dut, name: str, clk, count: Optional[int] = None,
                     rng: Optional[random.Random] = None, stall: float = 0.0,
                     stop: Optional[Callable[[], bool]] = None,
                     max_cycles: Optional[int] = None, what: str = "",
                     hint: str = "") -> list[int]:
    """Receive payloads from stream ``name`` until ``count`` beats arrived or ``stop()`` is
    true.

    Parameters
    ----------
    dut, name, clk
        The design, the stream port's name (``<name>__valid`` etc.) and its clock.
    count
        Beats to receive (``None``: until ``stop()``).
    rng, stall
        ``ready`` stays low in a cycle with probability ``stall``, drawn from ``rng``.
    stop
        Evaluated in the ``ReadOnly`` phase of each cycle; true ends the transfer after
        that cycle.
    max_cycles
        Cycles the transfer may take (``None``: no limit).
    what, hint
        What the transfer is (e.g. its ``stop`` condition) and what to do when it overruns,
        for the message.

    Returns
    -------
    list of int
        The payloads received.

    Raises
    ------
    BenchTimeout
        Neither ``count`` beats nor ``stop()`` within ``max_cycles`` cycles.
    """
    valid, ready, payload = stream_ports(dut, name)
    rng = rng or random.Random(1)
    got: list[int] = []
    cycles = 0
    while count is None or len(got) < count:
        if max_cycles is not None and cycles >= max_cycles:
            ready.value = 0
            wanted = f"{count} beats" if count is not None else "the stop condition"
            raise BenchTimeout(
                f"stream_get on {name!r}{_for(what)}: waited for {wanted}, got {len(got)} "
                f"beats in {cycles} cycles, the limit (max_cycles={max_cycles}); "
                f"{name}__valid={valid.value}; {hint or _HINT}")
        take = not (stall and rng.random() < stall)
        ready.value = int(take)
        await ReadOnly()
        if take and bit(valid, f"receiving beat {len(got)} on {name!r}{_for(what)}"):
            got.append(int(payload.value))
        halt = stop is not None and stop()
        await RisingEdge(clk)
        cycles += 1
        if halt:
            break
    ready.value = 0
    return got


async def wait_high(signals: dict, max_cycles: int, what: str, hint: str = "",
                    period_ns: float = CLOCK_NS) -> list[str]:
    """Sleep until one of ``signals`` is high, without waking Python every cycle (the
    simulator runs free).

    Parameters
    ----------
    signals
        ``{name: handle}`` of 1-bit signals.
    max_cycles
        Clock periods to wait at most.
    what, hint
        What is awaited and what to do when it does not come, for the message.
    period_ns
        The clock period.

    Returns
    -------
    list of str
        The names of the signals high, in the ``ReadOnly`` phase of that time step.

    Raises
    ------
    BenchTimeout
        None is high after ``max_cycles`` clock periods; the message gives the cycles
        waited and the signals' values.
    """
    def high():
        return [n for n, h in signals.items() if h.value.is_resolvable and int(h.value)]

    await ReadOnly()
    now = high()
    if now:
        return now
    t0 = get_sim_time("ns")
    await First(*(RisingEdge(h) for h in signals.values()),
                Timer(max_cycles * period_ns, unit="ns"))
    await ReadOnly()
    now = high()
    if not now:
        waited = round((get_sim_time("ns") - t0) / period_ns)
        state = ", ".join(f"{n}={h.value}" for n, h in signals.items())
        raise BenchTimeout(f"waited {waited} cycles for {what}, the limit "
                           f"(max_cycles={max_cycles}): none of {'/'.join(signals)} went high "
                           f"(now {state}){'; ' + hint if hint else ''}")
    return now


_HINT = "the design stalls, or max_cycles is too small for this transfer"


def _for(what: str) -> str:
    return f" ({what})" if what else ""


async def write_words(clk, en, addr, data, words: Iterable[int], base: int = 0):
    """Write ``words`` through a memory write port, one per cycle."""
    for a, w in enumerate(words):
        en.value = 1
        addr.value = base + a
        data.value = int(w)
        await RisingEdge(clk)
    en.value = 0
