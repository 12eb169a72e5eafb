"""A MiniLM-L6 layer's GEMMs one by one on the STA RTL (the MAC-array study of
``nmaccel sim sta --gemms-only``): Q, K, V, O, FFN1, FFN2 and per-head Q·Kᵀ from host
memory, each split into programs that fit the buffers, all in one simulation.
"""

from __future__ import annotations

import sys
import time

from nmaccel.spec.config import StaConfig

__all__ = ["run_layer_gemms", "format_gemm_table"]


def run_layer_gemms(cfg: StaConfig, nm, layer: int, seq: int, heads: int | None = None,
                    simulator: str = "verilator", waves=None, progress: bool = True) -> dict:
    """Run the layer's GEMMs on RTL; returns a JSON-ready dict (see module docstring).
    ``heads``: how many heads' Q·Kᵀ to run (default: all of the model's)."""
    from nmaccel.model.minilm import MiniLMConfig
    from nmaccel.model.sta_workloads import minilm_layer_gemms
    from nmaccel.sim.sta_rtl import run_gemms
    all_heads = MiniLMConfig().heads
    heads = all_heads if heads is None else heads
    if nm is not None:
        cfg = cfg.replace(n=nm[0], m=nm[1])
    if not 0 <= heads <= all_heads:
        raise ValueError(f"heads must be in [0, {all_heads}], not {heads}")
    t0 = time.perf_counter()
    wl = minilm_layer_gemms(cfg, nm, seq, index=layer, heads=heads,
                            include=("linear", "scores") if heads else ("linear",))
    if progress:
        print(f"running {len(wl.gemms)} GEMMs on {simulator} ...", file=sys.stderr)
    runs = run_gemms(cfg, wl.gemms, wl.references, simulator=simulator, backdoor=True,
                     waves=waves)
    rows, totals = [], {"sparse": 0, "dense": 0, "stalls": 0, "cycles": 0, "predicted": 0}
    for r in runs:
        rows.append({"gemm": r["name"], "mode": r["mode"], "shape": list(r["shape"]),
                     "cycles": r["cycles"], "predicted": r["predicted"], "stalls": r["stalls"],
                     "utilization": round(r["utilization"], 4), "bit_exact": r["bit_exact"],
                     "programs": r["programs"]})
        totals[r["mode"]] += r["cycles"]
        totals["stalls"] += r["stalls"]
        totals["cycles"] += r["cycles"]
        totals["predicted"] += r["predicted"]
    all_exact = all(r["bit_exact"] for r in runs)
    run_s = sum(r["run_seconds"] for r in runs)
    total_cycles = totals["cycles"]
    return {"config": cfg.to_dict(), "layer": layer, "seq": seq,
            "nm": "dense" if nm is None else f"{nm[0]}:{nm[1]}", "simulator": simulator,
            "bit_exact": all_exact, "gemms": rows, "totals": totals,
            "sim_cycles_per_second": round(total_cycles / run_s) if run_s else None,
            "wall_seconds": round(time.perf_counter() - t0, 2)}


def format_gemm_table(res: dict) -> str:
    lines = [f"{'GEMM':8} {'mode':6} {'T x F x K':>16} {'cycles':>9} {'model':>9} {'stalls':>7} "
             f"{'util':>6} exact"]
    for r in res["gemms"]:
        shape = "x".join(str(v) for v in r["shape"])
        lines.append(f"{r['gemm']:8} {r['mode']:6} {shape:>16} {r['cycles']:>9} "
                     f"{r['predicted']:>9} {r['stalls']:>7} {r['utilization']:>6.3f} "
                     f"{'yes' if r['bit_exact'] else 'NO'}")
    t = res["totals"]
    lines.append(f"total cycles {t['cycles']} (model {t['predicted']}): sparse GEMM {t['sparse']}, "
                 f"dense GEMM {t['dense']}, stalls {t['stalls']}; "
                 f"simulation {res['sim_cycles_per_second']} cycles/s")
    return "\n".join(lines)
