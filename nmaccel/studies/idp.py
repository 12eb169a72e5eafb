"""IDP vs one-shot magnitude pruning vs SR-STE at equal fine-tuning budgets (``nmaccel idp``).

Digits study (default)
    Per seed: train the dense digits Transformer (:mod:`nmaccel.model.digits_transformer`),
    then, for every N:M pattern and method, prune a copy with
    :func:`nmaccel.model.idp.prune_nm` for the same number of optimizer steps and measure test
    accuracy on the 360 fixed test images. Also reported: magnitude pruning without any
    fine-tuning (the starting point of one-shot), IDP's intermediate candidates, training
    time, and for the IDP model at ``--int-pattern`` the integer golden model's accuracy
    (what the STA runs) beside float accuracy. Writes JSON, Markdown and a PNG plot.
MiniLM study (``--study minilm`` or ``both``)
    Layer-wise, then end-to-end quantization-aware distillation of N:M MiniLM-L6 students from
    the dense model on the corpus of :mod:`nmaccel.model.corpus`, per pattern × method × seed
    (:func:`nmaccel.model.minilm_study.minilm_study`), the shipped students' metrics
    (:func:`shipped_summary`) and, with ``--minilm-rtl-sentences``, the shipped students on the
    STA RTL (:func:`minilm_rtl`). ``--study minilm-ship`` trains and writes a shipped student.
"""

from __future__ import annotations

import copy
import json
import math
import pathlib
import platform
import statistics
import time
from typing import Optional

import torch
from tqdm import tqdm

from nmaccel.files import save_figure, write_json
from nmaccel.model.pruning_methods import DEFAULT_PATTERNS, METHOD_LABELS, METHOD_SPECS

__all__ = ["digits_study", "digits_markdown", "digits_plot", "idp_phase_steps",
           "rtl_markdown", "DEFAULT_PATTERNS", "shipped_summary", "minilm_rtl"]



