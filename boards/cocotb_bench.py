"""cocotb bench: the host driver (:class:`nmaccel.boards.driver.StaBoard`) talks to the Verilog
:class:`~nmaccel.boards.uart_top.StaUartTop` through its ``rx``/``tx`` pins only.

Run by :mod:`nmaccel.boards.simulated` with ``NMACCEL_UART_JOB`` naming a pickle of
``{"config": StaConfig, "divisor": int, "read_timeout": cycles, "actions": [...]}``; the
synchronous driver runs unchanged in a :func:`cocotb.task.bridge` thread and every transport
read/write is a :func:`cocotb.task.resume` call into the simulator. The outcomes of the actions
(:func:`nmaccel.boards.simulated.execute_actions`) go to ``NMACCEL_UART_OUT`` (pickle).
"""

from __future__ import annotations

import os
import pickle
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.task import bridge
from cocotb.triggers import FallingEdge, RisingEdge, Timer

CLOCK_NS = 10


class CocotbUartTransport:
    """A transport (``write``/``read``, see :mod:`nmaccel.boards.driver`) on the pins of a
    simulated UART top: ``write`` drives ``dut.rx`` bit by bit, a monitor task decodes
    ``dut.tx``. ``read(n)`` returns fewer than ``n`` bytes once the line has been idle for
    ``read_timeout`` clock cycles (simulated time). Call only from a :func:`cocotb.task.bridge`
    thread."""

    def __init__(self, dut, divisor: int, read_timeout: int) -> None:
        from cocotb.task import resume
        self.dut, self.divisor, self.read_timeout = dut, divisor, read_timeout
        self.bit_ns = divisor * CLOCK_NS
        self.received: deque[int] = deque()
        self.framing_errors = 0
        self.busy = False
        self.write = resume(self._write)
        self.read = resume(self._read)
        cocotb.start_soon(self._monitor())

    async def _monitor(self) -> None:
        tx = self.dut.tx
        while True:
            await FallingEdge(tx)
            self.busy = True
            await Timer(self.bit_ns / 2, unit="ns")
            if int(tx.value):                         # glitch
                self.busy = False
                continue
            value = 0
            for i in range(8):
                await Timer(self.bit_ns, unit="ns")
                value |= int(tx.value) << i
            await Timer(self.bit_ns, unit="ns")
            if int(tx.value):
                self.received.append(value)
            else:
                self.framing_errors += 1
            self.busy = False

    async def _write(self, data: bytes) -> None:
        rx = self.dut.rx
        for byte in bytes(data):
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                rx.value = bit
                await Timer(self.bit_ns, unit="ns")

    async def _read(self, n: int) -> bytes:
        step = 10 * self.divisor                      # one byte time, in cycles
        idle = 0
        while len(self.received) < n and idle < self.read_timeout:
            before = len(self.received)
            await Timer(step * CLOCK_NS, unit="ns")
            idle = 0 if (len(self.received) != before or self.busy) else idle + step
        k = min(n, len(self.received))
        return bytes(self.received.popleft() for _ in range(k))


@cocotb.test()
async def uart_board_session(dut):
    with open(os.environ["NMACCEL_UART_JOB"], "rb") as fh:
        job = pickle.load(fh)
    from nmaccel.boards.driver import StaBoard
    from nmaccel.boards.simulated import execute_actions
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start())
    dut.rx.value = 1
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    transport = CocotbUartTransport(dut, job["divisor"], job["read_timeout"])
    board = StaBoard(transport, job["config"], name=job.get("name", "uart"))
    outcomes = await bridge(execute_actions)(board, job["actions"])
    with open(os.environ["NMACCEL_UART_OUT"], "wb") as fh:
        pickle.dump({"outcomes": outcomes, "framing_errors": transport.framing_errors}, fh)
