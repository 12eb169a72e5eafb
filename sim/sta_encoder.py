"""Run MiniLM-L6 encoder layers entirely on the STA RTL and report what the counters say.

:func:`run_encoder` quantizes MiniLM-L6 (dense or N:M), compiles each selected layer with
:func:`nmaccel.model.sta_layer.compile_layer` and runs the segments of all layers and all
sequences in **one** simulation. Consecutive layers chain on chip: a layer's output stays in
VBUF, where the next layer's program expects its input, so only the first layer of each
sequence loads an input image. Each layer's output is read back and compared bit for bit with
the integer golden model; the sentence embedding (mean pool of the last layer) is compared
with the float model by cosine.

Cycle classes (hardware counters, summed over a layer's segments)
    ``sparse_gemm``/``dense_gemm``: cycles of linear / attention GEMM commands (including
    their barrier waits for the drain); ``softmax_wait``: cycles GEMMs waited for the softmax
    path; ``softmax_busy``: cycles the softmax path worked (overlapped with the array);
    ``vector``: LAYERNORM/REQUANT commands; ``stalls``: issue stalls for the drain.
    ``gemm_only`` = sparse + dense − softmax_wait; ``overhead`` = total / gemm_only − 1 (what
    softmax and vector work add on top of the GEMMs).
    By command (the per-command cycle log, classified by
    :func:`nmaccel.model.sta_layer.command_class`): ``linear_gemm``, ``attention_gemm``
    (including their softmax waits), ``vector_cmd`` and ``tail`` (total − the three: the
    final drain).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Optional

import numpy as np

from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig

__all__ = ["run_encoder", "layer_cycles"]


def layer_cycles(results, cfg: StaConfig, segments) -> dict:
    """Counter totals of one layer's segment results, per class, with the model's prediction."""
    from nmaccel.model.sta_cycles import program_cycles
    keys = {"CYCLES": "total", "SPARSE_CYCLES": "sparse_gemm", "DENSE_CYCLES": "dense_gemm",
            "SOFTMAX_WAIT": "softmax_wait", "SOFTMAX_BUSY": "softmax_busy",
            "VECTOR_CYCLES": "vector", "STALLS": "stalls", "BARRIER_WAIT": "barrier_wait",
            "MAC_ACTIVE": "mac_active", "FETCH_BUSY": "fetch_busy", "FETCH_WAIT": "fetch_wait"}
    out = {v: sum(r.counters[k] for r in results) for k, v in keys.items()}
    from nmaccel.model.sta_layer import COMMAND_CLASSES, command_class
    by_cmd = dict.fromkeys(COMMAND_CLASSES, 0)
    for r, p in zip(results, segments):
        for word, cyc in zip(p.commands, r.per_command):
            kind = command_class(sta_isa.command_from_word(cfg, word))
            if kind is not None:
                by_cmd[kind] += cyc
    out.update(by_cmd)
    out["tail"] = out["total"] - sum(by_cmd.values())
    out["segments"] = len(segments)
    out["gemm_only"] = out["sparse_gemm"] + out["dense_gemm"] - out["softmax_wait"]
    out["overhead"] = round(out["total"] / out["gemm_only"] - 1, 4) if out["gemm_only"] else None
    models = [program_cycles(cfg, p.commands) for p in segments]
    out["predicted"] = sum(m.total for m in models)
    if cfg.sdram_timing is not None:
        # weights from the SDRAM: what the transfer took, what the core waited for it, the
        # bytes it moved, and the cycles the layer would take with the weights on chip
        words = sum(m.fetch_words for m in models)
        out["fetch_bytes"] = words * cfg.sdram_timing.data_bits // 8
        out["compute"] = out["total"] - out["fetch_wait"]
        out["predicted_fetch_busy"] = sum(m.fetch_busy for m in models)
        out["predicted_fetch_wait"] = sum(m.fetch_wait for m in models)
    out["model_error"] = round(out["predicted"] / out["total"] - 1, 4) if out["total"] else None
    return out


def text_ids(cfg: StaConfig, texts: Sequence[str], truncate: bool = False,
             warn=None) -> list:
    """Token ids (``[CLS] ... [SEP]``) of each of ``texts`` for the accelerator ``cfg``.

    A text longer than ``cfg.max_seq`` tokens raises ValueError (before any work) unless
    ``truncate``: then it keeps its first ``max_seq - 1`` tokens and ``[SEP]``, and
    ``warn(line)`` (default: print to standard error) gets one line per cut text."""
    import torch

    from nmaccel.model.minilm import MiniLMConfig, get_default_tokenizer, tokenize
    mc = MiniLMConfig()
    if warn is None:
        warn = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    # tokenized without cutting (up to the model's positions), so that a text longer than
    # the accelerator's max_seq is refused or cut here, with a message, never silently
    ids_list = tokenize(list(texts), get_default_tokenizer(), max_len=mc.max_pos + 1)
    out = []
    for i, ids in enumerate(ids_list):
        if len(ids) > cfg.max_seq:
            more = "+" if len(ids) > mc.max_pos else ""
            what = (f"text {i + 1} has {len(ids)}{more} tokens, more than max_seq="
                    f"{cfg.max_seq} of the STA config")
            if not truncate:
                raise ValueError(f"{what} (--truncate cuts it to max_seq tokens)")
            warn(f"warning: {what}: cut to its first {cfg.max_seq} tokens (--truncate)")
            ids = torch.cat([ids[:cfg.max_seq - 1], ids[-1:]])
        out.append(ids)
    return out


def _prepare(cfg: StaConfig, nm, layers: Sequence[int], ids_list, weights: str, say):
    """Quantize MiniLM-L6 up to the last of ``layers`` and compile each run: ``(programs,
    plan, quantized model, weights label)``; ``plan`` holds ``(sequence, layer,
    LayerProgram, index of its first program)``."""
    from nmaccel.model.minilm_sparse import resolve_weights
    from nmaccel.model.pipeline import QuantizedMiniLM
    from nmaccel.model.sta_layer import compile_layer
    pattern = "dense" if nm is None else f"{nm[0]}:{nm[1]}"
    model_weights, weights_used = resolve_weights(nm, weights)
    say(f"quantizing MiniLM-L6 layers 0..{layers[-1]} ({pattern}, {weights_used} weights)")
    qm = QuantizedMiniLM(cfg, nm, weights=model_weights, num_layers=layers[-1] + 1)
    # Compile: golden inputs give each layer's expected output; layers after the first of a
    # chain take their input from VBUF (left there by the previous layer on chip).
    # With external memory each layer's weights have one place in the SDRAM, loaded with the
    # first program that uses them (later sequences find them there).
    programs, plan = [], []
    ext_at, ext_top = {}, 0
    for s_idx, ids in enumerate(ids_list):
        x = qm.quantize_input(ids)
        prev = None
        for i in range(layers[-1] + 1):
            if i in layers:
                lp = compile_layer(qm.layers[i], x, cfg, ext_base=ext_at.get(i, ext_top))
                if i in ext_at:
                    lp.segments[0].ext_image = {}
                else:
                    ext_at[i], ext_top = lp.ext_base, lp.ext_end
                if prev == i - 1:
                    lp.segments[0].images["VBUF"] = {}
                plan.append((s_idx, i, lp, len(programs)))
                programs += lp.segments
                x = lp.expected
                prev = i
            else:
                x = qm.layers[i].forward(x)
    return programs, plan, qm, weights_used


def run_encoder(cfg: StaConfig, nm, layers: Sequence[int], seq: Optional[int] = 32,
                texts: Optional[Sequence[str]] = None, simulator: str = "verilator",
                waves: Optional[str] = None, progress: bool = True,
                weights: str = "auto", keep_embeddings: bool = False,
                truncate: bool = False) -> dict:
    """Run ``layers`` (ascending, consecutive runs chain on chip) of MiniLM-L6 on RTL.

    Inputs: ``texts`` (each tokenized; one longer than ``max_seq`` is refused, or cut with a
    warning if ``truncate``: :func:`text_ids`) or one sequence of ``seq`` real tokens from
    the packaged prose. ``weights``: ``"auto"`` (the shipped distilled N:M student where one
    ships for ``nm``, else magnitude pruning), ``"shipped"`` or ``"magnitude"``
    (:func:`nmaccel.model.minilm_sparse.resolve_weights`). Embeddings are compared with the
    *dense* float model (``keep_embeddings``: the RTL embeddings go into the result too, as
    ``embedding["vectors"]``). Returns a JSON-ready dict.
    """
    import torch

    from nmaccel.model.minilm import (
        MiniLMConfig,
        get_default_weights,
        mean_pool,
        sentence_embedding,
    )
    from nmaccel.model.pipeline import cosine
    from nmaccel.model.sta_workloads import minilm_tokens
    from nmaccel.sim.sta_rtl import Simulation
    mc = MiniLMConfig()
    layers = sorted(set(int(i) for i in layers))
    if not layers or layers[0] < 0 or layers[-1] >= mc.layers:
        raise ValueError(f"layers must be in 0..{mc.layers - 1}, not {layers}")
    if nm is not None:
        cfg = cfg.replace(n=nm[0], m=nm[1])
    if not texts and (seq is None or seq > cfg.max_seq):
        raise ValueError(f"sequence length {seq} exceeds the configured maximum "
                         f"max_seq={cfg.max_seq} (StaConfig max_seq)")
    why = sta_isa.attention_supported(cfg)
    if why:
        raise ValueError(why)
    if texts:
        ids_list = text_ids(cfg, texts, truncate)
    else:
        ids_list = [minilm_tokens(seq)]
    t0 = time.perf_counter()
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    # The simulator starts now (model from the build cache, or built) and waits for the
    # programs while Python quantizes and compiles: its start-up is hidden behind that work.
    simulation = Simulation(cfg, simulator, waves).start()
    try:
        programs, plan, qm, weights_used = _prepare(cfg, nm, layers, ids_list, weights, say)
    except BaseException:
        simulation.cancel()
        raise
    say(f"running {len(programs)} segments ({len(plan)} layer runs) on {simulator} "
        f"(building the core first if needed) ...")
    t_prepared = time.perf_counter()
    results = simulation.run(programs, backdoor=True)
    t_simulated = time.perf_counter()
    rows, outs = [], {}
    for s_idx, i, lp, start in plan:
        rs = results[start:start + len(lp.segments)]
        got = rs[-1].outputs["out"]
        exact = bool(np.array_equal(got, lp.expected))
        cyc = layer_cycles(rs, cfg, lp.segments)
        macs = lp.useful_macs
        rows.append({"sequence": s_idx, "layer": i, "tokens": lp.seq, "segments": len(lp.segments),
                     "bit_exact": exact, "cycles": cyc, "useful_macs": macs,
                     "run_seconds": round(sum(r.run_seconds for r in rs), 3)})
        outs[(s_idx, i)] = got
    # Sentence embeddings (when the chain reaches the last layer): RTL vs float model.
    emb = None
    last = mc.layers - 1
    if layers[-1] == last:
        cos_float, vectors = [], []
        for s_idx, ids in enumerate(ids_list):
            h = torch.from_numpy(outs[(s_idx, last)].astype(np.float64)) \
                * qm.layers[last].out_scale
            e_rtl = torch.nn.functional.normalize(mean_pool(h), dim=0)
            e_float = sentence_embedding(get_default_weights(), ids).double()
            cos_float.append(float(cosine(e_rtl[None], e_float[None])[0]))
            vectors.append([float(v) for v in e_rtl])
        emb = {"reference": "dense float MiniLM-L6",
               "cosine_vs_float": [round(c, 5) for c in cos_float],
               "mean_cosine_vs_float": round(sum(cos_float) / len(cos_float), 5),
               "min_cosine_vs_float": round(min(cos_float), 5)}
        if keep_embeddings:
            emb["vectors"] = vectors
    total = sum(r["cycles"]["total"] for r in rows)
    run_s = sum(r["run_seconds"] for r in rows)
    # the build (or lookup) ran beside the preparation: only what it took after it counts
    build_s = max(0.0, simulation.seconds.get("build_end", t_prepared) - t_prepared)
    done = time.perf_counter()
    # Where the wall time went: Python before the programs are ready (quantize, compile),
    # what the model build (or its cache lookup) took beyond that, the simulator process
    # from then on (start-up not hidden, waiting for job parts, loading, running, reading
    # back), of which the free-running clock cycles, and Python after it (checks).
    inside = {part: round(sum(r.extra.get(f"{part}_seconds", 0.0) for r in results), 3)
              for part in ("start", "wait", "load", "read", "exit")}
    seconds = {"prepare": round(t_prepared - t0, 3), "build": round(build_s, 3),
               "simulator": round(t_simulated - t_prepared - build_s, 3),
               "free_running": round(run_s, 3), "check": round(done - t_simulated, 3),
               "simulator_parts": {**inside, "run": round(run_s, 3)}}
    return {"config": cfg.to_dict(), "layers": layers,
            "nm": "dense" if nm is None else f"{nm[0]}:{nm[1]}", "weights": weights_used,
            "simulator": simulator,
            "sequences": [len(ids) for ids in ids_list],
            "texts": list(texts) if texts else None,
            "bit_exact": all(r["bit_exact"] for r in rows), "runs": rows,
            "embedding": emb,
            "sim_cycles_per_second": round(total / run_s) if run_s else None,
            "seconds": seconds,
            "end_to_end_cycles_per_second": round(total / (done - t0)),
            "wall_seconds": round(done - t0, 2)}


def format_encoder_table(res: dict) -> str:
    """The per-layer table of :func:`run_encoder`'s result; with weights from external memory
    also the fetch columns: cycles the engine worked, cycles the core waited for it (stall),
    cycles without those waits (compute) and the bytes fetched."""
    ext = any("fetch_bytes" in r["cycles"] for r in res["runs"])
    head = (f"{'seq':>3} {'layer':>5} {'tokens':>6} {'cycles':>9} {'model':>9} {'err':>7} "
            f"{'sp.mode':>8} {'dn.mode':>7} {'smwait':>6} {'vector':>7} {'ovhd':>6}")
    if ext:
        head += f" {'compute':>9} {'fetch':>9} {'stall':>9} {'MB':>6}"
    lines = [head + " exact"]
    totals = dict.fromkeys(("total", "predicted", "compute", "fetch_busy", "fetch_wait",
                            "fetch_bytes"), 0)
    for r in res["runs"]:
        c = r["cycles"]
        row = (f"{r['sequence']:>3} {r['layer']:>5} {r['tokens']:>6} {c['total']:>9} "
               f"{c['predicted']:>9} {c['model_error'] * 100:>6.2f}% {c['sparse_gemm']:>8} "
               f"{c['dense_gemm']:>7} {c['softmax_wait']:>6} {c['vector']:>7} "
               f"{c['overhead'] * 100:>5.1f}%")
        if ext:
            row += (f" {c['compute']:>9} {c['fetch_busy']:>9} {c['fetch_wait']:>9} "
                    f"{c['fetch_bytes'] / 1e6:>6.3f}")
        lines.append(row + f" {'yes' if r['bit_exact'] else 'NO'}")
        for k in totals:
            totals[k] += c.get(k, 0)
    if ext and len(res["runs"]) > 1:
        err = totals["predicted"] / totals["total"] - 1 if totals["total"] else 0.0
        lines.append(f"{'all':>3} {'':>5} {'':>6} {totals['total']:>9} {totals['predicted']:>9} "
                     f"{err * 100:>6.2f}% {'':>8} {'':>7} {'':>6} {'':>7} {'':>6} "
                     f"{totals['compute']:>9} {totals['fetch_busy']:>9} "
                     f"{totals['fetch_wait']:>9} {totals['fetch_bytes'] / 1e6:>6.3f}")
    if res.get("embedding"):
        lines.append(f"sentence-embedding cosine vs the dense float model ({res['weights']} "
                     f"{res['nm']} weights): "
                     + ", ".join(f"{c:.4f}" for c in res["embedding"]["cosine_vs_float"]))
    return "\n".join(lines)
