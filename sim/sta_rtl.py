"""Run STA programs on the generated Verilog with cocotb 2.x (Verilator or Icarus).

:func:`build` converts :class:`~nmaccel.hw.sta.core.StaCore` for a config to Verilog and
builds it once per (Verilog, simulator) in the build cache (:mod:`nmaccel.sim.build_cache`);
:func:`run_programs` loads and runs any number of programs in
one simulator process (:mod:`nmaccel.sim.sta_bench`) and returns a
:class:`~nmaccel.sim.sta_host.RunResult` per program.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from nmaccel.files import write_atomic
from nmaccel.model.sta_program import StaProgram
from nmaccel.sim.build_cache import (
    run_cached_model,
    simulation_build,
    sta_verilog,
)
from nmaccel.sim.simulators import run_module
from nmaccel.sim.sta_host import RunResult, finish_run, host_script
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig

__all__ = ["build", "cycle_limit", "predicted_cycles", "Simulation", "SdramTimingError",
           "run_programs", "run_program", "run_gemms", "TOPLEVEL"]

TOPLEVEL = "sta_core"
#: StaCore memories the bench loads and reads by backdoor (VPI), so visible in the model.
BACKDOOR_MEMORIES = ("cbuf", "wbuf", "abuf", "pbuf", "vbuf", "obuf", "cyclog")


def build(cfg: StaConfig, simulator: str = "verilator", waves: bool = False,
          rebuild: bool = False) -> tuple[Path, str]:
    """Build (or reuse) the simulation model; returns ``(build_dir, simulator name)``."""
    return simulation_build("sta", sta_verilog(cfg, TOPLEVEL), TOPLEVEL, simulator, waves=waves,
                            public=BACKDOOR_MEMORIES, rebuild=rebuild)


#: A run's cycle limit (START to done/error) is ``WATCHDOG_FACTOR`` times the cycle model's
#: prediction plus ``WATCHDOG_MARGIN``.
WATCHDOG_FACTOR = 2
WATCHDOG_MARGIN = 10_000


def cycle_limit(predicted: int) -> int:
    """A run's cycle limit (START to done/error) for a cycle-model prediction of
    ``predicted`` cycles: ``WATCHDOG_FACTOR * predicted + WATCHDOG_MARGIN``."""
    return WATCHDOG_FACTOR * predicted + WATCHDOG_MARGIN


def predicted_cycles(program: StaProgram) -> int:
    """Cycles the core should take from START to done for ``program``.

    Parameters
    ----------
    program
        The program.

    Returns
    -------
    int
        :func:`~nmaccel.model.sta_cycles.predicted_total` of the commands before the
        first one that the host-side checks (``GemmCommand.check`` /
        ``VectorCommand.check``, the core's rules) reject: the core stops there with an
        error. 0 if the first command is rejected.
    """
    from nmaccel.model.sta_cycles import predicted_total
    cfg = program.cfg
    accepted = []
    for c in program.commands:
        try:
            command = c if hasattr(c, "check") else sta_isa.command_from_word(cfg, c)
            if command is not None:
                command.check(cfg)
        except ValueError:
            break
        accepted.append(c)
    if not accepted:
        return 0
    try:
        return predicted_total(program, accepted)
    except ValueError:
        return 0


class SdramTimingError(RuntimeError):
    """The checking SDRAM model saw the controller break the chip's timing (``violations``:
    one line each; the message names how many and the first)."""

    def __init__(self, violations: list, where: str = "") -> None:
        super().__init__(f"the SDRAM model saw {len(violations)} timing violation(s)"
                         f"{where}; the first: {violations[0]}")
        self.violations = violations


#: How long a simulator started ahead (:class:`Simulation`) waits for its job, in seconds.
JOB_WAIT_SECONDS = 900.0


class Simulation:
    """One StaCore simulator process, started before its programs are ready.

    ``start()`` looks the model up in the build cache (building it if needed) and spawns the
    simulator in a background thread; the bench's start-up (process, embedded Python, cocotb)
    then overlaps the caller's own work, such as quantizing and compiling a layer. ``run``
    hands it the programs and waits for the results; ``cancel`` ends a started process that
    gets no programs. The bench waits at most ``job_wait`` seconds for its job.

    Parameters
    ----------
    cfg
        The StaConfig of every program it will run.
    simulator
        ``"verilator"`` or ``"icarus"``.
    waves
        Path to write the waveform to (Verilator FST or Icarus VCD), or None.
    job_wait
        Seconds the started process waits for :meth:`run` or :meth:`cancel`.

    Attributes
    ----------
    seconds : dict
        ``build`` (cache lookup or build), ``sim`` (the process, spawn to exit), ``start``
        (spawn to the bench's first line), ``exit``, and ``build_end``/``sim_end``
        (``time.perf_counter()`` when each ended).
    """

    def __init__(self, cfg: StaConfig, simulator: str = "verilator",
                 waves: Optional[str] = None, job_wait: float = JOB_WAIT_SECONDS):
        if not job_wait > 0:
            raise ValueError(f"job_wait must be a positive number of seconds, not {job_wait}")
        self.cfg, self.simulator, self.waves, self.job_wait = cfg, simulator, waves, job_wait
        self.seconds: dict = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="nmaccel_sta_")
        self._job = Path(self._tmp.name) / "job.json"
        self._thread = None
        self._outcome: dict = {}
        self._submitted = False

    def _part(self, i: int) -> Path:
        """The job part of program ``i`` (next to the job header)."""
        return self._job.with_name(f"run-{i}.json")

    def _build_model(self, rebuild: bool) -> tuple[Path, str]:
        t0 = time.perf_counter()
        made = build(self.cfg, self.simulator, waves=bool(self.waves), rebuild=rebuild)
        self.seconds["build"] = self.seconds.get("build", 0.0) + time.perf_counter() - t0
        self.seconds["build_end"] = time.perf_counter()
        return made

    def _simulate(self, bdir: Path, sim_name: str) -> list:
        tmp, waves = Path(self._tmp.name), self.waves
        out = tmp / "out.json"
        out.unlink(missing_ok=True)
        t1 = time.perf_counter()
        spawned = time.time()
        run_module(sim_name, TOPLEVEL, "nmaccel.sim.sta_bench", bdir, tmp,
                   {"NMACCEL_STA_JOB": str(self._job), "NMACCEL_STA_OUT": str(out),
                    "NMACCEL_STA_JOB_WAIT": repr(float(self.job_wait)),
                    "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "WARNING")},
                   "cocotb STA bench", result=out, waves=bool(waves), timescale=False)
        self.seconds["sim"] = time.perf_counter() - t1
        self.seconds["sim_end"] = time.perf_counter()
        done = json.loads(out.read_text())
        self.seconds["start"] = done.get("started", spawned) - spawned
        self.seconds["exit"] = time.time() - done.get("finished", time.time())
        if waves:
            for cand in list(tmp.glob("*.fst")) + list(tmp.glob("*.vcd")) \
                    + list(bdir.glob("*.fst")) + list(bdir.glob("*.vcd")):
                write_atomic(waves, cand.read_bytes())
                break
        return [sim_name, done["results"], done.get("sdram_violations", []),
                done.get("sdram_counts", {})]

    def _work(self) -> None:
        try:
            self._outcome["value"] = run_cached_model(self._build_model, self._simulate)
        except BaseException as exc:            # re-raised in the caller's thread by run()
            self._outcome["error"] = exc

    def start(self) -> Simulation:
        """Build or find the model and spawn the simulator (in a background thread)."""
        import threading
        if self._thread is not None:
            raise RuntimeError("this Simulation was started already")
        self._thread = threading.Thread(target=self._work, name="nmaccel-sta-sim", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        """End a started simulator that gets no programs (it exits without running any)."""
        if self._thread is not None and not self._submitted:
            self._submitted = True
            write_atomic(self._job, json.dumps({"cancel": True}))
            self._thread.join()
        self._tmp.cleanup()

    def __enter__(self) -> Simulation:
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.cancel()

    def run(self, programs: Sequence[StaProgram], idle: float = 0.0,
            backpressure: float = 0.0, seed: int = 0, raise_on_error: bool = True,
            backdoor: bool = False, max_cycles: Optional[int] = None) -> list[RunResult]:
        """Run ``programs`` one after another in the started process; arguments as
        :func:`run_programs`. A Simulation runs one list of programs."""
        if not programs:
            raise ValueError("no programs to run")
        if any(p.cfg != self.cfg for p in programs):
            raise ValueError("all programs of one simulation must share one StaConfig (the "
                             "one the Simulation was made for)")
        if self._submitted:
            raise RuntimeError("a Simulation runs one list of programs; start another one")
        empty = [i for i, p in enumerate(programs) if not len(p.commands)]
        if empty:
            raise ValueError(f"program {empty[0]} has no commands")
        if self._thread is None:
            self.start()
        # The job goes out in parts: a header, then one file per program as soon as its host
        # script is made, so the simulator loads and runs program i while this process
        # writes program i + 1's (the bench waits for each part with the job's limit).
        self._submitted = True
        write_atomic(self._job, json.dumps({
            "runs": len(programs), "idle": idle, "backpressure": backpressure, "seed": seed,
            "addr_bits": sta_isa.addr_bits(self.cfg), "backdoor": backdoor,
            "sdram": self.cfg.sdram_timing.to_dict() if self.cfg.sdram_timing else None}))
        scripts, sent = [], 0
        try:
            for i, p in enumerate(programs):
                scripts.append(host_script(p, writes=not backdoor))
                # the cycle model only sets the default limit (and its message): a given
                # max_cycles skips it
                predicted = predicted_cycles(p) if max_cycles is None else None
                limit = max_cycles if max_cycles is not None else cycle_limit(predicted)
                write_atomic(self._part(i), json.dumps({
                    "script": scripts[-1], "max_cycles": limit,
                    "predicted_cycles": predicted}))
                sent += 1
        except BaseException:
            # the part the bench waits for next says cancel (not the one after it)
            write_atomic(self._part(sent), json.dumps({"cancel": True}))
            self._thread.join()
            self._tmp.cleanup()
            raise
        self._thread.join()
        try:
            if "error" in self._outcome:
                raise self._outcome["error"]
            sim_name, raw, violations, sdram_counts = self._outcome["value"]
        finally:
            self._tmp.cleanup()
        if violations:
            raise SdramTimingError(violations)
        build_s, sim_s = self.seconds["build"], self.seconds["sim"]
        results = []
        for p, script, r in zip(programs, scripts, raw):
            res = finish_run(p, script, r["status"], r["counters"], r["cyclog"], r["outputs"],
                             sim_name, raise_on_error=raise_on_error,
                             obuf_words=r.get("obuf"), run_seconds=r["run_seconds"],
                             wall_seconds=sim_s / len(programs))
            res.extra.update(load_seconds=r["load_seconds"], load_writes=r["load_writes"],
                             wait_seconds=r.get("wait_seconds", 0.0),
                             read_seconds=r.get("read_seconds", 0.0), build_seconds=build_s,
                             start_seconds=self.seconds.get("start", 0.0) / len(programs),
                             exit_seconds=self.seconds.get("exit", 0.0) / len(programs),
                             sdram_commands=sdram_counts)
            results.append(res)
        return results


def run_programs(programs: Sequence[StaProgram], simulator: str = "verilator",
                 idle: float = 0.0, backpressure: float = 0.0, seed: int = 0,
                 raise_on_error: bool = True, waves: Optional[str] = None,
                 backdoor: bool = False, max_cycles: Optional[int] = None) -> list[RunResult]:
    """Run ``programs`` one after another on one simulated StaCore.

    ``backdoor``: load memories and read outputs through VPI (fast) instead of the host
    port's streams (which get random ``idle``/``backpressure``). ``max_cycles``: how long
    each run may take from START to done/error (default :data:`WATCHDOG_FACTOR` times
    :func:`predicted_cycles` plus :data:`WATCHDOG_MARGIN`); a run over it raises
    RuntimeError with the bench's message. (:class:`Simulation` starts the process before
    the programs are ready.)"""
    if not programs:
        raise ValueError("no programs to run")
    return Simulation(programs[0].cfg, simulator, waves).run(
        programs, idle=idle, backpressure=backpressure, seed=seed,
        raise_on_error=raise_on_error, backdoor=backdoor, max_cycles=max_cycles)


def run_program(program: StaProgram, **kwargs) -> RunResult:
    return run_programs([program], **kwargs)[0]


def run_gemms(cfg: StaConfig, specs, references=None, **kwargs) -> list[dict]:
    """Run GEMMs (:class:`~nmaccel.model.sta_program.GemmSpec`) on RTL, each split by
    :func:`~nmaccel.model.sta_program.plan_gemm` into programs that fit the buffers, all in
    one simulation (``kwargs`` go to :func:`run_programs`).

    Returns one dict per spec: ``name``, ``mode`` ("sparse"/"dense"), ``shape`` (T, F, K),
    ``output``, ``cycles`` (hardware counters), ``predicted`` (cycle model; per program in
    ``program_cycles`` / ``program_predicted``), ``stalls``,
    ``utilization`` and ``bit_exact`` (against ``references[name]`` if given, else the
    golden GEMM).
    """
    import numpy as np

    from nmaccel.model.sta_cycles import performed_macs, program_cycles, utilization
    from nmaccel.model.sta_program import plan_gemm, run_gemm_golden
    programs, pieces = [], []
    for spec in specs:
        progs, combine = plan_gemm(spec, cfg)
        pieces.append((spec, len(programs), len(progs), combine))
        programs += progs
    results = run_programs(programs, **kwargs)
    rows = []
    for spec, start, count, combine in pieces:
        rs, ps = results[start:start + count], programs[start:start + count]
        out = combine([r.outputs for r in rs])
        want = references[spec.name] if references is not None else run_gemm_golden(spec, cfg)
        sparse = spec.mode == sta_isa.Mode.SPARSE
        per_program = [r.cycles for r in rs]
        per_program_model = [program_cycles(cfg, p.commands).total for p in ps]
        cycles = sum(per_program)
        rows.append({
            "name": spec.name, "mode": "sparse" if sparse else "dense",
            "shape": (int(spec.x.shape[0]), int(spec.features), int(spec.x.shape[1])),
            "output": out, "cycles": cycles,
            "predicted": sum(per_program_model),
            "program_cycles": per_program, "program_predicted": per_program_model,
            "stalls": sum(r.counters["STALLS"] for r in rs),
            "utilization": utilization(
                cfg, performed_macs(cfg, sum(p.useful_macs for p in ps), sparse), cycles),
            "bit_exact": bool(np.array_equal(out, want)), "programs": count,
            "run_seconds": sum(r.run_seconds for r in rs),
            "build_seconds": rs[0].extra.get("build_seconds"),
        })
    return rows
