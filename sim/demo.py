"""``nmaccel demo``: MiniLM-L6 sentence embeddings through the golden pipelines.

For now (before the RTL lands) this runs the bit-exact integer golden models the RTL is
checked against: float reference, int8 dense, and int8 N:M sparse pipelines.
"""

from __future__ import annotations

import json
import time
from typing import Optional

from tqdm import tqdm

from nmaccel.hw.config import StaConfig
from nmaccel.model.minilm import (DEMO_SENTENCES, embed_sentences_float, get_default_tokenizer,
                                  get_default_weights, tokenize)
from nmaccel.model.nm import bits_per_weight
from nmaccel.model.pipeline import QuantizedMiniLM, cosine

__all__ = ["run_demo", "demo_results", "format_table", "HELP", "add_arguments", "run"]


def _label(nm: Optional[tuple[int, int]]) -> str:
    return "int8 dense" if nm is None else f"int8 {nm[0]}:{nm[1]}"


def demo_results(cfg: StaConfig, patterns, texts, progress: bool = True) -> dict:
    """Embed ``texts`` with the float model and each integer pipeline; return a results dict."""
    weights, tokenizer = get_default_weights(), get_default_tokenizer()
    lengths = [len(ids) for ids in tokenize(list(texts), tokenizer, max_len=cfg.max_seq)]
    pipelines = [None] + [p for p in patterns if p is not None]
    layers = len(weights.layers)
    bar = tqdm(total=len(pipelines) * (layers + len(texts)) + len(texts), disable=not progress,
               desc="nmaccel demo", unit="step")
    start = time.perf_counter()
    ref = embed_sentences_float(list(texts), weights, tokenizer)
    bar.update(len(texts))
    rows = [{"pipeline": "float32 reference", "cos_mean": 1.0, "cos_min": 1.0,
             "bits_per_weight": 32.0, "macs": None, "seconds": time.perf_counter() - start}]
    for nm in pipelines:
        start = time.perf_counter()
        bar.set_postfix_str(_label(nm))
        model = QuantizedMiniLM(cfg, nm, weights, tokenizer, progress=lambda: bar.update(1))
        emb = model.embed(texts, progress=lambda: bar.update(1))
        cos = cosine(emb, ref)
        macs = {}
        for seq in lengths:
            for key, val in model.macs(seq).items():
                macs[key] = macs.get(key, 0) + val
        rows.append({"pipeline": _label(nm), "nm": None if nm is None else f"{nm[0]}:{nm[1]}",
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
    head = f"{'pipeline':<18} {'cos mean':>9} {'cos min':>9} {'bits/weight':>12} {'MACs (M)':>10} {'vs dense':>9}"
    dense = next(r["macs"] for r in results["rows"] if r["pipeline"] == "int8 dense")
    lines = [head, "-" * len(head)]
    for r in results["rows"]:
        lines.append(f"{r['pipeline']:<18} {r['cos_mean']:>9.4f} {r['cos_min']:>9.4f} "
                     f"{r['bits_per_weight']:>12.2f} {r['macs'] / 1e6:>10.2f} "
                     f"{r['macs'] / dense:>8.2f}x")
    return "\n".join(lines)


HELP = "MiniLM-L6 sentence embeddings: float vs int8 dense vs int8 N:M golden pipelines"
DESCRIPTION = ("Embeds sentences with the float MiniLM-L6 reference, the int8 dense integer "
               "pipeline and int8 N:M sparse pipelines (magnitude-pruned, no fine-tuning), "
               "and prints cosine similarity to the float embeddings, storage bits per "
               "weight and multiply-accumulate counts.")


def add_arguments(p) -> None:
    from nmaccel.sim.cli import nm_list, preset
    p.add_argument("--preset", type=preset, default="ulx3s",
                   help="STA hardware preset whose number formats the integer pipelines use "
                        "(tiny, ulx3s, large)")
    p.add_argument("--nm", type=nm_list, default="2:4,1:4",
                   help="comma-separated N:M patterns for the sparse pipelines")
    p.add_argument("--text", action="append", default=None, metavar="SENTENCE",
                   help="a sentence to embed (repeatable); default: 8 built-in sentences")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args) -> int:
    return run_demo(args)


def run_demo(args) -> int:
    texts = args.text or DEMO_SENTENCES
    results = demo_results(args.preset, args.nm, texts, progress=not args.no_progress)
    print(f"MiniLM-L6 ({len(texts)} sentences, {sum(results['tokens'])} tokens), "
          f"integer formats of StaConfig rows={args.preset.rows} cols={args.preset.cols} "
          f"lanes={args.preset.lanes}:")
    print(format_table(results))
    print("cos = cosine similarity of the sentence embedding to the float32 reference; "
          "MACs = multiplications executed (N:M skips pruned weights); N:M weights are "
          "magnitude-pruned without fine-tuning (IDP/SR-STE recover accuracy).")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
        print(f"wrote {args.json}")
    return 0
