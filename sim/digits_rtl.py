"""The IDP-pruned digits Transformer classified on the STA RTL.

:func:`train_idp_digits` trains the dense digits Transformer and walks it down to N:M with
IDP (the same recipe as ``nmaccel idp --study digits``); :func:`digits_int_program` quantizes it.
:func:`run_digits_rtl` then compiles every encoder layer of every test image with
:func:`nmaccel.model.sta_layer.compile_layer` and runs all of them in **one** simulation:
consecutive layers chain on chip (a layer's int16 output stays in VBUF, where the next layer's
program expects its input), so only layer 0 loads an input. The last layer's output is read
back from the RTL and classified by the integer head on the host
(:meth:`DigitsIntProgram.classify`); the predictions are compared with the integer golden
model's (:meth:`DigitsIntProgram.predict`) and with the labels.

The host parts (float token embedding of 8 pixels per row, pooling + 10-way head) stay on the
host, as is usual for first/last layers; every encoder layer runs on the RTL.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time

import numpy as np

from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig

__all__ = ["format_digits_rtl", "run_digits_rtl", "train_idp_digits"]


def train_idp_digits(nm=(2, 4), seed: int = 0, dense_steps: int = 3000, budget: int = 1000,
                     layers: int = 2, batch_size: int = 64, lr: float = 1e-3,
                     progress: bool = False):
    """Dense digits Transformer (``dense_steps``) pruned to ``nm`` by IDP (``budget`` steps).

    Returns ``(dense_model, pruned_model, data)``; reproducible for a given ``seed``.
    """
    from tqdm import tqdm

    from nmaccel.model.digits_transformer import (
        classification_loss,
        digits_data,
        train_dense,
    )
    from nmaccel.model.idp import prune_nm

    data = digits_data()
    bar = tqdm(total=dense_steps + budget, disable=not progress, desc="train dense + IDP",
               unit="step")
    dense = train_dense(data, seed=seed, steps=dense_steps, batch_size=batch_size,
                        model_kwargs=dict(layers=layers), progress=lambda: bar.update(1))
    pruned = copy.deepcopy(dense)
    prune_nm(pruned, "idp", nm[0], nm[1], budget, classification_loss, data.sampler(batch_size),
             seed=seed, lr=lr, progress=lambda: bar.update(1))
    bar.close()
    return dense, pruned, data


def run_digits_rtl(program, images, labels=None, simulator: str = "verilator",
                   progress: bool = True, float_predictions=None, link: str = "backdoor",
                   runner=None) -> dict:
    """Classify ``images`` ``(N, 8, 8)`` with every encoder layer of ``program`` on the RTL.

    ``program`` is a :class:`nmaccel.model.digits_transformer.DigitsIntProgram`; its ``cfg``
    is the STA configuration that is built and simulated. Returns a JSON-ready dict: RTL and
    golden predictions, whether they are identical, whether every layer output was bit-exact,
    accuracies (when ``labels`` are given; float accuracy when ``float_predictions`` are) and
    cycles per image (hardware counters, all layers) with the cycle model's prediction.

    ``link`` names how the programs reach the core (``"backdoor"``: the core alone, the bench
    loads buffers directly; ``"uart"``: the board top, every word through the host driver and
    the simulated UART); ``runner(programs, simulator=...)`` runs them that way (default: the
    backdoor bench; the caller passes :func:`nmaccel.boards.simulated.run_over_uart` for the
    UART link, which lives in a layer above this one).
    """
    from nmaccel.model.sta_cycles import predicted_total
    from nmaccel.model.sta_layer import compile_layer
    from nmaccel.sim.sta_rtl import run_programs

    cfg: StaConfig = program.cfg
    if link not in ("backdoor", "uart"):
        raise ValueError(f"link must be 'backdoor' or 'uart', not {link!r}")
    if (runner is None) != (link == "backdoor"):
        raise ValueError(f"link {link!r} needs a runner exactly when it is not 'backdoor' (the "
                         f"backdoor bench is the default; 'uart': "
                         f"nmaccel.boards.simulated.run_over_uart)")
    why = sta_isa.attention_supported(cfg)
    if why:
        raise ValueError(why)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[1:] != (8, 8) or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (N, 8, 8) array, not shape {images.shape}")
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels has {labels.shape[0]} entries for {images.shape[0]} images")
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    t0 = time.perf_counter()
    programs, plan = [], []
    golden = []
    for idx, img in enumerate(images):
        x = program.encoder_input(img)
        for i, layer in enumerate(program.layers):
            lp = compile_layer(layer, x, cfg)
            if i > 0:
                lp.segments[0].images["VBUF"] = {}   # input left in VBUF by layer i-1 on chip
            plan.append((idx, i, lp, len(programs)))
            programs += lp.segments
            x = lp.expected
        golden.append(program.classify(x)[0])
    compile_s = time.perf_counter() - t0
    say(f"running {len(programs)} segments ({len(images)} images x {len(program.layers)} layers) "
        f"on {simulator} (building the core first if needed) ...")
    if runner is not None:
        results = runner(programs, simulator=simulator)
    else:
        results = run_programs(programs, simulator=simulator, backdoor=True)
    rtl_pred, exact, cycles, predicted = [], [], [0] * len(images), [0] * len(images)
    last = len(program.layers) - 1
    for idx, i, lp, start in plan:
        rs = results[start:start + len(lp.segments)]
        got = rs[-1].outputs["out"]
        exact.append(bool(np.array_equal(got, lp.expected)))
        cycles[idx] += sum(r.counters["CYCLES"] for r in rs)
        predicted[idx] += sum(predicted_total(p) for p in lp.segments)
        if i == last:
            rtl_pred.append(program.classify(got)[0])
    rtl_pred = np.array(rtl_pred, dtype=np.int64)
    golden = np.array(golden, dtype=np.int64)
    run_s = sum(r.run_seconds for r in results)
    out = {
        "config": cfg.to_dict(), "nm": "dense" if program.nm is None else
        f"{program.nm[0]}:{program.nm[1]}", "simulator": simulator, "link": link,
        "images": len(images),
        "layers": len(program.layers), "segments": len(programs),
        "bit_exact_layers": all(exact),
        "predictions_identical": bool(np.array_equal(rtl_pred, golden)),
        "mismatches": int((rtl_pred != golden).sum()),
        "rtl_predictions": rtl_pred.tolist(), "golden_predictions": golden.tolist(),
        "cycles_per_image": {"median": statistics.median(cycles), "min": min(cycles),
                             "max": max(cycles), "total": int(sum(cycles))},
        "model_cycles_per_image": {"median": statistics.median(predicted),
                                   "total": int(sum(predicted))},
        "model_error": round(sum(predicted) / sum(cycles) - 1, 5) if sum(cycles) else None,
        "sim_cycles_per_second": round(sum(cycles) / run_s) if run_s else None,
        "compile_seconds": round(compile_s, 2),
        "wall_seconds": round(time.perf_counter() - t0, 2),
    }
    if labels is not None:
        out["rtl_accuracy"] = float((rtl_pred == labels).mean())
        out["golden_accuracy"] = float((golden == labels).mean())
        if float_predictions is not None:
            fp = np.asarray(float_predictions).reshape(-1)
            out["float_accuracy"] = float((fp == labels).mean())
            out["rtl_float_agreement"] = float((fp == rtl_pred).mean())
    return out


def format_digits_rtl(res: dict) -> str:
    via = " behind the UART bridge, every word over the link" if res.get("link") == "uart" else ""
    lean = " (memory-lean core)" if res.get("config", {}).get("lean") else ""
    lines = [f"digits Transformer ({res['nm']}, {res['layers']} layers) on the STA RTL{lean}{via} "
             f"({res['simulator']}, {res['images']} images, {res['segments']} segments)",
             f"  predictions identical to the integer golden model: "
             f"{'yes' if res['predictions_identical'] else 'NO'} ({res['mismatches']} differ); "
             f"every layer output bit-exact: {'yes' if res['bit_exact_layers'] else 'NO'}"]
    if "rtl_accuracy" in res:
        acc = f"  accuracy: RTL {res['rtl_accuracy'] * 100:.2f}%, integer golden " \
              f"{res['golden_accuracy'] * 100:.2f}%"
        if "float_accuracy" in res:
            acc += f", float {res['float_accuracy'] * 100:.2f}%"
        lines.append(acc)
    c = res["cycles_per_image"]
    lines.append(f"  cycles/image (median): {c['median']} RTL, "
                 f"{res['model_cycles_per_image']['median']} model "
                 f"({res['model_error'] * 100:+.2f}%); simulation {res['sim_cycles_per_second']} "
                 f"cycles/s")
    return "\n".join(lines)
