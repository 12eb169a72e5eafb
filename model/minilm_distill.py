"""MiniLM-L6 pruned to N:M by IDP / one-shot / SR-STE with layer-wise distillation from the dense
model: the first stage of :func:`nmaccel.model.minilm_e2e.train_student`.

Text
    The training split of :mod:`nmaccel.model.corpus` (default), or any sentences given.

Layer-wise distillation
    Layers are pruned one after another, 0 → 5. Layer ``i`` of the student starts as a copy of
    the dense layer; its input is the hidden state the *student* (dense layers replaced by the
    already pruned ones) produces for the training sentences, and its target is the *dense*
    model's output of layer ``i`` for the same sentences, so later layers also learn to undo
    the error of earlier ones. The loss is the mean squared error over real (unpadded) tokens.
    Each layer is pruned with :func:`nmaccel.model.idp.prune_nm` — the same API, methods and
    budget accounting as the digits study: ``budget`` optimizer steps *per layer* (a
    mini-batch of ``batch_size`` sentences each), IDP splitting them over its phases.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Optional

import torch
import torch.nn.functional as F

from nmaccel.model.digits_transformer import EncoderLayer
from nmaccel.model.encoder_int import prune_layer_weights
from nmaccel.model.idp import prune_nm
from nmaccel.model.minilm import (
    MiniLMWeights,
    embed_tokens,
    get_default_tokenizer,
    get_default_weights,
    mean_pool,
    tokenize,
)
from nmaccel.model.nm import check_nm

__all__ = ["Batches", "distill_minilm", "teacher_states", "embed", "MAX_TOKENS"]

#: Sentences are truncated to this many tokens (specials included) for distillation.
MAX_TOKENS = 64


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
    if texts is None:
        from nmaccel.model.corpus import corpus_split
        texts = corpus_split().train
    texts = list(texts)
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
