"""End-to-end, quantization-aware distillation of an N:M-pruned MiniLM-L6 student.

The student is the six encoder layers (:class:`Student`, trainable copies; the token
embedding and its LayerNorm stay the packaged ones). Its teacher is the dense float model.
For a mini-batch of sentences the loss is

* ``1 - cos(e_s, e_t)`` of the sentence embeddings (mean pool over real tokens, L2 norm),
* plus the squared error between the in-batch similarity matrices ``E_s E_sᵀ`` and ``E_t E_tᵀ``
  (the neighbourhood structure that retrieval depends on),
* plus ``hidden_weight`` × the mean over layers of the hidden states' squared error, each
  normalised by the teacher layer's mean square.

Quantization-aware (``qat=True``): the forward pass rounds exactly where the integer pipeline
(:mod:`nmaccel.model.encoder_int`) rounds to int8, with straight-through gradients — weights
per output channel (symmetric int8), the layer input ``x8``, ``q``, ``k``, ``v``, the softmax
probabilities (uint8, scale 1/255), the attention context, ``ln1_8`` and the GELU output (int8
with its zero point). The activation scales are the pipeline's own: every ``calib_every``
steps the current (masked) student is calibrated by
:func:`nmaccel.model.encoder_int.calibrate_layer` on the pipeline's calibration sentences,
as :class:`nmaccel.model.pipeline.QuantizedMiniLM` will calibrate the final weights.
Not modelled (16-bit steps): the int16 residual stream, LayerNorm and GELU polynomial.

Pruning goes through :func:`nmaccel.model.idp.prune_nm`, so the methods, budget accounting and
seeding are those of the other studies (``budget`` optimizer steps over the whole student).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from nmaccel.model.digits_transformer import EncoderLayer
from nmaccel.model.encoder_int import calibrate_layer
from nmaccel.model.intops import GeluParams
from nmaccel.model.minilm import (
    MiniLMWeights,
    embed_tokens,
    get_default_tokenizer,
    tokenize,
)
from nmaccel.model.pruning_methods import (
    BATCHINGS,
    OBJECTIVE_DEFAULTS,
    check_objective,
    objective_changes,
)

__all__ = ["Student", "QatScales", "qat_scales", "distill_e2e", "student_weights",
           "pad_batch", "retrieval_agreement", "embedding_metrics", "BATCHINGS",
           "OBJECTIVE_DEFAULTS", "check_objective", "objective_changes", "teacher_neighbours",
           "rank_kl"]

_EPS = 1e-12


class Student(nn.Module):
    """The six trainable encoder layers; :meth:`prunable_linears` names them ``"i.q"`` etc."""

    def __init__(self, layers: Sequence[EncoderLayer]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    @classmethod
    def from_weights(cls, weights: MiniLMWeights) -> Student:
        return cls([EncoderLayer.from_layer_weights(lw, weights.config.heads,
                                                    weights.config.ln_eps)
                    for lw in weights.layers])

    def prunable_linears(self) -> dict[str, nn.Linear]:
        return {f"{i}.{name}": lin for i, layer in enumerate(self.layers)
                for name, lin in layer.linears().items()}

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                qat: Optional[QatScales] = None) -> list[torch.Tensor]:
        """Hidden states after every layer for ``x`` ``(B, S, d)``, ``mask`` ``(B, S)``."""
        states = []
        for i, layer in enumerate(self.layers):
            x = layer(x, mask) if qat is None else _qat_layer(layer, x, mask, qat.layers[i])
            states.append(x)
        return states


# -- fake quantization -------------------------------------------------------------------------


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _fq(x: torch.Tensor, scale: float, lo: int = -128, hi: int = 127,
        zero: int = 0) -> torch.Tensor:
    """Fake-quantize ``x`` to codes ``clamp(round(x/scale) + zero, lo, hi)`` (STE)."""
    codes = torch.clamp(_round_ste(x / scale) + zero, lo, hi)
    return (codes - zero) * scale


def _fq_weight(w: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Per-output-channel symmetric fake quantization (as ``quantize_weight_per_channel``)."""
    qmax = (1 << (bits - 1)) - 1
    scale = (w.detach().abs().amax(dim=1, keepdim=True) / qmax).clamp_min(_EPS)
    return torch.clamp(_round_ste(w / scale), -qmax, qmax) * scale


