"""Whole MiniLM-L6 encoder layers on the STA RTL → reports/sta_layer.{md,json,png}.

For each weight pattern (default dense and 2:4) all six layers run on chip, chained through
VBUF, on the ``ulx3s`` preset (Verilator): bit-exact verdict per layer, cycles per command
class from the hardware counters, the analytic model's error, what softmax and vector work add
to the GEMMs, and the sentence-embedding cosine against the float model.

    nmaccel bench sta-layer [--seq 32] [--nm dense,2:4] [--preset ulx3s]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from nmaccel.files import save_figure, write_atomic, write_json

__all__ = ["run", "plot"]


def run(seq: int = 32, nm=(None, (2, 4)), preset: str = "ulx3s", out="reports/sta_layer",
        command: str = "nmaccel bench sta-layer") -> int:
    """All six layers per pattern in ``nm`` (``None`` = dense); ``out``: output path stem."""
    from nmaccel.model.minilm import MiniLMConfig
    from nmaccel.sim.sta_encoder import format_encoder_table, run_encoder
    from nmaccel.spec.config import sta_preset
    cfg = sta_preset(preset)
    t0 = time.perf_counter()
    results = []
    for pattern in nm:
        res = run_encoder(cfg, pattern, list(range(MiniLMConfig().layers)), seq=seq)
        print(format_encoder_table(res), file=sys.stderr)
        results.append(res)
    wall = time.perf_counter() - t0
    out = Path(out)
    summary = []
    for res in results:
        runs = res["runs"]
        tot = {k: sum(r["cycles"][k] for r in runs) for k in
               ("total", "predicted", "gemm_only", "sparse_gemm", "dense_gemm", "softmax_wait",
                "softmax_busy", "vector", "stalls", "barrier_wait", "linear_gemm",
                "attention_gemm", "vector_cmd", "tail") if all(k in r["cycles"] for r in runs)}
        summary.append({
            "nm": res["nm"], "bit_exact": res["bit_exact"],
            "cosine_vs_float": (res["embedding"]["min_cosine_vs_float"] if res["embedding"]
                                else None),
            "cycles": tot, "overhead": round(tot["total"] / tot["gemm_only"] - 1, 4),
            "max_layer_overhead": max(r["cycles"]["overhead"] for r in runs),
            "model_error": round(tot["predicted"] / tot["total"] - 1, 4),
            "max_layer_model_error": max(abs(r["cycles"]["model_error"]) for r in runs),
            "sim_cycles_per_second": res["sim_cycles_per_second"]})
    dense = next((s for s in summary if s["nm"] == "dense"), None)
    for s in summary:
        s["speedup_vs_dense"] = round(dense["cycles"]["total"] / s["cycles"]["total"], 3) \
            if dense else None
    data = {"command": command,
            "preset": preset, "seq": seq, "wall_seconds": round(wall, 1),
            "summary": summary, "runs": results}
    write_json(out.with_suffix(".json"), data)
    lines = [f"# Whole MiniLM-L6 encoder on the STA RTL ({preset}, seq {seq})", "",
             f"Command: `{data['command']}` ({wall:.0f} s wall). All six layers run on chip, "
             "chained through VBUF (Verilator); cycles are hardware counters, summed over the "
             "segments of each layer (host weight loading between segments not counted).", "",
             "| pattern | bit-exact | cosine vs float | cycles (6 layers) | model error | "
             "GEMMs alone | softmax+vector add | speedup vs dense |",
             "|---|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['nm']} | {'yes' if s['bit_exact'] else 'NO'} | "
                     f"{s['cosine_vs_float']} | "
                     f"{s['cycles']['total']} | {s['model_error'] * 100:+.2f}% | "
                     f"{s['cycles']['gemm_only']} | {s['overhead'] * 100:.1f}% | "
                     f"{s['speedup_vs_dense']}x |")
    lines += ["", "Per layer:", ""]
    for res in results:
        lines += [f"**{res['nm']}**", "", "```", format_encoder_table(res), "```", ""]
    lines += ["`GEMMs alone` = sparse + dense GEMM command cycles − softmax waits; "
              "`softmax+vector add` = total / GEMMs alone − 1. Per layer: `sp.mode`/`dn.mode` = "
              "cycles of GEMM commands in sparse / dense mode (dense: every GEMM; 2:4: the "
              "attention GEMMs), `smwait` = their softmax waits.", ""]
    write_atomic(out.with_suffix(".md"), "\n".join(lines))
    plot(summary, out.with_suffix(".png"), preset, seq)
    print(f"wrote {out}.md/.json/.png")
    return 0 if all(s["bit_exact"] for s in summary) else 1


def plot(summary, path: Path, preset: str, seq: int) -> None:
    """Stacked cycles per class. With the per-command classes (``linear_gemm``, …) the bars
    split linear projections from attention; older results only have the mode counters."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if all("linear_gemm" in s["cycles"] for s in summary):
        parts = [("linear_gemm", "linear GEMM commands (Q/K/V/O/FFN)"),
                 ("attention_gemm", "attention GEMM commands (QK, PV; incl. softmax waits)"),
                 ("vector_cmd", "vector commands (LayerNorm, requant)"),
                 ("tail", "final drain")]
        vals_of = {k: (lambda s, k=k: s["cycles"][k]) for k, _ in parts}
    else:
        parts = [("sparse_gemm", "sparse-mode GEMM commands"),
                 ("dense_gemm", "dense-mode GEMM commands (dense: all; 2:4: attention)"),
                 ("vector", "vector commands (LayerNorm, requant)"),
                 ("rest", "other (final drain, command overhead)")]
        vals_of = {"sparse_gemm": lambda s: s["cycles"]["sparse_gemm"],
                   "dense_gemm": lambda s: s["cycles"]["dense_gemm"],
                   "vector": lambda s: s["cycles"]["vector"],
                   "rest": lambda s: s["cycles"]["total"] - s["cycles"]["sparse_gemm"]
                   - s["cycles"]["dense_gemm"] - s["cycles"]["vector"]}
    bottom = [0] * len(summary)
    for key, name in parts:
        vals = [vals_of[key](s) for s in summary]
        ax.bar([s["nm"] for s in summary], vals, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylabel("cycles, 6 layers (RTL counters)")
    ax.set_title(f"MiniLM-L6, all six layers on the STA {preset} RTL, seq {seq}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)

