"""A simulated board: the Verilog :class:`~nmaccel.boards.uart_top.StaUartTop` (STA) or
:class:`~nmaccel.boards.uart_top.ConvUartTop` (conv engine) under cocotb (Verilator or
Icarus), driven by the real host driver over its UART pins.

:func:`run_over_uart` runs programs and returns a :class:`~nmaccel.sim.sta_host.RunResult`
each, exactly as ``StaBoard(SerialTransport(...), cfg).run(program)`` does on a board;
:func:`run_conv_net_over_uart` runs a conv net as ``ConvBoard(...).run_net(qnet, images)``.
:func:`board_session` runs any list of driver actions (:func:`execute_actions`) in one
simulation. Builds live in the one build cache (:mod:`nmaccel.sim.build_cache`).
"""

from __future__ import annotations

import os
import pickle
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nmaccel.model.sta_program import StaProgram
from nmaccel.sim.build_cache import cached_verilog, simulation_build
from nmaccel.sim.simulators import log_tail, run_bench
from nmaccel.sim.sta_host import RunResult
from nmaccel.spec.config import ConvConfig, StaConfig

__all__ = ["DEFAULT_DIVISOR", "board_session", "build", "execute_actions", "run_over_uart",
           "run_conv_net_over_uart"]

#: Clock cycles per UART bit in simulation (a board uses ``clk_freq / baud``).
DEFAULT_DIVISOR = 8


def build(cfg: StaConfig | ConvConfig, divisor: int, timeout: int | None = None,
          simulator: str = "verilator", host_stage: bool = False) -> tuple[Path, str, str]:
    """Build (or reuse) StaUartTop or ConvUartTop (by ``cfg``'s type; ``host_stage``: with
    the register stages a ULX3S build puts between bridge and core); returns
    ``(build_dir, simulator name, toplevel)``."""
    from nmaccel.boards.uart_top import toplevel, verilog
    top = toplevel(cfg)
    text = cached_verilog("uart", ["nmaccel.boards.uart_top"],
                          f"{cfg.to_json(sort_keys=True)}|{divisor}|{timeout}|{top}"
                          f"|stage={bool(host_stage)}",
                          lambda: verilog(cfg, divisor, timeout=timeout, host_stage=host_stage))
    # one C++ file for the conv top: the split build races on its precompiled header
    flags = ("--output-split", "0") if isinstance(cfg, ConvConfig) else ()
    bdir, sim = simulation_build("uart", text, top, simulator, flags=flags)
    return bdir, sim, top


def execute_actions(board, actions: Sequence[tuple]) -> list:
    """Run driver actions on ``board`` (a :class:`~nmaccel.boards.driver.StaBoard` or
    :class:`~nmaccel.boards.conv_driver.ConvBoard`); returns one outcome per action,
    ``("ok", value)`` or ``("error", exception type name, message)`` (the session stops at the
    first error). Actions: ``("check",)``, ``("ping",)``, ``("run", program)`` (STA),
    ``("run_net", qnet, images)`` (conv), ``("status",)``, ``("counters",)``,
    ``("selftest",)``, ``("read", addr, n)``, ``("write", addr, words)``, ``("raw", frame,
    command)`` (send bytes, return the reply's ``(status, data)``)."""
    outcomes = []
    for action in actions:
        name, args = action[0], action[1:]
        try:
            if name == "run":
                value = board.run(args[0], **(args[1] if len(args) > 1 else {}))
            elif name == "raw":
                board.send_raw(args[0])
                value = board.read_reply(args[1])
            elif name in ("check", "ping", "status", "counters", "selftest", "read", "write",
                          "run_net"):
                value = getattr(board, name)(*args)
            else:
                raise ValueError(f"unknown action {name!r}")
        except Exception as exc:  # reported to the caller, which re-raises it
            outcomes.append(("error", type(exc).__name__, str(exc)))
            break
        outcomes.append(("ok", value))
    return outcomes


