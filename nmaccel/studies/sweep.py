"""Run sweep points in parallel: local processes (``--jobs``) or a Dask cluster (``--dask``).

A sweep point is a picklable, hashable description of one simulation (:class:`StaPoint`: a
MiniLM-L6 layer on the STA RTL for one preset and N:M pattern). :func:`run_sweep` runs
points in two stages so that no simulator model is ever built twice or twice at once:

1. **build** — one task per distinct build (:meth:`StaPoint.build_key`: the RTL config and
   simulator; dense runs on the preset's own build), in parallel; builds land in the build
   cache (:mod:`nmaccel.sim.build_cache`);
2. **run** — one task per point, in parallel, each in a fresh process (local pool with
   ``max_tasks_per_child=1``); on Dask each point runs on the worker that built its model.

:func:`map_parallel` is the generic engine (any picklable module-level function): used by
the report for builds, points and the conv workloads, and by the tests with cheap functions.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

__all__ = ["StaPoint", "build_point", "run_point", "map_parallel", "run_sweep",
           "connect_dask", "DaskUnreachable", "layer_macs"]


class DaskUnreachable(ConnectionError):
    """The Dask scheduler address could not be reached."""


@dataclass(frozen=True)
class StaPoint:
    """MiniLM-L6 layer ``layer`` on ``seq`` tokens, whole layer on the STA RTL built from
    ``preset`` with weight pattern ``nm`` (``None``: dense mode on the preset's own build).
    ``weights``: which N:M weights (``auto``: the shipped distilled student where one ships
    for ``nm``, else magnitude pruning; ``shipped``; ``magnitude``)."""

    preset: str
    nm: Optional[tuple[int, int]]
    layer: int = 0
    seq: int = 32
    simulator: str = "verilator"
    weights: str = "auto"

    @property
    def pattern(self) -> str:
        return "dense" if self.nm is None else f"{self.nm[0]}:{self.nm[1]}"

    @property
    def label(self) -> str:
        return f"{self.preset} {self.pattern}"

    def config(self):
        """The StaConfig the RTL is built for (the preset with ``n``, ``m`` = the pattern)."""
        from nmaccel.spec.config import sta_preset
        cfg = sta_preset(self.preset)
        return cfg if self.nm is None else cfg.replace(n=self.nm[0], m=self.nm[1])

    def build_key(self) -> tuple:
        return (self.config().to_json(sort_keys=True), self.simulator)


def build_point(point: StaPoint) -> dict:
    """Build (or find in the cache) the simulation model ``point`` runs on."""
    from nmaccel.sim.sta_rtl import build
    t0 = time.perf_counter()
    bdir, sim = build(point.config(), point.simulator)
    return {"point": point.label, "build_dir": str(bdir), "simulator": sim,
            "seconds": round(time.perf_counter() - t0, 2), "worker": _dask_worker()}


def run_point(point: StaPoint) -> dict:
    """Run ``point`` on RTL (:func:`nmaccel.sim.sta_encoder.run_encoder`) and summarize it:
    cycles per command class, model prediction, utilization, bit-exact verdict."""
    from nmaccel.model.sta_cycles import utilization
    from nmaccel.sim.sta_encoder import run_encoder
    from nmaccel.spec.config import sta_preset
    os.environ.setdefault("GPI_LOG_LEVEL", "WARNING")   # no GPI start-up banner per run
    t0 = time.perf_counter()
    res = run_encoder(sta_preset(point.preset), point.nm, [point.layer], point.seq,
                      simulator=point.simulator, progress=False, weights=point.weights)
    run = res["runs"][0]
    cfg = point.config()
    c = run["cycles"]
    macs = layer_macs(run["tokens"], point.nm)
    if macs["dense_equivalent"] != run["useful_macs"]:
        raise RuntimeError(f"MAC count {macs['dense_equivalent']} differs from the compiled "
                           f"layer's {run['useful_macs']}")
    return {"preset": point.preset, "nm": point.pattern, "weights": res["weights"],
            "layer": point.layer,
            "seq": run["tokens"], "simulator": point.simulator,
            "array": [cfg.rows, cfg.cols, cfg.lanes], "multipliers": cfg.multipliers,
            "bit_exact": run["bit_exact"], "cycles": c, "useful_macs": run["useful_macs"],
            "macs": macs,
            "utilization": round(utilization(cfg, macs["performed"], c["total"]), 4),
            "array_busy": round(c["mac_active"] / c["total"], 4),
            "segments": run["segments"], "sim_run_seconds": run["run_seconds"],
            "sim_cycles_per_second": res["sim_cycles_per_second"],
            "wall_seconds": round(time.perf_counter() - t0, 2), "worker": _dask_worker()}


def layer_macs(seq: int, nm) -> dict:
    """MACs of one MiniLM-L6 layer on ``seq`` tokens: ``linear`` (the six projections),
    ``attention`` (Q·Kᵀ and P·V), ``dense_equivalent`` (their sum) and ``performed``
    (multiplications the array does: N/M of the linear ones under an N:M pattern)."""
    from nmaccel.model.minilm import load_config
    mc = load_config()
    d, f = mc.d_model, mc.d_ff
    linear = seq * (4 * d * d + 2 * d * f)
    attention = 2 * seq * seq * d
    kept = linear if nm is None else linear * nm[0] // nm[1]
    return {"linear": linear, "attention": attention, "dense_equivalent": linear + attention,
            "performed": kept + attention}


def _dask_worker() -> Optional[str]:
    try:
        from distributed import get_worker
        return get_worker().address
    except (ImportError, ValueError):
        return None


def connect_dask(address: str, timeout: float = 5.0, loop=None):
    """A ``distributed.Client`` for the scheduler at ``address``; :class:`DaskUnreachable`
    (a clear one-line message) if it does not answer within ``timeout`` seconds.

    ``loop``: an already running Tornado ``IOLoop`` to run the client on (for example an
    in-process ``LocalCluster``'s ``cluster.loop``); by default the client starts its own IO
    loop thread. An error that is not a network one names the file and line it came from,
    since distributed's own assertions carry no message."""
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise DaskUnreachable(f"--dask needs the 'distributed' package ({exc})") from None
    try:
        return Client(address, timeout=timeout, loop=loop)
    except Exception as exc:  # OSError, TimeoutError, ValueError (bad address), ...
        where = ""
        if not isinstance(exc, (OSError, TimeoutError, ValueError)):
            import traceback
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f" at {Path(frame.filename).name}:{frame.lineno} `{frame.line}`"
        raise DaskUnreachable(f"cannot reach Dask scheduler at {address} within {timeout:g} s "
                              f"({type(exc).__name__}{where}: {exc})") from None


def _check_jobs(jobs) -> None:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be a positive integer, not {jobs!r}")


def map_parallel(fn: Callable, items: Sequence, jobs: int = 1, client=None,
                 progress: bool = True, desc: str = "", workers: Optional[Sequence] = None,
                 on_result: Optional[Callable] = None) -> list:
    """``[fn(item) for item in items]``, in parallel, results in input order.

    ``client`` (a ``distributed.Client``): one Dask task per item (``workers[i]``, if given,
    pins item ``i`` to that worker address). Otherwise ``jobs`` local processes (spawned,
    one fresh process per item); ``jobs == 1`` runs in this process. ``on_result(i, r)`` is
    called as results arrive. An exception in a task is raised here with the item named."""
    from tqdm import tqdm
    _check_jobs(jobs)
    items = list(items)
    results: list = [None] * len(items)
    bar = tqdm(total=len(items), desc=desc, unit="task", disable=not progress, leave=True)

    def done(i, value):
        results[i] = value
        bar.update(1)
        if on_result is not None:
            on_result(i, value)

    def fail(i, exc):
        bar.close()
        label = getattr(items[i], "label", repr(items[i]))
        raise RuntimeError(f"{desc or 'task'} {label} failed: {type(exc).__name__}: {exc}") \
            from exc

    try:
        if client is not None:
            from distributed import as_completed as dask_completed
            futures = {}
            for i, item in enumerate(items):
                kw = {"workers": [workers[i]], "allow_other_workers": False} \
                    if workers and workers[i] else {}
                futures[client.submit(fn, item, pure=False, **kw)] = i
            for fut in dask_completed(list(futures)):
                i = futures[fut]
                try:
                    value = fut.result()
                except Exception as exc:
                    fail(i, exc)
                done(i, value)
        elif jobs == 1 or len(items) <= 1:
            for i, item in enumerate(items):
                try:
                    value = fn(item)
                except Exception as exc:
                    fail(i, exc)
                done(i, value)
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(jobs, len(items)), mp_context=ctx,
                                     max_tasks_per_child=1) as pool:
                futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
                for fut in as_completed(futures):
                    i = futures[fut]
                    try:
                        value = fut.result()
                    except Exception as exc:
                        for other in futures:
                            other.cancel()
                        fail(i, exc)
                    done(i, value)
    finally:
        bar.close()
    return results


def run_sweep(points: Sequence, jobs: int = 1, client=None, progress: bool = True,
              build_fn: Callable = build_point, run_fn: Callable = run_point,
              on_result: Optional[Callable] = None) -> dict:
    """Build every distinct model once (in parallel), then run every point (in parallel).

    Returns ``{"builds": [...], "points": [...], "build_seconds", "run_seconds"}``;
    ``points[i]`` is ``run_fn(points[i])``. Points need ``build_key()``."""
    _check_jobs(jobs)
    points = list(points)
    groups: dict = {}
    for p in points:
        groups.setdefault(p.build_key(), p)
    t0 = time.perf_counter()
    builds = map_parallel(build_fn, list(groups.values()), jobs, client, progress,
                          desc="build RTL models")
    t1 = time.perf_counter()
    workers = None
    if client is not None:
        where = {key: b.get("worker") for key, b in zip(groups, builds)}
        workers = [where[p.build_key()] for p in points]
    results = map_parallel(run_fn, points, jobs, client, progress, desc="run sweep points",
                           workers=workers, on_result=on_result)
    return {"builds": builds, "points": results, "build_seconds": round(t1 - t0, 1),
            "run_seconds": round(time.perf_counter() - t1, 1)}
