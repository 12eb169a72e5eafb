"""cocotb bench: the host driver (:class:`nmaccel.boards.driver.StaBoard`) talks to the Verilog
:class:`~nmaccel.boards.uart_top.StaUartTop` through its ``rx``/``tx`` pins only.

Run by :mod:`nmaccel.boards.simulated` with ``NMACCEL_UART_JOB`` naming a pickle of
``{"config": StaConfig, "divisor": int, "read_timeout": cycles, "actions": [...],
"max_cycles": cycles or None}``; the synchronous driver runs unchanged in a
:func:`cocotb.task.bridge` thread and every transport read/write is a
:func:`cocotb.task.resume` call into the simulator. The outcomes of the actions
(:func:`nmaccel.boards.simulated.execute_actions`) go to ``NMACCEL_UART_OUT`` (pickle).

Cycle limits: a transport read gives up after ``read_timeout`` idle cycles (the driver then
raises its ``BoardTimeout``, an outcome like any other); the whole session may take
``max_cycles`` (default :func:`session_limit`, from the cycle model and the bytes the
actions move). Past that, the next transport call stops the session and the test fails with
a :class:`~nmaccel.sim.cocotb_streams.BenchTimeout` naming the action and the cycles spent
(this is what catches a core that never finishes: the driver would poll STATUS for a minute
of wall-clock time).
"""

from __future__ import annotations

import os
import pickle
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.task import bridge
from cocotb.triggers import FallingEdge, RisingEdge, Timer

from nmaccel.sim.cocotb_streams import BenchTimeout

CLOCK_NS = 10

#: Session limit: ``WATCHDOG_FACTOR`` times (predicted core cycles + link time) plus
#: ``TIMEOUTS_PER_ACTION`` read timeouts per action plus ``WATCHDOG_MARGIN``.
WATCHDOG_FACTOR = 2
TIMEOUTS_PER_ACTION = 3
WATCHDOG_MARGIN = 10_000
#: Link bytes budgeted per 32-bit word moved (4 data bytes plus a whole frame and its reply
#: around a single word), and per action.
BYTES_PER_WORD = 24
BYTES_PER_ACTION = 64


def session_limit(cfg, divisor: int, read_timeout: int, actions) -> int:
    """Cycles a simulated board session may take.

    Parameters
    ----------
    cfg
        The board's :class:`~nmaccel.spec.config.StaConfig`.
    divisor, read_timeout
        Clock cycles per UART bit; idle cycles after which a transport read gives up.
    actions
        The session's actions (see :func:`~nmaccel.boards.simulated.execute_actions`).

    Returns
    -------
    int
        :data:`WATCHDOG_FACTOR` times the work (for each ``run`` the cycle model's prediction
        plus the link time of every word it loads and reads back, :data:`BYTES_PER_WORD`
        bytes each; for ``read``/``write`` their words; :data:`BYTES_PER_ACTION` bytes per
        action), plus :data:`TIMEOUTS_PER_ACTION` read timeouts per action (the error reply
        to a truncated frame comes after the bridge's timeout), plus
        :data:`WATCHDOG_MARGIN`.
    """
    from nmaccel.spec import uart_protocol as proto
    byte = 10 * divisor
    work = 0
    for action in actions:
        name, args = action[0], action[1:]
        words = 0
        if name == "run_net":
            cycles, words = _conv_net_work(cfg, args[0], len(args[1]))
            work += cycles
        elif name == "run":
            from nmaccel.sim.sta_rtl import predicted_cycles
            prog = args[0]
            words = (len(prog.host_writes()) + len(prog.output_reads())
                     + len(proto.host_map(cfg).COUNTERS)
                     + len(prog.commands))
            work += predicted_cycles(prog)
        elif name == "read":
            words = args[1]
        elif name == "write":
            words = len(args[1])
        elif name in ("counters", "status"):
            words = len(proto.host_map(cfg).COUNTERS)
        work += (BYTES_PER_WORD * words + BYTES_PER_ACTION) * byte
    if getattr(cfg, "sdram_timing", None) is not None:     # the SDRAM's power-up comes first
        work += cfg.sdram_timing.init_wait
    return (WATCHDOG_FACTOR * work + TIMEOUTS_PER_ACTION * read_timeout * len(actions)
            + WATCHDOG_MARGIN)


def _conv_net_work(cfg, qnet, images: int) -> tuple[int, int]:
    """``(engine cycles, words moved)`` of a conv net on ``images`` images over the link: the
    cycle model's cycles, the weights and parameters once, every image's input and output
    beats and, per layer and image, :data:`POLLS_PER_BEAT` status reads per beat (the host
    polls while the engine works)."""
    from nmaccel.model.conv_ref import (
        get_exp_cycles,
        input_beats,
        output_beats,
        pack_params,
        pack_weights,
    )
    from nmaccel.spec import conv_host as H
    cycles, words = 0, 0
    for job in qnet.jobs:
        n_in, n_out = input_beats(job, cfg), output_beats(job, cfg)
        cycles += images * get_exp_cycles(job, cfg)["total"]
        words += (len(pack_weights(job, cfg)) * H.sub_words(cfg, "WMEM")
                  + len(pack_params(job, cfg)) * H.sub_words(cfg, "PMEM") + 8)
        words += images * (n_in * (H.stream_words(cfg, "IN") + POLLS_PER_BEAT)
                           + n_out * (H.stream_words(cfg, "OUT") + POLLS_PER_BEAT) + 16)
    return cycles, words


