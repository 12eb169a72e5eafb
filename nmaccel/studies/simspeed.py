"""Simulation speed of one STA design on Amaranth's simulator, Icarus and Verilator.

The same :class:`~nmaccel.hw.sta.core.StaCore` (a preset with an N:M pattern) runs the same
program on each simulator: a sparse GEMM of MiniLM-L6 layer 0 (``tokens`` real activations ×
the first ``features`` output features of the Q projection, magnitude-pruned to the
pattern), checked bit-exact against the golden GEMM. Speed = clock cycles of the run ÷ wall
seconds of the run loop (loading memories and building the model not counted; both are
reported). A simulator that is not installed gets its reason instead of a number.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np

__all__ = ["speed_workload", "measure_simulator", "simulation_speed", "SIMULATORS"]

SIMULATORS = ("amaranth", "icarus", "verilator")


def speed_workload(cfg, tokens: int = 32, features: int = 64):
    """``(programs, combine, golden output, K)`` of the speed workload on ``cfg``."""
    from nmaccel.model.nm import compress, decompress
    from nmaccel.model.sta_program import GemmSpec, plan_gemm, run_gemm_golden
    from nmaccel.model.sta_workloads import minilm_layer_gemms
    nm = (cfg.n, cfg.m)
    wl = minilm_layer_gemms(cfg, nm, max(tokens, cfg.cols), include=("linear",))
    q = next(g for g in wl.gemms if g.name == "q")
    w = decompress(q.weight)[:features]
    spec = GemmSpec(q.x[:tokens], compress(w, *nm), q.bias[:features],
                    np.broadcast_to(q.mult, (q.features,))[:features],
                    np.broadcast_to(q.shift, (q.features,))[:features], q.osel, "q_slice")
    programs, combine = plan_gemm(spec, cfg)
    return programs, combine, run_gemm_golden(spec, cfg), spec.x.shape[1]


def measure_simulator(name: str, cfg, tokens: int = 32, features: int = 64) -> dict:
    """Run the speed workload on simulator ``name``; cycles/s or why it could not run."""
    from nmaccel.sim.simulators import SimulatorNotFound
    if name not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {name!r}")
    programs, combine, want, _ = speed_workload(cfg, tokens, features)
    t0 = time.perf_counter()
    try:
        if name == "amaranth":
            from nmaccel.sim.sta_amaranth import run_amaranth_programs
            results = run_amaranth_programs(programs)
            build_s = None
        else:
            from nmaccel.sim.sta_rtl import build, run_programs
            b0 = time.perf_counter()
            build(cfg, name)
            build_s = time.perf_counter() - b0
            results = run_programs(programs, simulator=name, backdoor=True)
    except SimulatorNotFound as exc:
        return {"simulator": name, "available": False, "reason": str(exc)}
    wall = time.perf_counter() - t0
    cycles = sum(r.cycles for r in results)
    run_s = sum(r.run_seconds for r in results)
    out = combine([r.outputs for r in results])
    return {"simulator": name, "available": True, "cycles": int(cycles),
            "run_seconds": round(run_s, 4),
            "cycles_per_second": round(cycles / run_s) if run_s else None,
            "wall_seconds": round(wall, 2),
            "build_seconds": None if build_s is None else round(build_s, 2),
            "bit_exact": bool(np.array_equal(out, want)), "programs": len(programs)}


def simulation_speed(cfg, simulators=SIMULATORS, tokens: int = 32, features: int = 64,
                     progress: Optional[callable] = None) -> dict:
    """Measure every simulator in ``simulators`` on the same design and program."""
    k = speed_workload(cfg, tokens, features)[3]
    rows = []
    for name in simulators:
        rows.append(measure_simulator(name, cfg, tokens, features))
        if progress:
            progress(name)
    return {"config": cfg.to_dict(), "workload": f"MiniLM-L6 layer 0 Q projection slice: "
            f"{tokens} tokens x {features} features x {k} inputs, "
            f"{cfg.n}:{cfg.m} sparse", "rows": rows}
