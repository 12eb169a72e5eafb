"""Run conv-engine layers and whole digits nets on the RTL (Amaranth → Verilog → cocotb).

:func:`build` converts :class:`~nmaccel.hw.conv.engine.ConvEngine` for a
:class:`~nmaccel.spec.config.ConvConfig` to Verilog and compiles it once per simulator and
Verilog text in the build cache (:mod:`nmaccel.sim.build_cache`), so a (p_out, p_in, ...)
shape is compiled once and every mode / bit width / kernel / stride runs on it. :func:`run_jobs`
and :func:`run_net` send a request to :mod:`nmaccel.sim.conv_bench` and return its answer.
"""

from __future__ import annotations

import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nmaccel.model.conv_ref import ConvLayerJob, check_job_fits, unpack_outputs
from nmaccel.sim.build_cache import (
    cached_verilog,
    run_cached_model,
    simulation_build,
)
from nmaccel.spec.config import ConvConfig

__all__ = ["verilog_text", "build", "run_jobs", "run_net", "RtlResult", "TOP"]

TOP = "conv_top"


def verilog_text(cfg: ConvConfig) -> str:
    """Verilog of :class:`~nmaccel.hw.conv.engine.ConvEngine` for ``cfg`` (cached)."""
    def make() -> str:
        from amaranth.back import verilog

        from nmaccel.hw.conv.engine import ConvEngine
        return verilog.convert(ConvEngine(cfg), name=TOP)
    return cached_verilog("conv", ["nmaccel.hw.conv.engine"],
                          f"{cfg.to_json(sort_keys=True)}|{TOP}", make)


@dataclass
class _Build:
    sim: str
    build_dir: Path


def build(cfg: ConvConfig, simulator: str = "verilator", rebuild: bool = False) -> _Build:
    """Compile the engine for ``cfg`` on ``simulator`` (cached); raises
    :class:`~nmaccel.sim.simulators.SimulatorNotFound` if it is not installed."""
    # one C++ file: the split build of larger designs races on the precompiled header
    bdir, sim = simulation_build("conv", verilog_text(cfg), TOP, simulator,
                                 flags=("--output-split", "0"), rebuild=rebuild)
    return _Build(sim, bdir)


def _request(cfg: ConvConfig, req: dict, simulator: str):
    from nmaccel.sim.simulators import run_module
    req = dict(req, config=cfg.to_dict())

    def make(rebuild: bool) -> tuple[Path, str]:
        b = build(cfg, simulator, rebuild=rebuild)
        return b.build_dir, b.sim

    def simulate(bdir: Path, sim: str):
        with tempfile.TemporaryDirectory(prefix="nmaccel_conv_") as tmp:
            tmp = Path(tmp)
            rq, rs = tmp / "request.pkl", tmp / "result.pkl"
            with open(rq, "wb") as f:
                pickle.dump(req, f)
            run_module(sim, TOP, "nmaccel.sim.conv_bench", bdir, tmp,
                       {"GPI_LOG_LEVEL": "WARNING", "NMACCEL_CONV_REQUEST": str(rq),
                        "NMACCEL_CONV_RESULT": str(rs)}, "conv bench", result=rs)
            with open(rs, "rb") as f:
                return pickle.load(f)

    return run_cached_model(make, simulate)


@dataclass
class RtlResult:
    v: np.ndarray
    q: np.ndarray
    counters: dict


def run_jobs(cfg: ConvConfig, jobs, simulator: str = "verilator", seed: int = 0,
             gaps: float = 0.0, stall: float = 0.0,
             max_cycles: int | None = None) -> list[RtlResult]:
    """Run independent layers ``[(job, x), ...]`` on the RTL (one simulation).
    ``max_cycles``: cycle limit of each layer (default: the bench's
    :func:`~nmaccel.sim.conv_bench.layer_limit`); a layer over it raises RuntimeError."""
    checked = []
    for job, x in jobs:
        if not isinstance(job, ConvLayerJob):
            raise TypeError(f"expected a ConvLayerJob, not {type(job).__name__}")
        check_job_fits(job, cfg)
        checked.append((job, job.check_input(x)))
    out = _request(cfg, {"kind": "jobs", "jobs": checked, "seed": seed, "gaps": gaps,
                         "stall": stall, "max_cycles": max_cycles}, simulator)
    res = []
    for (job, _), (beats, cnt) in zip(checked, out):
        v, q = unpack_outputs(job, cfg, beats)
        res.append(RtlResult(v, q, cnt))
    return res


def run_net(cfg: ConvConfig, qnet, images, simulator: str = "verilator", seed: int = 0,
            gaps: float = 0.0, stall: float = 0.0, max_cycles: int | None = None) -> dict:
    """Run a :class:`~nmaccel.model.conv_nets.QuantNet` on the RTL for ``images``
    (N, 8, 8): ``{"logits": (N, 10), "counters": [[per layer] per image]}``.
    ``max_cycles``: cycle limit of each layer run, as in :func:`run_jobs`."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (8, 8):
        raise ValueError(f"images must have shape (N, 8, 8), not {images.shape}")
    for job in qnet.jobs:
        check_job_fits(job, cfg)
    return _request(cfg, {"kind": "net", "jobs": qnet.jobs, "inputs": qnet.inputs,
                          "images": images.astype(np.int64), "seed": seed, "gaps": gaps,
                          "stall": stall, "max_cycles": max_cycles}, simulator)
