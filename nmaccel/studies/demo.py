"""``nmaccel demo``: real workloads on the RTL, next to PyTorch on this machine's CPU.

* MiniLM-L6 layer ``--layer`` (``--seq`` real tokens) on the STA ``--preset`` RTL, whole layer
  on chip, in the ``--nm`` pattern and in dense mode (:func:`nmaccel.studies.sweep.run_point`);
* ``--images`` digits test images through the adder and binary conv nets on the conv engine
  RTL (:func:`nmaccel.studies.report.conv_point`);
* PyTorch CPU time for the same work (:mod:`nmaccel.studies.baselines`).

Prints bit-exact verdicts, cycles, utilization, projected time at the board's post-route fmax
(:mod:`nmaccel.boards.measured`; "fmax not measured" until a board build exists) and the PyTorch
time, as a table, and draws one PNG. The RTL models build first (both at once with ``--jobs
2``; cached afterwards), then the four simulations run ``--jobs`` at a time. ``--golden`` adds
the older golden-pipeline table (sentence-embedding cosine of int8 dense / N:M vs float).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from nmaccel.files import save_figure
from nmaccel.model.minilm import (
    embed_sentences_float,
    get_default_tokenizer,
    get_default_weights,
    tokenize,
)
from nmaccel.model.nm import bits_per_weight
from nmaccel.model.pipeline import QuantizedMiniLM, cosine
from nmaccel.spec.config import StaConfig

__all__ = ["rtl_demo", "format_rtl_table", "plot_demo", "demo_results", "format_table",
           "CONV_PRESET"]

#: the conv preset the digits nets run on (8x8 PEs, the shape of the board's conv build)
CONV_PRESET = "digits"


# ------------------------------------------------------------------------------ RTL demo
def _conv_build(preset: str) -> dict:
    from nmaccel.sim.conv_harness import build
    from nmaccel.spec.config import conv_preset
    t0 = time.perf_counter()
    build(conv_preset(preset))
    return {"conv_build_seconds": round(time.perf_counter() - t0, 2)}


def _call(task):
    fn, arg = task
    return fn(arg)


def rtl_demo(preset: str, nm, layer: int = 0, seq: int = 32, images: int = 50,
             board: str = "ulx3s", jobs: int = 2, progress: bool = True,
             weights: str = "auto") -> dict:
    """Run the demo's RTL simulations and baselines; returns a JSON-ready dict. ``weights``:
    the N:M run's weights (see :class:`nmaccel.studies.sweep.StaPoint`)."""
    from nmaccel.boards.measured import board_fmax, fmax_missing
    from nmaccel.studies.baselines import conv_net_baseline, minilm_layer_baseline
    from nmaccel.studies.report import conv_point
    from nmaccel.studies.sweep import StaPoint, build_point, map_parallel, run_point
    if nm is None:
        raise ValueError("--nm must be an N:M pattern (dense runs anyway), not 'dense'")
    t0 = time.perf_counter()
    sparse = StaPoint(preset, nm, layer, seq, weights=weights)
    dense = StaPoint(preset, None, layer, seq)
    builds = [(build_point, sparse)] + ([(build_point, dense)]
                                        if dense.build_key() != sparse.build_key() else [])
    runs = [(run_point, sparse), (run_point, dense)]
    if images:
        builds.append((_conv_build, CONV_PRESET))
        runs += [(conv_point, (net, images, CONV_PRESET)) for net in ("adder", "binary")]
    bar = tqdm(total=1 + len(builds) + len(runs), desc="nmaccel demo", unit="step",
               disable=not progress)
    bar.set_postfix_str("PyTorch baselines")
    base = {"minilm_layer": minilm_layer_baseline(seq, layer, repeats=30)}
    if images:
        base["conv"] = {net: conv_net_baseline(net, images, repeats=10)
                        for net in ("adder", "binary")}
    bar.update(1)
    bar.set_postfix_str("building RTL models (cached after the first run)")
    t_build = time.perf_counter()
    map_parallel(_call, builds, jobs, progress=False, on_result=lambda i, r: bar.update(1))
    t_run = time.perf_counter()
    bar.set_postfix_str("simulating")
    results = map_parallel(_call, runs, jobs, progress=False,
                           on_result=lambda i, r: bar.update(1))
    bar.close()
    fmax_sta = board_fmax(board, "sta", preset)
    fmax_note = None if fmax_sta else fmax_missing(board, "sta", preset)
    fmax_conv = board_fmax(board, "conv", _board_conv_preset(board))
    b = base["minilm_layer"]
    rows = []
    for r in results[:2]:
        us = r["cycles"]["total"] / fmax_sta if fmax_sta else None
        rows.append({"workload": f"MiniLM-L6 layer {layer}, {r['seq']} tokens",
                     "engine": f"STA {preset} {r['nm']}", "kind": "sta", "nm": r["nm"],
                     "weights": r.get("weights"),
                     "bit_exact": r["bit_exact"], "cycles": r["cycles"]["total"],
                     "predicted": r["cycles"]["predicted"], "utilization": r["utilization"],
                     "fmax_mhz": fmax_sta, "projected_us": us,
                     "torch_fp32_us": b["fp32"]["min_s"] * 1e6,
                     "torch_int8_us": b["int8_dynamic"]["min_s"] * 1e6, "accuracy": None,
                     "sim_seconds": r["wall_seconds"]})
    for r in results[2:]:
        t = base["conv"][r["net"]]
        cycles = r["cycles_per_image"] * images
        rows.append({"workload": f"digits, {images} images", "engine": f"conv {r['net']}",
                     "kind": "conv", "net": r["net"], "bit_exact": r["verdict"] == "PASS",
                     "cycles": round(cycles), "predicted": r["cycles_predicted"] * images,
                     "utilization": r["pe_utilization"], "fmax_mhz": fmax_conv,
                     "projected_us": cycles / fmax_conv if fmax_conv else None,
                     "torch_fp32_us": t["fp32"]["min_s"] * 1e6, "torch_int8_us": None,
                     "accuracy": r["accuracy_rtl"], "accuracy_float": r["accuracy_float"]})
    dense_cycles = rows[1]["cycles"]
    rows[0]["speedup_vs_dense"] = round(dense_cycles / rows[0]["cycles"], 3)
    return {"preset": preset, "nm": f"{nm[0]}:{nm[1]}", "layer": layer, "seq": seq,
            "images": images, "board": board, "rows": rows, "baselines": base,
            "fmax_note": fmax_note,
            "sdram": sdram_projection(preset, nm, seq, fmax_sta),
            "seconds": {"baselines": round(t_build - t0, 1), "build": round(t_run - t_build, 1),
                        "simulate": round(time.perf_counter() - t_run, 1),
                        "total": round(time.perf_counter() - t0, 1)}}


