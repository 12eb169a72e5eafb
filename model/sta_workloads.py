"""Real STA workloads: the GEMMs of a MiniLM-L6 encoder layer with real activations.

:func:`minilm_layer_gemms` quantizes one MiniLM-L6 layer (dense or N:M magnitude-pruned,
calibrated on the prose that ships with the model package), runs the integer golden layer on
a real token sequence of the requested length and returns the layer's GEMMs as
:class:`~nmaccel.model.sta_program.GemmSpec` with the activations the layer really sees:
Q/K/V (int8 out), O (int16), FFN1 (int16), FFN2 (int16), and per head Q·Kᵀ (dense × dense,
int16 scores in log2 units). The integer layer's trace is returned too, so an RTL result can
be compared both with the GEMM's golden result and with the layer's own intermediate.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import numpy as np
import torch

from nmaccel.model.encoder_int import (
    IntEncoderLayer,
    calibrate_layer,
    prune_layer_weights,
    quantize_layer,
)
from nmaccel.model.minilm import embed_tokens, get_default_tokenizer, get_default_weights
from nmaccel.model.pipeline import calibration_sentences
from nmaccel.model.quant import quantize_activation
from nmaccel.model.sta_program import GemmSpec
from nmaccel.spec.config import StaConfig
from nmaccel.spec.sta_isa import OSEL_NAMES, osel_bits

__all__ = ["LayerWorkload", "minilm_layer", "minilm_tokens", "minilm_layer_gemms", "osel_for_bits",
           "random_sparse_gemm"]

#: inputs of each linear in the integer layer's trace
_LINEAR_INPUTS = {"q": "x8", "k": "x8", "v": "x8", "o": "ctx", "ffn1": "ln1_8", "ffn2": "gelu"}
_LINEAR_OUTPUTS = {"q": "q", "k": "k", "v": "v", "o": "attn_out", "ffn1": "ffn1", "ffn2": "ffn2"}


def osel_for_bits(cfg, bits: int) -> int:
    """The output format (``osel``) that saturates to ``bits`` on ``cfg``."""
    for sel in OSEL_NAMES:
        if osel_bits(cfg, sel) == bits:
            return sel
    raise ValueError(f"no STA output format has {bits} bits on this config "
                     f"(have {sorted({osel_bits(cfg, s) for s in OSEL_NAMES})})")


@dataclass
class LayerWorkload:
    layer: IntEncoderLayer
    x: np.ndarray            # the layer's vec_bits input (seq, d)
    trace: dict              # integer golden intermediates
    gemms: list              # GemmSpec list
    references: dict         # GemmSpec name -> trace array the result must equal


def minilm_tokens(seq: int) -> torch.Tensor:
    """Exactly ``seq`` real token ids: the packaged prose, concatenated and truncated."""
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 2:
        raise ValueError(f"seq must be an integer >= 2, not {seq!r}")
    tok = get_default_tokenizer()
    text = " ".join(calibration_sentences(limit=64))
    enc = tok.encode(text)
    ids = enc.ids
    if len(ids) < seq:
        raise ValueError(f"seq={seq} is longer than the available text ({len(ids)} tokens)")
    ids = ids[:seq - 1] + [ids[-1]]          # keep the [SEP] token at the end
    return torch.tensor(ids, dtype=torch.long)


@lru_cache(maxsize=8)
def minilm_layer(cfg: StaConfig, nm: Optional[tuple[int, int]], index: int = 0) -> IntEncoderLayer:
    """Integer MiniLM-L6 layer ``index`` (pruned to ``nm``), calibrated on the packaged prose
    (earlier layers run in float to produce its calibration inputs)."""
    weights = get_default_weights()
    if not 0 <= index < len(weights.layers):
        raise ValueError(f"layer must be in [0, {len(weights.layers) - 1}], not {index}")
    from nmaccel.model.minilm import encoder_layer_float, tokenize
    ids = tokenize(calibration_sentences(), get_default_tokenizer(), max_len=cfg.max_seq)
    with torch.no_grad():
        xs = [embed_tokens(weights, i) for i in ids]
        in_scale = None
        for i in range(index + 1):
            lw = prune_layer_weights(weights.layers[i], nm)
            stats = calibrate_layer(lw, xs, weights.config)
            layer = quantize_layer(lw, stats, weights.config, cfg, nm, in_scale)
            in_scale = layer.out_scale
            if i < index:
                xs = [encoder_layer_float(lw, x, weights.config) for x in xs]
    return layer


def minilm_layer_gemms(cfg: StaConfig, nm: Optional[tuple[int, int]], seq: int, index: int = 0,
                       heads: Optional[int] = None, include=("linear", "scores")) -> LayerWorkload:
    """The GEMMs of MiniLM-L6 layer ``index`` on ``seq`` real tokens (see module docstring).

    ``heads`` limits how many heads' Q·Kᵀ are included (default all 12).
    """
    if seq > cfg.max_seq:
        raise ValueError(f"seq={seq} exceeds the config's max_seq={cfg.max_seq}")
    layer = minilm_layer(cfg, nm, index)
    weights = get_default_weights()
    ids = minilm_tokens(seq)
    with torch.no_grad():
        x = quantize_activation(embed_tokens(weights, ids), minilm_layer(cfg, nm, 0).in_scale,
                                cfg.vec_bits)
    for i in range(index):                      # the real input: earlier integer layers
        x = minilm_layer(cfg, nm, i).forward(x)
    trace: dict = {}
    layer.forward(x, trace=trace)
    gemms, refs = [], {}
    if "linear" in include:
        for name, lin in layer.linears.items():
            weight = lin.compressed if lin.compressed is not None else lin.w
            spec = GemmSpec(trace[_LINEAR_INPUTS[name]], weight, lin.bias, lin.mult, lin.shift,
                            osel_for_bits(cfg, lin.out_bits), name)
            gemms.append(spec)
            refs[name] = trace[_LINEAR_OUTPUTS[name]]
    if "scores" in include:
        mc = layer.model_cfg
        hd = mc.head_dim
        for h in range(mc.heads if heads is None else heads):
            cols = slice(h * hd, (h + 1) * hd)
            spec = GemmSpec(trace["q"][:, cols], trace["k"][:, cols], None,
                            np.full(seq, layer.score_mult), np.full(seq, layer.score_shift),
                            osel_for_bits(cfg, cfg.softmax_in_bits), f"scores{h}")
            gemms.append(spec)
            refs[f"scores{h}"] = trace["scores"][h]
    return LayerWorkload(layer, x, trace, gemms, refs)


def random_sparse_gemm(cfg, tokens: int, features: int, k: int, seed: int = 0):
    """A :class:`~nmaccel.model.sta_program.StaProgram` of one random ``n``:``m`` sparse GEMM
    (int8 outputs, scaled to spread over the int8 range) with its golden output."""
    from nmaccel.model.nm import compress, nm_mask
    from nmaccel.model.sta_program import GemmSpec, compile_gemm
    if k % cfg.m:
        raise ValueError(f"k must be a multiple of m={cfg.m} for an N:M sparse GEMM, not {k}")
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, (features, k))
    w = w * nm_mask(np.abs(w) + rng.random(w.shape), cfg.n, cfg.m).astype(np.int64)
    x = rng.integers(-128, 128, (tokens, k))
    shift = 20
    span = 128 * 128 * np.sqrt(k * cfg.n / cfg.m)
    mult = np.full(features, int(max(1, min((1 << cfg.requant_mult_bits) - 1,
                                             100 / span * (1 << shift)))))
    spec = GemmSpec(x, compress(w, cfg.n, cfg.m), bias=rng.integers(-5000, 5000, features),
                    mult=mult, shift=np.full(features, shift), osel=0, name="y")
    return compile_gemm(spec, cfg)