def board_session(cfg: StaConfig | ConvConfig, actions: Sequence[tuple],
                  divisor: int = DEFAULT_DIVISOR, timeout: int | None = None,
                  simulator: str = "verilator", read_timeout: int | None = None,
                  max_cycles: int | None = None, host_stage: bool = False) -> dict:
    """Build the simulated board and run ``actions`` (see :func:`execute_actions`) through the
    host driver over its UART pins. ``read_timeout``: idle cycles after which a transport read
    gives up (default: the bridge timeout plus 64 byte times). ``max_cycles``: cycles the whole
    session may take (default :func:`nmaccel.boards.cocotb_bench.session_limit`); over it the
    bench fails and this raises RuntimeError with its message. ``host_stage``: the board
    top with register stages between bridge and core (as a ULX3S build). Returns
    ``{"outcomes": [...], "framing_errors": n, "build_seconds": s, "sim_seconds": s}``."""
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    from nmaccel.hw.common.bridge import check_timeout
    from nmaccel.hw.common.uart import check_divisor
    if not isinstance(cfg, (StaConfig, ConvConfig)):
        raise TypeError(f"cfg must be a StaConfig or a ConvConfig, not {type(cfg).__name__}")
    bridge_timeout = check_timeout(timeout, check_divisor(divisor))
    if read_timeout is None:
        read_timeout = bridge_timeout + 64 * 10 * divisor
    t0 = time.perf_counter()
    bdir, sim_name, top = build(cfg, divisor, timeout, simulator, host_stage=host_stage)
    build_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="nmaccel_uart_") as tmp:
        job, out = Path(tmp) / "job.pkl", Path(tmp) / "out.pkl"
        job.write_bytes(pickle.dumps({"config": cfg, "divisor": divisor, "actions": list(actions),
                                      "read_timeout": read_timeout, "max_cycles": max_cycles,
                                      "name": f"uart-{sim_name}"}))
        t1 = time.perf_counter()
        xml = run_bench(
            get_runner(sim_name),
            hdl_toplevel=top, hdl_toplevel_lang="verilog",
            test_module="nmaccel.boards.cocotb_bench",
            build_dir=bdir, test_dir=tmp, results_xml=str(Path(tmp) / "results.xml"),
            extra_env={"NMACCEL_UART_JOB": str(job), "NMACCEL_UART_OUT": str(out),
                       "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "WARNING")},
            log_file=Path(tmp) / "sim.log")
        sim_s = time.perf_counter() - t1
        num, failed = get_results(Path(xml)) if Path(xml).exists() else (0, 0)
        if num != 1 or failed or not out.exists():
            raise RuntimeError(f"cocotb UART board bench failed on {sim_name}; the simulation "
                               f"log ends:\n{log_tail(Path(tmp) / 'sim.log', 40)}")
        result = pickle.loads(out.read_bytes())
    if result.get("sdram_violations"):
        from nmaccel.sim.sta_rtl import SdramTimingError
        raise SdramTimingError(result["sdram_violations"], " on the simulated board")
    result.update(build_seconds=build_s, sim_seconds=sim_s)
    return result


def run_over_uart(programs: StaProgram | Sequence[StaProgram], simulator: str = "verilator",
                  divisor: int = DEFAULT_DIVISOR, timeout: int | None = None,
                  raise_on_error: bool = True,
                  host_stage: bool = False) -> RunResult | list[RunResult]:
    """Run program(s) on the simulated board through the host driver and its UART pins (every
    word crosses the link; no backdoor). Returns a RunResult (a list for a list)."""
    from nmaccel.boards.driver import BoardError
    single = isinstance(programs, StaProgram)
    progs = [programs] if single else list(programs)
    if not progs:
        raise ValueError("no programs to run")
    cfg = progs[0].cfg
    if any(p.cfg != cfg for p in progs):
        raise ValueError("all programs of one simulation must share one StaConfig")
    actions = [("check",)] + [("run", p, {"raise_on_error": raise_on_error}) for p in progs]
    session = board_session(cfg, actions, divisor=divisor, timeout=timeout, simulator=simulator,
                            host_stage=host_stage)
    results = []
    for outcome in session["outcomes"]:
        if outcome[0] == "error":
            raise BoardError(f"{outcome[1]}: {outcome[2]}")
        results.append(outcome[1])
    results = results[1:]
    for r in results:
        r.extra.update(build_seconds=session["build_seconds"], sim_seconds=session["sim_seconds"])
    return results[0] if single else results


def run_conv_net_over_uart(cfg: ConvConfig, qnet, images, simulator: str = "verilator",
                           divisor: int = DEFAULT_DIVISOR, timeout: int | None = None,
                           host_stage: bool = False) -> dict:
    """A conv net on the simulated board, through :class:`~nmaccel.boards.conv_driver.
    ConvBoard` and the UART pins (weights, inputs and outputs all cross the link): ``{"logits":
    (N, C), "counters": [[per layer] per image], "build_seconds", "sim_seconds"}``."""
    from nmaccel.boards.driver import BoardError
    from nmaccel.model.conv_ref import check_job_fits
    ConvConfig.require(cfg, "cfg")
    for job in qnet.jobs:
        check_job_fits(job, cfg)
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (8, 8) or not len(images):
        raise ValueError(f"images must have shape (N, 8, 8) with N >= 1, not {images.shape}")
    session = board_session(cfg, [("check",), ("run_net", qnet, images.astype(np.int64))],
                            divisor=divisor, timeout=timeout, simulator=simulator,
                            host_stage=host_stage)
    for outcome in session["outcomes"]:
        if outcome[0] == "error":
            raise BoardError(f"{outcome[1]}: {outcome[2]}")
    return {**session["outcomes"][1][1], "build_seconds": session["build_seconds"],
            "sim_seconds": session["sim_seconds"]}