class QatScales:
    """Activation scales of every layer, as the integer pipeline would pick them."""

    def __init__(self, layers: list[dict[str, float]]):
        self.layers = layers


def _scales_from_stats(stats: dict[str, float], bits: int = 8) -> dict[str, float]:
    q = (1 << (bits - 1)) - 1
    s = {key: max(stats[key], _EPS) / q for key in ("x8", "q", "k", "v", "ctx", "ln1_8")}
    s["gelu"], s["gelu_zero"] = GeluParams.output_scale(stats["gelu"], bits)
    return s


@torch.no_grad()
def qat_scales(student: Student, weights: MiniLMWeights, calib_texts: Sequence[str],
               tokenizer=None, max_len: int = 128) -> QatScales:
    """Calibrate the current student like :class:`~nmaccel.model.pipeline.QuantizedMiniLM`:
    float trace through the (masked) student layers, MSE-optimal ranges of the int8 points."""
    tokenizer = tokenizer if tokenizer is not None else get_default_tokenizer()
    xs = [embed_tokens(weights, ids) for ids in tokenize(list(calib_texts), tokenizer,
                                                         max_len=max_len)]
    out = []
    for layer in student.layers:
        lw = layer.layer_weights()
        stats = calibrate_layer(lw, xs, weights.config)
        out.append(_scales_from_stats(stats))
        layer.eval()
        xs = [layer(x[None])[0] for x in xs]
    return QatScales(out)


def _lin(lin: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, _fq_weight(lin.weight), lin.bias)


def _qat_layer(layer: EncoderLayer, x: torch.Tensor, mask: torch.Tensor,
               s: dict[str, float]) -> torch.Tensor:
    """:meth:`EncoderLayer.forward` with the integer pipeline's int8 roundings."""
    b, n, d = x.shape
    h, hd = layer.heads, layer.head_dim

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(b, n, h, hd).transpose(1, 2)

    x8 = _fq(x, s["x8"])
    q = split(_fq(_lin(layer.q, x8), s["q"]))
    k = split(_fq(_lin(layer.k, x8), s["k"]))
    v = split(_fq(_lin(layer.v, x8), s["v"]))
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    probs = _fq(torch.softmax(scores, dim=-1), 1.0 / 255, 0, 255)
    ctx = _fq((probs @ v).transpose(1, 2).reshape(b, n, d), s["ctx"])
    r1 = layer.ln1(x + _lin(layer.o, ctx))
    g = _fq(F.gelu(_lin(layer.ffn1, _fq(r1, s["ln1_8"]))), s["gelu"], zero=s["gelu_zero"])
    return layer.ln2(r1 + _lin(layer.ffn2, g))


# -- batches, teacher, loss ----------------------------------------------------------------------