def _ms(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _key(nm: tuple[int, int]) -> str:
    return f"{nm[0]}:{nm[1]}"


def digits_study(patterns, methods, seeds: int, budget: int, dense_steps: int = 3000,
                 batch_size: int = 64, lr: float = 1e-3, layers: int = 2,
                 int_pattern: Optional[tuple[int, int]] = (2, 4), cfg=None,
                 progress: bool = True, idp_final_share: Optional[float] = None,
                 checkpoint: Optional[pathlib.Path] = None, resume: bool = False) -> dict:
    """Run the digits study; returns the results dict written to JSON (see module docstring).

    ``checkpoint``: a file the results so far are written to after every seed (atomically);
    with ``resume``, the seeds it holds are taken from it instead of trained again (the study
    is seeded, so a resumed run gives what an uninterrupted one gives). A checkpoint of a
    different plan (patterns, methods, budgets, ...) is refused."""
    from nmaccel.model.digits_transformer import (
        accuracy,
        classification_loss,
        digits_data,
        digits_int_program,
        predict,
        train_dense,
    )
    from nmaccel.model.idp import check_budget, prune_nm
    from nmaccel.model.nm import nm_mask

    budget = check_budget(budget)
    if idp_final_share is not None and not 0 < idp_final_share < 1:
        raise ValueError(f"idp_final_share must be a fraction in (0, 1), not {idp_final_share}")
    if int_pattern is not None and "idp" not in methods:
        raise ValueError("--int-pattern needs method 'idp' in --methods (it quantizes the IDP "
                         "model)")
    if int_pattern is not None and int_pattern not in patterns:
        raise ValueError(f"--int-pattern {_key(int_pattern)} must be one of --patterns")
    data = digits_data()
    sampler = data.sampler(batch_size)
    model_kwargs = dict(layers=layers)
    plan = {"patterns": [_key(p) for p in patterns], "methods": list(methods),
            "budget": budget, "dense_steps": dense_steps, "batch_size": batch_size, "lr": lr,
            "layers": layers, "int_pattern": None if int_pattern is None else _key(int_pattern),
            "config": None if cfg is None else cfg.to_dict(), "idp_final_share": idp_final_share}
    saved = _load_checkpoint(checkpoint, plan) if resume else None
    runs = saved["runs"] if saved else []
    dense_runs = saved["dense_runs"] if saved else []
    int_runs = saved["int_runs"] if saved else []
    done = {r["seed"] for r in dense_runs}
    todo = [seed for seed in range(seeds) if seed not in done]
    bar = tqdm(total=len(todo) * (dense_steps + len(patterns) * len(methods) * budget),
               disable=not progress, desc="nmaccel idp digits", unit="step", smoothing=0.05)
    for seed in todo:
        bar.set_postfix_str(f"seed {seed} dense")
        start = time.perf_counter()
        dense = train_dense(data, seed=seed, steps=dense_steps, batch_size=batch_size,
                            model_kwargs=model_kwargs, progress=lambda: bar.update(1))
        dense_runs.append({"seed": seed, "acc": accuracy(dense, data.x_test, data.y_test),
                           "seconds": time.perf_counter() - start})
        for nm in patterns:
            hard = copy.deepcopy(dense)
            with torch.no_grad():
                for lin in hard.prunable_linears().values():
                    lin.weight.mul_(nm_mask(lin.weight, *nm))
            runs.append({"seed": seed, "pattern": _key(nm), "method": "magnitude",
                         "acc": accuracy(hard, data.x_test, data.y_test), "seconds": 0.0,
                         "steps": 0})
            for meth in methods:
                bar.set_postfix_str(f"seed {seed} {_key(nm)} {meth}")
                base, mask_mode = METHOD_SPECS[meth]
                model = copy.deepcopy(dense)

                def on_phase(n_k, mdl):
                    return {"acc": accuracy(mdl, data.x_test, data.y_test)}

                res = prune_nm(model, base, nm[0], nm[1], budget, classification_loss, sampler,
                               seed=seed, lr=lr, idp_mask=mask_mode,
                               phase_steps=(idp_phase_steps(budget, nm, idp_final_share)
                                            if base == "idp" else None),
                               on_phase=on_phase if base == "idp" else None,
                               progress=lambda: bar.update(1))
                row = {"seed": seed, "pattern": _key(nm), "method": meth,
                       "acc": accuracy(model, data.x_test, data.y_test),
                       "seconds": res.seconds, "steps": res.steps,
                       "phase_steps": res.phase_steps,
                       "phases": [{"n": p["n"], "steps": p["steps"], "acc": p.get("acc"),
                                   "final_loss": p["final_loss"]} for p in res.phases]}
                runs.append(row)
                if meth == "idp" and int_pattern is not None and nm == tuple(int_pattern):
                    bar.set_postfix_str(f"seed {seed} integer golden")
                    t0 = time.perf_counter()
                    prog = digits_int_program(model, cfg, nm)
                    pred_int = prog.predict(data.x_test)
                    pred_float = predict(model, data.x_test).numpy()
                    labels = data.y_test.numpy()
                    int_runs.append({"seed": seed, "pattern": _key(nm),
                                     "float_acc": float((pred_float == labels).mean()),
                                     "int_acc": float((pred_int == labels).mean()),
                                     "agreement": float((pred_int == pred_float).mean()),
                                     "images": int(labels.size), "macs": prog.macs(),
                                     "seconds": time.perf_counter() - t0})
        if checkpoint is not None:
            write_json(checkpoint, {"plan": plan, "dense_runs": dense_runs, "runs": runs,
                                    "int_runs": int_runs}, indent=1)
    bar.close()
    keep = set(range(seeds))
    dense_runs = sorted((r for r in dense_runs if r["seed"] in keep), key=lambda r: r["seed"])
    runs = [r for r in runs if r["seed"] in keep]
    int_runs = [r for r in int_runs if r["seed"] in keep]
    out = _summarise(patterns, methods, seeds, budget, dense_steps, batch_size, lr, layers,
                     dense_runs, runs, int_runs)
    out["budget"]["idp_split"] = ("equal over phases" if idp_final_share is None else
                                  f"{idp_final_share:g} of the budget to the target phase, the "
                                  "rest equal over the earlier phases")
    return out


def _load_checkpoint(path: Optional[pathlib.Path], plan: dict) -> Optional[dict]:
    """The finished seeds of an interrupted study at ``path`` (``None`` if there is none)."""
    if path is None or not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the checkpoint {path}: {exc}") from None
    if saved.get("plan") != plan:
        raise ValueError(f"the checkpoint {path} is of another study plan; delete it or run "
                         "without --resume")
    return saved


def idp_phase_steps(budget: int, nm: tuple[int, int], final_share: Optional[float]
                    ) -> Optional[list[int]]:
    """IDP phase steps giving ``final_share`` of ``budget`` to the target phase (None: equal)."""
    from nmaccel.model.idp import idp_schedule, split_budget
    phases = len(idp_schedule(*nm))
    if final_share is None or phases == 1:
        return None
    return split_budget(budget, phases, [(1 - final_share) / (phases - 1)] * (phases - 1)
                        + [final_share])


def _summarise(patterns, methods, seeds, budget, dense_steps, batch_size, lr, layers, dense_runs,
               runs, int_runs) -> dict:
    from nmaccel.model.digits_transformer import DigitsTransformer
    cfg = DigitsTransformer(layers=layers).config
    summary = {}
    for nm in patterns:
        key = _key(nm)
        cells = {}
        for meth in ["magnitude"] + list(methods):
            rows = [r for r in runs if r["pattern"] == key and r["method"] == meth]
            acc_m, acc_s = _ms([r["acc"] for r in rows])
            sec_m, _ = _ms([r["seconds"] for r in rows])
            cells[meth] = {"acc_mean": acc_m, "acc_std": acc_s, "seconds_mean": sec_m,
                           "accs": [r["acc"] for r in rows]}
            if meth.startswith("idp"):
                per_phase = list(zip(*[[p["acc"] for p in r["phases"]] for r in rows]))
                cells[meth]["phase_acc_mean"] = [statistics.fmean(a) for a in per_phase]
                cells[meth]["schedule"] = [p["n"] for p in rows[0]["phases"]]
                cells[meth]["phase_steps"] = rows[0]["phase_steps"]
        others = [m for m in methods if not m.startswith("idp")]   # IDP variants are not "others"
        if "idp" in methods and others:
            best = max(others, key=lambda m: cells[m]["acc_mean"])
            cells["idp_minus_best_other"] = {
                "best_other": best,
                "delta": cells["idp"]["acc_mean"] - cells[best]["acc_mean"],
                # paired per seed: same dense model, same seed
                "paired_deltas": [a - b for a, b in zip(cells["idp"]["accs"],
                                                        cells[best]["accs"])]}
        summary[key] = cells
    dense_m, dense_s = _ms([r["acc"] for r in dense_runs])
    out = {
        "study": "digits", "task": "scikit-learn digits, 8 rows as tokens, fixed split "
                                   "(1437 train / 360 test)",
        "model": {"d_model": cfg.d_model, "heads": cfg.heads, "head_dim": cfg.head_dim,
                  "d_ff": cfg.d_ff, "layers": cfg.layers, "tokens": 8,
                  "pruned": "the 6 linears of every encoder layer (embedding and head dense)"},
        "budget": {"unit": "optimizer steps (AdamW, one mini-batch each)", "steps": budget,
                   "batch_size": batch_size, "lr": lr, "lr_schedule": "cosine per phase",
                   "dense_steps": dense_steps},
        "patterns": [_key(p) for p in patterns], "methods": list(methods), "seeds": seeds,
        "dense": {"acc_mean": dense_m, "acc_std": dense_s,
                  "seconds_mean": _ms([r["seconds"] for r in dense_runs])[0], "runs": dense_runs},
        "summary": summary, "runs": runs, "integer": int_runs,
        "host": {"python": platform.python_version(), "torch": torch.__version__,
                 "threads": torch.get_num_threads()},
    }
    if int_runs:
        out["integer_summary"] = {k: _ms([r[k] for r in int_runs])
                                  for k in ("float_acc", "int_acc", "agreement")}
    return out


def _pct(mean: float, std: float) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def _baseline_section(res: dict, base: dict, base_path) -> list[str]:
    """Paired per-seed differences of this run's IDP variants against ``base``'s methods."""
    same_dense = [r["acc"] for r in res["dense"]["runs"]] == \
        [r["acc"] for r in base["dense"]["runs"][: res["seeds"]]]
    ours = [m for m in res["methods"] if m.startswith("idp")]
    theirs = list(base["methods"])
    lines = [f"## Against the baseline run `{base_path}`", "",
             f"Baseline command: `{base.get('command', '?')}`. The dense models are "
             + ("identical (same seeds; dense accuracies match), so differences are paired per "
                "seed." if same_dense else "NOT identical: differences are not paired."), "",
             "Points, mean ± std over seeds [per-seed values], this run's method minus the "
             "baseline's:", "",
             "| pattern | " + " | ".join(f"{METHOD_LABELS[o]} (this) − {METHOD_LABELS[t]}"
                                        for o in ours for t in theirs) + " |",
             "|---|" + "---|" * (len(ours) * len(theirs))]
    for key in res["summary"]:
        if key not in base["summary"]:
            continue
        mine = {(r["method"], r["seed"]): r["acc"] for r in res["runs"] if r["pattern"] == key}
        other = {(r["method"], r["seed"]): r["acc"] for r in base["runs"] if r["pattern"] == key}
        cells = []
        for o in ours:
            for t in theirs:
                d = [100 * (mine[(o, s)] - other[(t, s)]) for s in range(res["seeds"])
                     if (t, s) in other]
                mean, std = _ms(d)
                cells.append(f"{mean:+.2f} ± {std:.2f} [" + ", ".join(f"{v:+.2f}" for v in d)
                             + "]")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return lines + [""]


def digits_markdown(res: dict, command: str, wall: float, baseline: Optional[dict] = None,
                    baseline_path: str = "") -> str:
    methods = res["methods"]
    lines = ["# IDP vs one-shot vs SR-STE on the digits Transformer", "",
             f"Command: `{command}`  ", f"Wall time: {wall:.0f} s "
             f"(torch {res['host']['torch']}, {res['host']['threads']} thread(s), CPU)", "",
             f"Model: {res['model']['layers']} post-LN encoder layer(s), d_model "
             f"{res['model']['d_model']}, {res['model']['heads']} heads of "
             f"{res['model']['head_dim']}, FFN {res['model']['d_ff']}, 8 tokens (pixel rows); "
             f"{res['model']['pruned']}. Data: {res['task']}.", "",
             f"Budget: every pruned model gets **{res['budget']['steps']} optimizer steps** "
             f"(AdamW, batch {res['budget']['batch_size']}, lr {res['budget']['lr']:g} with a "
             "cosine decay per phase) starting from the same dense model; IDP splits the steps "
             f"over its phases (schedule M−1, …, N; split: "
             f"{res['budget'].get('idp_split', 'equal over phases')}). Dense models: "
             f"{res['budget']['dense_steps']} steps each. Test accuracy in %, mean ± sample "
             f"std over {res['seeds']} seeds (seed s trains dense model s and drives its "
             "pruning runs). 'magnitude' = the dense model pruned by magnitude, no fine-tuning.",
             "",
             f"Dense accuracy: **{_pct(res['dense']['acc_mean'], res['dense']['acc_std'])}** "
             f"(training {res['dense']['seconds_mean']:.1f} s per model).", ""]
    head = ["pattern", "sparsity", "magnitude (no FT)"] + [METHOD_LABELS[m] for m in methods]
    if "idp" in methods and any(not m.startswith("idp") for m in methods):
        head.append("IDP − best other")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, cells in res["summary"].items():
        n, m = (int(v) for v in key.split(":"))
        row = [key, f"{100 * (1 - n / m):.1f}%", _pct(cells["magnitude"]["acc_mean"],
                                                       cells["magnitude"]["acc_std"])]
        best = max(methods, key=lambda mm: cells[mm]["acc_mean"])
        for meth in methods:
            txt = _pct(cells[meth]["acc_mean"], cells[meth]["acc_std"])
            row.append(f"**{txt}**" if meth == best else txt)
        if "idp_minus_best_other" in cells:
            d = cells["idp_minus_best_other"]
            row.append(f"{100 * d['delta']:+.2f} (vs {METHOD_LABELS[d['best_other']]})")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Training time per pruned model (s, mean over seeds and patterns):", ""]
    lines += ["| " + " | ".join(METHOD_LABELS[m] for m in methods) + " |",
              "|" + "---|" * len(methods),
              "| " + " | ".join(
                  f"{statistics.fmean(c[m]['seconds_mean'] for c in res['summary'].values()):.1f}"
                  for m in methods) + " |", ""]
    if "idp" in methods and any(not m.startswith("idp") for m in methods):
        deltas = [c["idp_minus_best_other"]["delta"] for c in res["summary"].values()
                  if "idp_minus_best_other" in c]
        wins = sum(d > 0 for d in deltas)
        vs_each = {m: statistics.fmean(c["idp"]["acc_mean"] - c[m]["acc_mean"]
                                       for c in res["summary"].values())
                   for m in methods if m != "idp"}
        lines += ["## Verdict", "",
                  f"IDP is the best method on {wins} of {len(deltas)} patterns. Averaged over "
                  "patterns, IDP minus " + ", ".join(
                      f"{METHOD_LABELS[m]}: {100 * v:+.2f} points" for m, v in vs_each.items())
                  + ". (The paper reports +6.7 points on average over other N:M methods on its "
                  "Transformer benchmarks.) Differences smaller than the std across seeds are "
                  "not significant.", ""]
        lines += ["Paired differences, IDP minus each method, per seed (same dense model, same "
                  "seed), in points: mean ± std over seeds [per-seed values]:", "",
                  "| pattern | " + " | ".join(f"IDP − {METHOD_LABELS[m]}" for m in methods
                                              if m != "idp") + " |",
                  "|---|" + "---|" * (len(methods) - 1)]
        for key in res["summary"]:
            acc = {(r["method"], r["seed"]): r["acc"] for r in res["runs"]
                   if r["pattern"] == key}
            cells = []
            for meth in (m for m in methods if m != "idp"):
                d = [100 * (acc[("idp", s)] - acc[(meth, s)]) for s in range(res["seeds"])]
                mean, std = _ms(d)
                cells.append(f"{mean:+.2f} ± {std:.2f} [" + ", ".join(f"{v:+.2f}" for v in d)
                             + "]")
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
        lines.append("")
        idp = {k: c["idp"] for k, c in res["summary"].items()}
        lines += ["IDP's intermediate candidates (test accuracy % after each phase, mean over "
                  "seeds):", ""]
        for key, cell in idp.items():
            m = key.split(":")[1]
            steps = "/".join(str(s) for s in cell["phase_steps"])
            cands = ", ".join(f"{n}:{m} {100 * a:.2f}" for n, a in
                              zip(cell["schedule"], cell["phase_acc_mean"]))
            lines.append(f"- {key} (steps {steps}): {cands}")
        lines.append("")
    if baseline is not None:
        lines += _baseline_section(res, baseline, baseline_path)
    if res.get("integer"):
        s = res["integer_summary"]
        pat = res["integer"][0]["pattern"]
        macs = res["integer"][0]["macs"]
        lines += [f"## Integer golden model (IDP {pat}, what the STA runs)", "",
                  f"Over {res['integer'][0]['images']} test images, {len(res['integer'])} seeds: "
                  f"float accuracy {_pct(*s['float_acc'])}, integer golden accuracy "
                  f"**{_pct(*s['int_acc'])}**, integer == float predictions on "
                  f"{_pct(*s['agreement'])} of images. Host: float embedding → int16; STA: "
                  "the encoder layers as `IntEncoderLayer` (int8 operands, compressed N:M "
                  "weights, integer softmax/LayerNorm/GELU); integer mean-pool + int8 head. "
                  f"Encoder MACs per image: {macs['linear']} linear (dense: "
                  f"{macs['linear_dense']}) + {macs['attention']} attention.", "",
                  "| seed | float acc | int acc | agreement |", "|---|---|---|---|"]
        for r in res["integer"]:
            lines.append(f"| {r['seed']} | {100 * r['float_acc']:.2f} | {100 * r['int_acc']:.2f} "
                         f"| {100 * r['agreement']:.2f} |")
        lines += ["", "Not yet run on RTL: the STA encoder-layer RTL and compiler are pending; "
                  "they should call `nmaccel.model.digits_transformer.digits_int_program` and "
                  "`DigitsIntProgram.predict(images, layer_runner=...)`.", ""]
    return "\n".join(lines)


def digits_plot(res: dict, path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(res["summary"], key=lambda k: (1 - int(k.split(":")[0]) / int(k.split(":")[1]),
                                                 int(k.split(":")[1])))
    xs = list(range(len(keys)))
    fig, ax = plt.subplots(figsize=(9, 4.2))
    for i, meth in enumerate(["magnitude"] + res["methods"]):
        mean = [100 * res["summary"][k][meth]["acc_mean"] for k in keys]
        std = [100 * res["summary"][k][meth]["acc_std"] for k in keys]
        ax.errorbar([x + 0.06 * (i - 1.5) for x in xs], mean, yerr=std, marker="o", capsize=3,
                    label=METHOD_LABELS.get(meth, "magnitude, no fine-tune"),
                    linestyle="--" if meth == "magnitude" else "-")
    ax.axhline(100 * res["dense"]["acc_mean"], color="k", linewidth=0.8, label="dense")
    ax.set_xticks(xs, [f"{k}\n{100 * (1 - int(k.split(':')[0]) / int(k.split(':')[1])):.1f}%"
                       for k in keys])
    ax.set_xlabel("N:M pattern (weight sparsity)")
    ax.set_ylabel("test accuracy (%)")
    lo = min(100 * c[m]["acc_mean"] for c in res["summary"].values() for m in res["methods"])
    ax.set_ylim(max(0, math.floor(lo - 3)), 100)
    ax.set_title(f"Digits Transformer, {res['budget']['steps']} fine-tune steps, "
                 f"{res['seeds']} seeds (mean ± std; magnitude-only clipped)", fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def rtl_markdown(res: dict) -> str:
    """Markdown of a ``--study rtl`` result."""
    pct = lambda v: f"{v * 100:.2f}%"  # noqa: E731
    c = res["cycles_per_image"]
    lines = [f"# IDP {res['nm']} digits Transformer on the STA RTL", "",
             f"Command: `{res['command']}` ({res['wall_seconds']:.0f} s wall, of which "
             f"{res['train_seconds']:.0f} s training).", "",
             f"Every encoder layer ({res['layers']}) of every test image runs on the STA RTL "
             f"({res['simulator']}, rows={res['config']['rows']} cols={res['config']['cols']} "
             f"lanes={res['config']['lanes']}, one simulation, layers chained on chip through "
             "VBUF); the host embeds the 8 pixel rows and runs the pooled 10-way integer head "
             "on the RTL's last-layer output.", "",
             "| images | predictions = integer golden | layer outputs bit-exact | "
             "RTL accuracy | integer golden | float (pruned) | float (dense) | "
             "cycles/image (median) | model |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| {res['images']} | {'yes' if res['predictions_identical'] else 'NO'} "
             f"({res['mismatches']} differ) | {'yes' if res['bit_exact_layers'] else 'NO'} | "
             f"{pct(res['rtl_accuracy'])} | {pct(res['golden_accuracy'])} | "
             f"{pct(res['float_accuracy'])} | {pct(res['dense_float_accuracy'])} | "
             f"{c['median']:g} | {res['model_cycles_per_image']['median']:g} "
             f"({res['model_error'] * 100:+.2f}%) |", "",
             f"Simulation: {res['sim_cycles_per_second']} cycles/s. MACs per image on the "
             f"array: {res['macs_per_image'].get('total', 'n/a')}.", ""]
    t = res.get("torch")
    if t:
        lines += [f"PyTorch on this CPU ({t['machine'].get('cpu', '?')}, "
                  f"{t['machine'].get('torch_threads', '?')} threads, torch "
                  f"{t['machine'].get('torch', '?')}): the float (pruned) model on the same "
                  f"{t['images']} images in one batch, {t['fp32']['min_s'] * 1e3:.2f} ms best of "
                  f"{t['fp32']['repeats']} (median {t['fp32']['median_s'] * 1e3:.2f} ms): "
                  f"{t['images_per_s']} images/s. `nmaccel report` divides a board build's "
                  "fmax by the cycles/image above.", ""]
    return "\n".join(lines)


# -- MiniLM: shipped students and the RTL check ------------------------------------------------


def shipped_summary(patterns) -> dict:
    """File, size and provenance (with its measured metrics) of each shipped student."""
    from nmaccel.model.minilm_sparse import shipped_model, shipped_path, shipped_patterns
    out = {}
    for nm in patterns:
        if tuple(nm) in shipped_patterns():
            path = shipped_path(nm)
            meta = shipped_model(tuple(nm))[1]
            out[_key(nm)] = {"file": f"model/trained/{path.name}", "bytes": path.stat().st_size,
                             "provenance": meta["provenance"]}
    return out


def minilm_rtl(patterns, sentences: int, preset: str = "ulx3s",
               simulator: str = "verilator", progress: bool = True) -> dict:
    """The shipped students on the STA RTL: all six layers of the first ``sentences`` held-out
    sentences (:func:`nmaccel.sim.sta_encoder.run_encoder`) on ``preset``: ``ulx3s``, the
    8x8x4 array of ``ulx3s_board`` (the integer golden's number formats, the same) with
    buffers that hold a layer of the corpus's longest sentences (64 tokens;
    ``ulx3s_board``'s hold 32, and the study stopped after minutes on a 41-token sentence),
    cosine to the dense float model and retrieval agreement of the RTL embeddings, each
    searched among the integer golden embeddings of all held-out sentences (with its own
    golden embedding replaced by the RTL one; the two are the same when the run is
    bit-exact)."""
    from nmaccel.model.corpus import corpus_split
    from nmaccel.model.minilm import get_default_weights
    from nmaccel.model.minilm_sparse import shipped_model, shipped_patterns
    from nmaccel.model.minilm_study import EVAL_PRESET, float_embeddings, int8_embeddings
    from nmaccel.sim.sta_encoder import run_encoder
    from nmaccel.spec.config import BUFFER_FIELDS, sta_preset
    cfg = sta_preset(preset)
    golden_values = sta_preset(EVAL_PRESET).to_dict()
    differ = {k for k, v in cfg.to_dict().items() if golden_values[k] != v}
    if differ - set(BUFFER_FIELDS):
        raise ValueError(f"preset {preset} must have the number formats of {EVAL_PRESET} "
                         f"(the integer golden's); it differs in {sorted(differ)}")
    held = list(corpus_split().held_out)
    ref = float_embeddings(get_default_weights(), held)
    out = {}
    for nm in patterns:
        if tuple(nm) not in shipped_patterns():
            continue
        t0 = time.perf_counter()
        golden = int8_embeddings(shipped_model(tuple(nm))[0], tuple(nm), held)
        res = run_encoder(cfg, tuple(nm), list(range(6)), None,
                          held[:sentences], simulator, progress=progress, weights="shipped",
                          keep_embeddings=True)
        rtl = torch.tensor(res["embedding"]["vectors"], dtype=torch.float32)
        cos = torch.nn.functional.cosine_similarity(rtl.double(), ref[:sentences].double())
        mixed = golden.clone()
        mixed[:sentences] = rtl
        sims_r, sims_m = ref.double() @ ref.double().T, mixed.double() @ mixed.double().T
        top1, overlap = [], []
        for i in range(sentences):
            a, b = sims_m[i].clone(), sims_r[i].clone()
            a[i] = b[i] = -math.inf
            na, nb = a.topk(10).indices.tolist(), b.topk(10).indices.tolist()
            top1.append(na[0] == nb[0])
            overlap.append(len(set(na) & set(nb)) / 10)
        out[_key(nm)] = {"weights": res["weights"], "preset": preset, "simulator": simulator,
                         "sentences": sentences, "bit_exact": res["bit_exact"],
                         "rtl_equals_golden": bool(torch.allclose(rtl, golden[:sentences],
                                                                  atol=1e-6)),
                         "cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
                         "top1": statistics.fmean(top1), "top10_overlap":
                         statistics.fmean(overlap), "tokens": res["sequences"],
                         "cycles": sum(r["cycles"]["total"] for r in res["runs"]),
                         "wall_seconds": round(time.perf_counter() - t0, 1)}
    return out
