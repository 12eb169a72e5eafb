"""Run STA programs on the generated Verilog with cocotb 2.x (Verilator or Icarus).

:func:`build` converts :class:`~nmaccel.hw.sta.core.StaCore` for a config to Verilog and
builds it once per (Verilog, simulator) in a cache directory (``$NMACCEL_BUILD_DIR`` or
``~/.cache/nmaccel/builds``); :func:`run_programs` loads and runs any number of programs in
one simulator process (:mod:`nmaccel.sim.sta_bench`) and returns a
:class:`~nmaccel.sim.sta_host.RunResult` per program.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from nmaccel.spec.config import StaConfig
from nmaccel.spec import sta_isa
from nmaccel.model.sta_program import StaProgram
from nmaccel.sim.simulators import (ICARUS_BUILD_ARGS, activate, build_logged,
                                    find_simulator, log_tail, run_bench)
from nmaccel.sim.sta_host import RunResult, finish_run, host_script

__all__ = ["build", "run_programs", "run_program", "run_gemms", "verilog_source", "cache_root",
           "verilog_key", "source_closure"]

TOPLEVEL = "sta_core"


def cache_root() -> Path:
    root = os.environ.get("NMACCEL_BUILD_DIR")
    return Path(root) if root else Path.home() / ".cache" / "nmaccel" / "builds"


def _module_file(name: str) -> Optional[Path]:
    import importlib.util
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def source_closure(module: str) -> list[Path]:
    """Source files of ``module`` and every ``nmaccel`` module it imports, transitively
    (read from the import statements, nothing is executed)."""
    import ast
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            continue
        seen[name] = path
        if path.name == "__init__.py":
            pkg = name
        else:
            pkg = name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.startswith("nmaccel")]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
                if base.startswith("nmaccel"):
                    todo.append(base)
                    todo += [f"{base}.{a.name}" for a in node.names]
        parent = name.rpartition(".")[0]
        if parent:
            todo.append(parent)
    return sorted(seen.values())


def verilog_key(cfg) -> str:
    """Cache key of the STA Verilog for ``cfg``: the config, the Amaranth version and the
    source of :mod:`nmaccel.hw.sta.core` and every ``nmaccel`` module it imports."""
    import amaranth
    h = hashlib.sha256(cfg.to_json(sort_keys=True).encode())
    h.update(amaranth.__version__.encode())
    for path in source_closure("nmaccel.hw.sta.core"):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:20]


def verilog_source(cfg: StaConfig) -> str:
    """The core's Verilog for ``cfg``. Elaborating and converting ``ulx3s`` takes a minute or
    more, and :func:`build` needs the text on every call to find its cached model, so the text
    is kept in ``<cache_root>/verilog/``, keyed by :func:`verilog_key` (config, Amaranth
    version, the source of every module the core imports)."""
    path = cache_root() / "verilog" / f"sta_{verilog_key(cfg)}.v"
    if path.exists():
        return path.read_text()
    from amaranth.back import verilog
    from nmaccel.hw.sta.core import StaCore
    text = verilog.convert(StaCore(cfg), name=TOPLEVEL)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return text


def build(cfg: StaConfig, simulator: str = "verilator", waves: bool = False) -> tuple[Path, str]:
    """Build (or reuse) the simulation model; returns ``(build_dir, simulator name)``."""
    sim = activate(find_simulator(simulator))
    src = verilog_source(cfg)
    flags = f"|{' '.join(ICARUS_BUILD_ARGS)}" if sim.name == "icarus" else ""
    key = hashlib.sha256(f"{src}|{sim.name}|{sim.version}|{waves}{flags}".encode()).hexdigest()[:16]
    bdir = cache_root() / f"sta_{sim.name}_{key}"
    marker = bdir / "nmaccel_built"
    if not marker.exists():
        from cocotb_tools.runner import get_runner
        bdir.mkdir(parents=True, exist_ok=True)
        (bdir / f"{TOPLEVEL}.v").write_text(src)
        runner = get_runner(sim.name)
        extra = {"build_args": ["-Wno-fatal", "-O3"] + (["--trace-fst"] if waves else [])} \
            if sim.name == "verilator" else {"timescale": ("1ns", "1ps"),
                                             "build_args": list(ICARUS_BUILD_ARGS)}
        build_logged(runner, bdir / "build.log", pch_fix=True, sources=[bdir / f"{TOPLEVEL}.v"],
                     hdl_toplevel=TOPLEVEL, build_dir=bdir, always=True, waves=waves, **extra)
        marker.write_text(key)
    return bdir, sim.name


#: A run's cycle limit (START to done/error) is ``WATCHDOG_FACTOR`` times the cycle model's
#: prediction plus ``WATCHDOG_MARGIN``.
WATCHDOG_FACTOR = 2
WATCHDOG_MARGIN = 10_000


def predicted_cycles(program: StaProgram) -> int:
    """Cycles the core should take from START to done for ``program``.

    Parameters
    ----------
    program
        The program.

    Returns
    -------
    int
        :func:`~nmaccel.model.sta_cycles.program_cycles`' total; for a program the model
        rejects (a bad command, at which the core stops with an error) that of its longest
        accepted prefix (0 if none).
    """
    from nmaccel.model.sta_cycles import program_cycles
    for n in range(len(program.commands), 0, -1):
        try:
            return program_cycles(program.cfg, program.commands[:n]).total
        except ValueError:
            continue
    return 0


def run_programs(programs: Sequence[StaProgram], simulator: str = "verilator",
                 idle: float = 0.0, backpressure: float = 0.0, seed: int = 0,
                 raise_on_error: bool = True, waves: Optional[str] = None,
                 backdoor: bool = False, max_cycles: Optional[int] = None) -> list[RunResult]:
    """Run ``programs`` one after another on one simulated StaCore.

    ``backdoor``: load memories and read outputs through VPI (fast) instead of the host
    port's streams (which get random ``idle``/``backpressure``). ``max_cycles``: how long
    each run may take from START to done/error (default :data:`WATCHDOG_FACTOR` times
    :func:`predicted_cycles` plus :data:`WATCHDOG_MARGIN`); a run over it raises
    RuntimeError with the bench's message."""
    if not programs:
        raise ValueError("no programs to run")
    cfg = programs[0].cfg
    if any(p.cfg != cfg for p in programs):
        raise ValueError("all programs of one simulation must share one StaConfig")
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner
    t0 = time.perf_counter()
    bdir, sim_name = build(cfg, simulator, waves=bool(waves))
    build_s = time.perf_counter() - t0
    scripts = [host_script(p) for p in programs]
    predicted = [predicted_cycles(p) for p in programs]
    limits = [max_cycles if max_cycles is not None else WATCHDOG_FACTOR * c + WATCHDOG_MARGIN
              for c in predicted]
    with tempfile.TemporaryDirectory(prefix="nmaccel_sta_") as tmp:
        job, out = Path(tmp) / "job.json", Path(tmp) / "out.json"
        job.write_text(json.dumps({"runs": scripts, "idle": idle, "backpressure": backpressure,
                                   "seed": seed, "addr_bits": sta_isa.addr_bits(cfg),
                                   "backdoor": backdoor, "max_cycles": limits,
                                   "predicted_cycles": predicted}))
        runner = get_runner(sim_name)
        t1 = time.perf_counter()
        log_level = os.environ.get("COCOTB_LOG_LEVEL", "WARNING")
        xml = run_bench(runner, hdl_toplevel=TOPLEVEL, hdl_toplevel_lang="verilog",
                        test_module="nmaccel.sim.sta_bench", build_dir=bdir, test_dir=tmp,
                        results_xml=str(Path(tmp) / "results.xml"),
                        extra_env={"NMACCEL_STA_JOB": str(job), "NMACCEL_STA_OUT": str(out),
                                   "COCOTB_LOG_LEVEL": log_level},
                        waves=bool(waves), log_file=Path(tmp) / "sim.log")
        sim_s = time.perf_counter() - t1
        num, failed = get_results(Path(xml)) if Path(xml).exists() else (0, 0)
        if num != 1 or failed or not out.exists():
            raise RuntimeError(f"cocotb STA bench failed on {sim_name}; the simulation log "
                               f"ends:\n{log_tail(Path(tmp) / 'sim.log', 40)}")
        raw = json.loads(out.read_text())["results"]
        if waves:
            for cand in list(Path(tmp).glob("*.fst")) + list(Path(tmp).glob("*.vcd")) \
                    + list(bdir.glob("*.fst")) + list(bdir.glob("*.vcd")):
                Path(waves).write_bytes(cand.read_bytes())
                break
    results = []
    for p, script, r in zip(programs, scripts, raw):
        res = finish_run(p, script, r["status"], r["counters"], r["cyclog"], r["outputs"],
                         sim_name, raise_on_error=raise_on_error, obuf_words=r.get("obuf"),
                         run_seconds=r["run_seconds"],
                         wall_seconds=sim_s / len(programs))
        res.extra.update(load_seconds=r["load_seconds"], load_writes=r["load_writes"],
                         build_seconds=build_s)
        results.append(res)
    return results


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
    from nmaccel.model.sta_cycles import program_cycles, utilization
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
            "utilization": utilization(cfg, sum(p.useful_macs for p in ps), cycles, sparse),
            "bit_exact": bool(np.array_equal(out, want)), "programs": count,
            "run_seconds": sum(r.run_seconds for r in rs),
            "build_seconds": rs[0].extra.get("build_seconds"),
        })
    return rows