def pad_batch(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(S_i, d)`` states into ``(B, S, d)`` zero-padded, with the real-token mask."""
    seq, d = max(int(s.shape[0]) for s in states), int(states[0].shape[1])
    x = torch.zeros(len(states), seq, d)
    mask = torch.zeros(len(states), seq, dtype=torch.bool)
    for i, s in enumerate(states):
        x[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = True
    return x, mask


def _pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask[..., None].to(h.dtype)
    return F.normalize((h * m).sum(1) / m.sum(1), dim=-1)


@torch.no_grad()
def teacher_neighbours(teacher: Student, weights: MiniLMWeights, ids: Sequence[Sequence[int]],
                       k: int, chunk: int = 64) -> torch.Tensor:
    """``(N, k)`` indices of every sentence's ``k`` nearest other sentences (cosine of the
    teacher's embeddings), nearest first."""
    if not 0 < k < len(ids):
        raise ValueError(f"k must be in 1..{len(ids) - 1}, not {k}")
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    emb = torch.zeros(len(ids), weights.config.d_model)
    for at in range(0, len(order), chunk):
        part = order[at:at + chunk]
        x, mask = pad_batch([embed_tokens(weights, ids[i]) for i in part])
        emb[part] = _pool(teacher(x, mask)[-1], mask)
    near = torch.zeros(len(ids), k, dtype=torch.long)
    for at in range(0, len(ids), 1024):
        sims = emb[at:at + 1024] @ emb.T
        sims[torch.arange(sims.shape[0]), torch.arange(at, at + sims.shape[0])] = -math.inf
        near[at:at + 1024] = sims.topk(k, dim=1).indices
    return near


def rank_kl(e_s: torch.Tensor, e_t: torch.Tensor, tau: float) -> torch.Tensor:
    """Listwise distillation of the in-batch neighbour order: for every sentence, the KL
    divergence from the teacher's softmax over its cosines to the other sentences (temperature
    ``tau``) to the student's. Zero when the in-batch similarities agree."""
    eye = torch.eye(len(e_s), dtype=torch.bool)
    lt = F.log_softmax((e_t @ e_t.T / tau).masked_fill(eye, -1e4), dim=-1)
    ls = F.log_softmax((e_s @ e_s.T / tau).masked_fill(eye, -1e4), dim=-1)
    return (lt.exp() * (lt - ls)).masked_fill(eye, 0.0).sum(-1).mean()


def student_weights(student: Student, weights: MiniLMWeights) -> MiniLMWeights:
    """``weights`` with the student's layers (detached copies; embeddings shared)."""
    return replace(weights, layers=[layer.layer_weights() for layer in student.layers])


def distill_e2e(student: Student, method: str, n: int, m: int, budget: int,
                texts: Sequence[str], *, weights: MiniLMWeights, tokenizer=None,
                teacher: Optional[Student] = None, seed: int = 0, lr: float = 1e-4,
                batch_size: int = 16, qat: bool = True,
                calib_texts: Optional[Sequence[str]] = None, calib_every: int = 200,
                hidden_weight: float = 0.1, sim_weight: float = 1.0,
                schedule: Optional[Sequence[int]] = None, idp_mask: str = "dynamic",
                batching: str = OBJECTIVE_DEFAULTS["batching"],
                rank_weight: float = OBJECTIVE_DEFAULTS["rank_weight"],
                rank_tau: float = OBJECTIVE_DEFAULTS["rank_tau"],
                progress: Optional[Callable[[], None]] = None,
                log: Optional[Callable[[int, float], None]] = None) -> dict:
    """Prune and distil ``student`` in place, end to end, with ``budget`` optimizer steps.

    ``batching``: ``"length"`` (a batch is ``batch_size`` sentences of similar length) or
    ``"neighbours"`` (a random sentence and its ``batch_size − 1`` nearest training sentences
    under the teacher, so the in-batch terms see the near ties that top-1 retrieval turns on).
    ``rank_weight``: weight of the listwise term :func:`rank_kl` at temperature ``rank_tau``.

    ``method`` as :func:`~nmaccel.model.idp.prune_nm` (``schedule``/``idp_mask`` for IDP).
    ``teacher``: the dense student (default: from ``weights``). ``calib_texts``: the integer
    pipeline's calibration sentences (default :func:`~nmaccel.model.pipeline.
    calibration_sentences`). Returns a dict of steps, seconds and losses.
    """
    from nmaccel.model.idp import prune_nm
    tokenizer = tokenizer if tokenizer is not None else get_default_tokenizer()
    if teacher is None:
        teacher = Student.from_weights(weights)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    if calib_texts is None:
        from nmaccel.model.pipeline import calibration_sentences
        calib_texts = calibration_sentences()
    check_objective({"batching": batching, "rank_weight": rank_weight, "rank_tau": rank_tau})
    ids = tokenize(list(texts), tokenizer)
    count = len(ids)
    if count < batch_size:
        raise ValueError(f"need at least batch_size={batch_size} sentences, not {count}")
    near = (teacher_neighbours(teacher, weights, ids, batch_size - 1)
            if batching == "neighbours" else None)
    # Length bucketing: a batch is batch_size neighbours in the length-sorted order (from a
    # random start), so little of it is padding. The teacher's states of a sentence are
    # computed once and kept (float16) for later epochs.
    by_length = sorted(range(count), key=lambda i: (len(ids[i]), i))
    cache: dict[int, list[torch.Tensor]] = {}
    state = {"calls": 0, "scales": None}

    def sample(gen: torch.Generator):
        if near is None:
            start = int(torch.randint(count - batch_size + 1, (1,), generator=gen))
            idx = by_length[start:start + batch_size]
        else:
            anchor = int(torch.randint(count, (1,), generator=gen))
            idx = [anchor] + near[anchor].tolist()
        with torch.no_grad():
            x, mask = pad_batch([embed_tokens(weights, ids[i]) for i in idx])
            todo = [i for i in idx if i not in cache]
            if todo:
                tx, tmask = pad_batch([embed_tokens(weights, ids[i]) for i in todo])
                for j, i in enumerate(todo):
                    n = int(tmask[j].sum())
                    cache[i] = [h[j, :n].half() for h in teacher(tx, tmask)]
            t_states = []
            for layer in range(len(teacher.layers)):
                t = torch.zeros(x.shape)
                for j, i in enumerate(idx):
                    t[j, : len(ids[i])] = cache[i][layer].float()
                t_states.append(t)
        return x, mask, t_states

    def loss_fn(model: Student, batch) -> torch.Tensor:
        x, mask, t_states = batch
        if qat and state["calls"] % calib_every == 0:
            state["scales"] = qat_scales(model, weights, calib_texts, tokenizer)
            model.train()
        state["calls"] += 1
        s_states = model(x, mask, state["scales"] if qat else None)
        e_s, e_t = _pool(s_states[-1], mask), _pool(t_states[-1], mask)
        loss = (1.0 - (e_s * e_t).sum(-1)).mean()
        if sim_weight:
            loss = loss + sim_weight * F.mse_loss(e_s @ e_s.T, e_t @ e_t.T)
        if rank_weight:
            loss = loss + rank_weight * rank_kl(e_s, e_t, rank_tau)
        if hidden_weight:
            hid = [F.mse_loss(s[mask], t[mask]) / t[mask].pow(2).mean()
                   for s, t in zip(s_states, t_states)]
            loss = loss + hidden_weight * torch.stack(hid).mean()
        if log is not None:
            log(state["calls"], float(loss.detach()))
        return loss

    start = time.perf_counter()
    kw = {"schedule": schedule} if method == "idp" else {}
    res = prune_nm(student, method, n, m, budget, loss_fn, sample, seed=seed, lr=lr,
                   idp_mask=idp_mask, progress=progress, **kw)
    return {"steps": res.steps, "seconds": time.perf_counter() - start,
            "phase_steps": res.phase_steps, "schedule": res.schedule,
            "final_loss": res.phases[-1]["final_loss"], "first_loss": res.losses[0]}


# -- metrics -------------------------------------------------------------------------------------


def retrieval_agreement(emb: torch.Tensor, ref: torch.Tensor, k: int = 10) -> dict:
    """Nearest-neighbour agreement of ``emb`` with ``ref`` (both ``(N, d)``, normalised).

    For every sentence, its ``k`` nearest other sentences by cosine under each embedding:
    ``top1`` is the share whose nearest neighbour is the same, ``top10_overlap`` the mean
    share of common neighbours among the ``k``.
    """
    def neighbours(e: torch.Tensor) -> torch.Tensor:
        sims = e.double() @ e.double().T
        sims.fill_diagonal_(-math.inf)
        return sims.topk(k, dim=1).indices
    a, b = neighbours(emb), neighbours(ref)
    overlap = (a[:, :, None] == b[:, None, :]).any(-1).double().mean(-1)
    return {"top1": float((a[:, 0] == b[:, 0]).double().mean()),
            f"top{k}_overlap": float(overlap.mean())}


def embedding_metrics(emb: torch.Tensor, ref: torch.Tensor) -> dict:
    """Mean and min cosine of ``emb`` to ``ref`` and the retrieval agreement."""
    cos = F.cosine_similarity(emb.double(), ref.double(), dim=-1)
    return {"cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
            **retrieval_agreement(emb, ref)}


# -- the whole recipe ----------------------------------------------------------------------------


def train_student(method: str, n: int, m: int, layer_budget: int, e2e_budget: int, *,
                  train: Sequence[str], seed: int = 0, weights: Optional[MiniLMWeights] = None,
                  tokenizer=None, layer_texts: int = 2000, layer_lr: float = 1e-3,
                  layer_batch: int = 8, lr: float = 1e-4, batch_size: int = 16,
                  qat: bool = True, idp_mask: str = "dynamic",
                  init: Optional[MiniLMWeights] = None, objective: Optional[dict] = None,
                  progress: Optional[Callable[[], None]] = None,
                  log: Optional[Callable[[int, float], None]] = None) -> tuple[Student, dict]:
    """Layer-wise, then end-to-end distillation of an ``n:m`` student with ``method``.

    Stage 1: :func:`nmaccel.model.minilm_distill.distill_minilm` (``layer_budget`` steps per
    layer on the first ``layer_texts`` training sentences; skipped when 0). Stage 2:
    :func:`distill_e2e` with ``e2e_budget`` steps on all of ``train``; the method continues
    at the target pattern: IDP's last phase (dynamic mask at ``n:m``, or fixed with
    ``idp_mask="fixed"``), one-shot's fixed mask, SR-STE. ``init``: continue from these
    (already ``n:m`` sparse) student weights instead: no layer-wise stage (``layer_budget``
    must be 0), the end-to-end stage starts from them (one-shot keeps their mask). Returns the
    student and the per-stage info. ``objective``: extra keywords of the end-to-end stage
    (:data:`OBJECTIVE_DEFAULTS`: ``batching``, ``rank_weight``, ``rank_tau``).
    """
    from nmaccel.model.minilm import get_default_weights
    from nmaccel.model.minilm_distill import distill_minilm
    weights = weights if weights is not None else get_default_weights()
    tokenizer = tokenizer if tokenizer is not None else get_default_tokenizer()
    info: dict = {"method": method, "pattern": f"{n}:{m}", "seed": seed}
    if init is not None:
        if layer_budget:
            raise ValueError("a student continued from init weights has no layer-wise stage: "
                             f"layer_budget must be 0, not {layer_budget}")
        student = Student.from_weights(init)
        info["init"] = True
    elif layer_budget:
        t0 = time.perf_counter()
        layers, infos = distill_minilm(method, n, m, layer_budget, seed=seed, lr=layer_lr,
                                       batch_size=layer_batch,
                                       texts=list(train)[:layer_texts], weights=weights,
                                       tokenizer=tokenizer, idp_mask=idp_mask,
                                       progress=progress)
        student = Student(layers)
        info["layerwise"] = {"steps_per_layer": layer_budget, "texts": min(layer_texts,
                                                                         len(train)),
                             "seconds": time.perf_counter() - t0, "layers": infos}
    else:
        student = Student.from_weights(weights)
    if e2e_budget:
        stage2 = method if layer_budget or method != "idp" else "idp"
        sched = [n] if (method == "idp" and layer_budget) else None
        info["e2e"] = distill_e2e(student, stage2, n, m, e2e_budget, train, weights=weights,
                                  tokenizer=tokenizer, seed=seed, lr=lr,
                                  batch_size=batch_size, qat=qat, schedule=sched,
                                  idp_mask=idp_mask, progress=progress, log=log,
                                  **check_objective(objective))
    student.eval()
    return student, info