def sdram_projection(preset: str, nm, seq: int, fmax_mhz: Optional[float] = None,
                     target_mhz: float = 100.0) -> dict:
    """The layer with its weights fetched from the ULX3S SDRAM by its own program,
    double-buffered (:func:`nmaccel.studies.roofline.layer_schedule`: the cycle model, held
    to the RTL with the checking SDRAM model), for ``nm`` and dense, at the board build's
    post-route ``fmax_mhz`` (the SDRAM on the same clock) or, without a measured build, at
    the ``target_mhz``; ``{"error": ...}`` when the half buffers do not hold the layer."""
    from nmaccel.spec.config import sta_preset
    from nmaccel.spec.sdram import ULX3S_SDRAM
    from nmaccel.studies.roofline import layer_schedule
    clk_mhz = float(fmax_mhz) if fmax_mhz else target_mhz
    out = {"chip": ULX3S_SDRAM.name, "clk_mhz": round(clk_mhz, 2), "rows": [],
           "clock": "measured fmax" if fmax_mhz else "target clock, no measured build"}
    try:
        for pattern in (nm, None):
            out["rows"].append(layer_schedule(sta_preset(preset), pattern, seq, clk_mhz))
    except ValueError as exc:
        return {"error": str(exc)}
    return out


def format_sdram_line(res: dict) -> str:
    sd = res.get("sdram") or {}
    if "rows" not in sd:
        return f"weights from SDRAM: not projected ({sd.get('error', 'no projection')})"
    parts = [f"{r['pattern']} {r['latency_cycles'] / sd['clk_mhz'] / 1000:.2f} ms "
             f"({r['bytes'] / 1e6:.2f} MB, {r['bound']}-bound)" for r in sd["rows"]]
    return (f"with its weights fetched from the board's {sd['chip']} SDRAM at "
            f"{sd['clk_mhz']:g} MHz ({sd.get('clock', 'target clock')}; double-buffered "
            f"FETCHes; the cycle model, within 0.03% of "
            f"the RTL with the checking SDRAM model; the times above assume the weights on "
            f"chip): " + ", ".join(parts))


def _board_conv_preset(board: str) -> str:
    try:
        from nmaccel.boards.targets import board_target
        return board_target(board).presets.get("conv", "ulx3s")
    except Exception:
        return "ulx3s"


def _us(v: Optional[float]) -> str:
    if v is None:
        return "fmax not measured"
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.1f} µs"


def format_rtl_table(res: dict) -> str:
    we = max([17] + [len(r["engine"]) for r in res["rows"]])
    head = (f"{'workload':<29} {'engine':<{we}} {'exact':>5} {'cycles':>9} {'util':>6} "
            f"{'time @ fmax':>17} {'torch fp32':>10} {'torch int8':>10} {'vs fp32':>8} "
            f"{'accuracy':>8}")
    lines = [head, "-" * len(head)]
    for r in res["rows"]:
        ratio = (f"{r['torch_fp32_us'] / r['projected_us']:.2f}x" if r["projected_us"] else "—")
        acc = "" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}%"
        lines.append(f"{r['workload']:<29} {r['engine']:<{we}} "
                     f"{'yes' if r['bit_exact'] else 'NO':>5} "
                     f"{r['cycles']:>9} {100 * r['utilization']:>5.1f}% "
                     f"{_us(r['projected_us']):>17} {_us(r['torch_fp32_us']):>10} "
                     f"{_us(r['torch_int8_us']) if r['torch_int8_us'] else '—':>10} "
                     f"{ratio:>8} {acc:>8}")
    return "\n".join(lines)