#: Status words budgeted per conv stream beat (a poll moves at least one beat).
POLLS_PER_BEAT = 3


class CocotbUartTransport:
    """A transport (``write``/``read``, see :mod:`nmaccel.boards.driver`) on the pins of a
    simulated UART top: ``write`` drives ``dut.rx`` bit by bit, a monitor task decodes
    ``dut.tx``. ``read(n)`` returns fewer than ``n`` bytes once the line has been idle for
    ``read_timeout`` clock cycles (simulated time). A ``read`` or ``write`` once the session
    has run ``max_cycles`` cycles raises :class:`~nmaccel.sim.cocotb_streams.BenchTimeout`
    (kept in ``expired``). Its time (``clock()``, for the driver's reply deadline) is the
    session's clock cycles, and ``timeout`` is ``read_timeout`` in them. Call only from a
    :func:`cocotb.task.bridge` thread."""

    time_unit = "cycles"

    def __init__(self, dut, divisor: int, read_timeout: int, max_cycles: int) -> None:
        from cocotb.task import resume
        self.dut, self.divisor, self.read_timeout = dut, divisor, read_timeout
        self.timeout = read_timeout
        self.max_cycles = max_cycles
        self.cycles = 0                               # session cycles at the last read/write
        self.t0 = get_sim_time("ns")
        self.expired = ""                             # the BenchTimeout message, once raised
        self.bit_ns = divisor * CLOCK_NS
        self.received: deque[int] = deque()
        self.framing_errors = 0
        self.busy = False
        self.write = resume(self._write)
        self.read = resume(self._read)
        cocotb.start_soon(self._monitor())

    def clock(self) -> int:
        """Session clock cycles when the last ``read``/``write`` returned."""
        return self.cycles

    def _check_limit(self, doing: str) -> None:
        """Raise :class:`BenchTimeout` once the session has run ``max_cycles`` cycles."""
        cycles = self.cycles = round((get_sim_time("ns") - self.t0) / CLOCK_NS)
        if cycles > self.max_cycles:
            self.expired = (f"the simulated board session ran {cycles} cycles, over its limit "
                            f"(max_cycles={self.max_cycles}), before {doing}: the core or the "
                            f"bridge does not finish (board_session(max_cycles=...) sets "
                            f"another limit)")
            raise BenchTimeout(self.expired)

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
        self._check_limit(f"sending {len(data)} bytes")
        rx = self.dut.rx
        for byte in bytes(data):
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                rx.value = bit
                await Timer(self.bit_ns, unit="ns")
        self.cycles = round((get_sim_time("ns") - self.t0) / CLOCK_NS)

    async def _read(self, n: int) -> bytes:
        self._check_limit(f"reading {n} bytes")
        step = 10 * self.divisor                      # one byte time, in cycles
        idle = 0
        while len(self.received) < n and idle < self.read_timeout:
            before = len(self.received)
            await Timer(step * CLOCK_NS, unit="ns")
            idle = 0 if (len(self.received) != before or self.busy) else idle + step
        k = min(n, len(self.received))
        self.cycles = round((get_sim_time("ns") - self.t0) / CLOCK_NS)
        return bytes(self.received.popleft() for _ in range(k))


@cocotb.test()
async def uart_board_session(dut):
    with open(os.environ["NMACCEL_UART_JOB"], "rb") as fh:
        job = pickle.load(fh)
    from nmaccel.boards.conv_driver import ConvBoard
    from nmaccel.boards.driver import StaBoard
    from nmaccel.boards.simulated import execute_actions
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start())
    dut.rx.value = 1
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    limit = job.get("max_cycles")
    if limit is None:
        limit = session_limit(job["config"], job["divisor"], job["read_timeout"], job["actions"])
    sdram = None
    if getattr(job["config"], "sdram_timing", None) is not None:   # the SDRAM: checking model
        from nmaccel.sim.sdram_model import SdramModel
        sdram = SdramModel(dut, "sdram__", job["config"].sdram_timing)
        cocotb.start_soon(sdram.run(dut.clk))
    transport = CocotbUartTransport(dut, job["divisor"], job["read_timeout"], limit)
    board_type = ConvBoard if job["config"].kind == "conv" else StaBoard
    board = board_type(transport, job["config"], name=job.get("name", "uart"))
    outcomes = await bridge(execute_actions)(board, job["actions"])
    if transport.expired:
        raise BenchTimeout(f"action {len(outcomes)} of {len(job['actions'])} "
                           f"({job['actions'][len(outcomes) - 1][0]!r}): {transport.expired}")
    with open(os.environ["NMACCEL_UART_OUT"], "wb") as fh:
        pickle.dump({"outcomes": outcomes, "framing_errors": transport.framing_errors,
                     "sdram_violations": sdram.violations if sdram is not None else [],
                     "sdram_commands": sdram.counts if sdram is not None else {}}, fh)