def plot_demo(res: dict, path: Path) -> None:
    """Left: RTL cycles per workload; right: projected time at fmax vs PyTorch CPU (log)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = res["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    names = [r["engine"] for r in rows]
    axes[0].barh(names, [r["cycles"] for r in rows],
                 color=["tab:green" if r["bit_exact"] else "tab:red" for r in rows])
    axes[0].set_xlabel("RTL cycles (green: bit-exact)")
    axes[0].set_title(f"STA: MiniLM-L6 layer {res['layer']}, seq {res['seq']}; "
                      f"conv: {res['images']} digits")
    ax = axes[1]
    y = range(len(rows))
    acc = [r["projected_us"] or 0 for r in rows]
    ax.barh([i + 0.2 for i in y], acc, height=0.4, label="RTL at post-route fmax")
    ax.barh([i - 0.2 for i in y], [r["torch_fp32_us"] for r in rows], height=0.4,
            label="PyTorch CPU fp32", color="tab:gray")
    ax.set_yticks(list(y), names)
    ax.set_xscale("log")
    ax.set_xlabel("µs for the workload")
    ax.set_title("projected accelerator time vs PyTorch" if any(acc)
                 else "PyTorch CPU (board fmax not measured yet)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------ golden table
def _label(nm: Optional[tuple[int, int]], kind: str = "magnitude") -> str:
    return "int8 dense" if nm is None else f"int8 {nm[0]}:{nm[1]} {kind}"


def demo_results(cfg: StaConfig, patterns, texts, progress: bool = True) -> dict:
    """Embed ``texts`` with the float model and each integer golden pipeline: int8 dense and,
    per pattern, the magnitude-pruned baseline and the shipped distilled student (where one
    ships)."""
    from nmaccel.model.minilm_sparse import shipped_model, shipped_patterns
    weights, tokenizer = get_default_weights(), get_default_tokenizer()
    lengths = [len(ids) for ids in tokenize(list(texts), tokenizer, max_len=cfg.max_seq)]
    pipelines = [(None, "dense")]
    for p in patterns:
        if p is not None:
            pipelines.append((tuple(p), "magnitude"))
            if tuple(p) in shipped_patterns():
                pipelines.append((tuple(p), "shipped"))
    layers = len(weights.layers)
    bar = tqdm(total=len(pipelines) * (layers + len(texts)) + len(texts), disable=not progress,
               desc="golden pipelines", unit="step")
    start = time.perf_counter()
    ref = embed_sentences_float(list(texts), weights, tokenizer)
    bar.update(len(texts))
    rows = [{"pipeline": "float32 reference", "cos_mean": 1.0, "cos_min": 1.0,
             "bits_per_weight": 32.0, "macs": None, "seconds": time.perf_counter() - start}]
    for nm, kind in pipelines:
        start = time.perf_counter()
        bar.set_postfix_str(_label(nm, kind))
        model_weights = shipped_model(nm)[0] if kind == "shipped" else weights
        model = QuantizedMiniLM(cfg, nm, model_weights, tokenizer,
                                progress=lambda: bar.update(1))
        emb = model.embed(texts, progress=lambda: bar.update(1))
        cos = cosine(emb, ref)
        macs = {}
        for seq in lengths:
            for key, val in model.macs(seq).items():
                macs[key] = macs.get(key, 0) + val
        rows.append({"pipeline": _label(nm, kind), "weights": kind,
                     "nm": None if nm is None else f"{nm[0]}:{nm[1]}",
                     "cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
                     "cos_per_sentence": [float(c) for c in cos],
                     "bits_per_weight": 8.0 if nm is None else bits_per_weight(nm[0], nm[1],
                                                                               cfg.weight_bits),
                     "macs": macs["total"], "macs_linear": macs["linear"],
                     "macs_attention": macs["attention"],
                     "seconds": time.perf_counter() - start})
    bar.close()
    dense_macs = next(r["macs"] for r in rows if r["pipeline"] == "int8 dense")
    rows[0]["macs"] = dense_macs
    return {"config": cfg.to_dict(), "sentences": list(texts), "tokens": lengths, "rows": rows}


def format_table(results: dict) -> str:
    head = (f"{'pipeline':<24} {'cos mean':>9} {'cos min':>9} {'bits/weight':>12} "
            f"{'MACs (M)':>10} {'vs dense':>9}")
    dense = next(r["macs"] for r in results["rows"] if r["pipeline"] == "int8 dense")
    lines = [head, "-" * len(head)]
    for r in results["rows"]:
        lines.append(f"{r['pipeline']:<24} {r['cos_mean']:>9.4f} {r['cos_min']:>9.4f} "
                     f"{r['bits_per_weight']:>12.2f} {r['macs'] / 1e6:>10.2f} "
                     f"{r['macs'] / dense:>8.2f}x")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ CLI
