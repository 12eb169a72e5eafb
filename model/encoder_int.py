"""Integer Transformer encoder layer assembled from the golden ops, and its quantizer.

Data flow of one post-LN BERT layer (the order the compiler will emit commands in).
The residual stream (layer input/output, LayerNorm outputs, the two projections that feed
a residual add) stays at ``vec_bits`` (int16): it only ever meets the vector unit. A
tensor is requantized to int8 only where it becomes a MAC-array operand. This keeps
MiniLM's outlier channels (LayerNorm outputs up to ~30, FFN outputs up to ~200 against
typical values below 1) from swamping int8 steps::

    x   int16 ─ x8 = requant(x)                                           int8
    Q,K,V = requant(gemm(x8, W{q,k,v}))                                   int8
    per head: z = requant(Q_h·K_hᵀ) → softmax_int → P_h                   int16 log2 units → uint8
              ctx_h = requant(P_h·V_h)                                    int8
    a   = requant(gemm(ctx, Wo))                                          int16
    r1  = residual_add(a, x);   h = layernorm_int(r1);  h8 = requant(h)   int16, int16, int8
    f   = requant(gemm(h8, W1))                                           int16 (GELU input)
    g   = gelu_int(f)                                                     int8 with a zero point
    f2  = requant(gemm(g, W2))                                            int16 (zero point
                                                                          folded into bias)
    r2  = residual_add(f2, h);  out = layernorm_int(r2)                   int16 (next layer's x)

Weights are int8 per output channel; with an N:M pattern they are pruned by magnitude
(:func:`nmaccel.model.nm.nm_mask`) before quantization and stored compressed; the sparse
GEMM then runs from the compressed form. Scales come from max-abs calibration on a float
trace of the same (pruned) layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
import torch

from nmaccel.model import nm as nmfmt
from nmaccel.model.intops import (
    AddParams,
    GeluParams,
    LayerNormParams,
    gelu_int,
    gemm_dense,
    gemm_sparse,
    layernorm_int,
    matmul,
    residual_add,
)
from nmaccel.model.minilm import LayerWeights, MiniLMConfig, encoder_layer_float
from nmaccel.model.quant import (
    activation_scale,
    quantize_multiplier,
    quantize_weight_per_channel,
    requant,
)
from nmaccel.model.softmax import softmax_int
from nmaccel.spec.config import StaConfig

__all__ = ["QLinear", "IntEncoderLayer", "prune_layer_weights", "calibrate_layer",
           "quantize_layer", "LINEAR_NAMES", "parse_nm"]

LINEAR_NAMES = ("q", "k", "v", "o", "ffn1", "ffn2")
#: GELU inputs are never given a range below this (keeps the polynomial constant < 2**30).
GELU_MIN_RANGE = 4.0
LOG2E = 1.0 / math.log(2.0)


def parse_nm(text: Optional[str]) -> Optional[tuple[int, int]]:
    """``"2:4"`` → ``(2, 4)``; ``None``/``"dense"`` → ``None``; clear error otherwise."""
    if text is None or str(text).strip().lower() == "dense":
        return None
    try:
        n_str, m_str = str(text).split(":")
        n, m = int(n_str), int(m_str)
    except ValueError:
        raise ValueError(f"N:M pattern must look like '2:4' or 'dense', not {text!r}") from None
    nmfmt.check_nm(n, m)
    return n, m


@dataclass
class QLinear:
    """An int8 linear layer with per-channel requantization (``acc = x·Wᵀ + bias``)."""

    w: np.ndarray                      # (out, in) int8, already N:M sparse if nm is set
    bias: np.ndarray                   # (out,) int32 at scale s_in·s_w
    mult: np.ndarray                   # (out,) requant multipliers
    shift: np.ndarray                  # (out,) requant shifts
    out_bits: int
    nm: Optional[tuple[int, int]] = None
    compressed: Optional[object] = None

    @classmethod
    def build(cls, w: torch.Tensor, b: torch.Tensor, s_in: float, s_out: float, out_bits: int,
              cfg: StaConfig, nm: Optional[tuple[int, int]] = None, in_zero: int = 0
              ) -> QLinear:
        """``in_zero``: zero point of the input codes, folded exactly into the bias."""
        wq, s_w = quantize_weight_per_channel(w, cfg.weight_bits)
        acc_scale = s_in * s_w
        bias = np.round(b.double().numpy() / acc_scale).astype(np.int64) - in_zero * wq.sum(axis=1)
        pairs = [quantize_multiplier(float(r), cfg.requant_mult_bits) for r in acc_scale / s_out]
        mult = np.array([p[0] for p in pairs], dtype=np.int64)
        shift = np.array([p[1] for p in pairs], dtype=np.int64)
        compressed = nmfmt.compress(wq, *nm) if nm else None
        return cls(wq, bias, mult, shift, out_bits, nm, compressed)

    def acc(self, x: np.ndarray, cfg: StaConfig) -> np.ndarray:
        if self.compressed is not None:
            return gemm_sparse(x, self.compressed, self.bias, cfg)
        return gemm_dense(x, self.w, self.bias, cfg)

    def __call__(self, x: np.ndarray, cfg: StaConfig) -> np.ndarray:
        return requant(self.acc(x, cfg), self.mult, self.shift, self.out_bits,
                       mult_bits=cfg.requant_mult_bits)

    @property
    def macs_per_token(self) -> int:
        """Multiplications per token actually executed (N/M of dense when sparse)."""
        out, k = self.w.shape
        return out * k * self.nm[0] // self.nm[1] if self.nm else out * k


@dataclass
class IntEncoderLayer:
    """One integer encoder layer; :meth:`forward` is the golden model of the STA program."""

    model_cfg: MiniLMConfig
    cfg: StaConfig
    in_scale: float
    out_scale: float
    linears: dict[str, QLinear]
    x8_mult: int
    x8_shift: int
    h8_mult: int
    h8_shift: int
    score_mult: int
    score_shift: int
    pv_mult: int
    pv_shift: int
    add1: AddParams
    ln1: LayerNormParams
    gelu: GeluParams
    add2: AddParams
    ln2: LayerNormParams
    scales: dict[str, float] = field(default_factory=dict)

    def forward(self, x, trace: Optional[dict] = None) -> np.ndarray:
        """``vec_bits`` ``x`` (S, d) → ``vec_bits`` (S, d); ``trace`` receives every
        intermediate."""
        cfg, mc = self.cfg, self.model_cfg
        x = np.asarray(x, dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != mc.d_model:
            raise ValueError(f"layer input must be (tokens, {mc.d_model}), not {x.shape}")
        seq, hd = x.shape[0], mc.head_dim
        if seq > cfg.max_seq:
            raise ValueError(f"sequence length {seq} exceeds max_seq={cfg.max_seq} of the config")
        lin, mb = self.linears, cfg.requant_mult_bits
        x8 = requant(x, self.x8_mult, self.x8_shift, cfg.act_bits, mult_bits=mb)
        q, k, v = lin["q"](x8, cfg), lin["k"](x8, cfg), lin["v"](x8, cfg)
        z = np.empty((mc.heads, seq, seq), dtype=np.int64)
        p = np.empty_like(z)
        ctx = np.empty((seq, mc.d_model), dtype=np.int64)
        for h in range(mc.heads):
            cols = slice(h * hd, (h + 1) * hd)
            z[h] = requant(matmul(q[:, cols], k[:, cols], cfg), self.score_mult, self.score_shift,
                           cfg.softmax_in_bits, mult_bits=cfg.requant_mult_bits)
            p[h] = softmax_int(z[h], cfg)
            ctx[:, cols] = requant(matmul(p[h], v[:, cols].T, cfg, a_signed=False),
                                   self.pv_mult, self.pv_shift, cfg.act_bits,
                                   mult_bits=cfg.requant_mult_bits)
        a = lin["o"](ctx, cfg)
        r1 = residual_add(a, x, self.add1)
        h1 = layernorm_int(r1, self.ln1, cfg)
        h8 = requant(h1, self.h8_mult, self.h8_shift, cfg.act_bits, mult_bits=mb)
        f1 = lin["ffn1"](h8, cfg)
        g = gelu_int(f1, self.gelu, cfg)
        f2 = lin["ffn2"](g, cfg)
        r2 = residual_add(f2, h1, self.add2)
        out = layernorm_int(r2, self.ln2, cfg)
        if trace is not None:
            trace.update(x=x, x8=x8, q=q, k=k, v=v, scores=z, probs=p, ctx=ctx, attn_out=a,
                         res1=r1, ln1=h1, ln1_8=h8, ffn1=f1, gelu=g, ffn2=f2, res2=r2, out=out)
        return out

    def macs(self, seq: int) -> dict[str, int]:
        """Multiplications executed for ``seq`` tokens: linear (sparse-aware) and attention."""
        linear = seq * sum(l.macs_per_token for l in self.linears.values())
        dense_linear = seq * sum(l.w.size for l in self.linears.values())
        attention = 2 * seq * seq * self.model_cfg.d_model
        return {"linear": linear, "linear_dense": dense_linear, "attention": attention,
                "total": linear + attention}


def prune_layer_weights(lw: LayerWeights, nm: Optional[tuple[int, int]]) -> LayerWeights:
    """A copy of ``lw`` whose six linear weights are magnitude-pruned to N:M (biases kept)."""
    if nm is None:
        return lw
    n, m = nm
    pruned = {name: getattr(lw, name) * nmfmt.nm_mask(getattr(lw, name), n, m).to(torch.float32)
              for name in ("wq", "wk", "wv", "wo", "w1", "w2")}
    return replace(lw, **pruned)


_CALIB_POINTS = ("x", "q", "k", "v", "scores", "ctx", "attn_out", "res1", "ln1", "ffn1", "gelu",
                 "ffn2", "res2", "out")


#: int8 MAC-array operands: their range is picked by minimising quantization MSE
#: (clipping the rare outliers), all others by max |value|.
_MSE_POINTS = {"x8": "x", "q": "q", "k": "k", "v": "v", "ctx": "ctx", "ln1_8": "ln1",
               "gelu": "gelu"}
_CLIP_FRACTIONS = tuple(1.0 - 0.025 * i for i in range(29))     # 1.0 … 0.3


def mse_range(values: torch.Tensor, bits: int = 8, zero_min: Optional[float] = None) -> float:
    """The clip value ``c ≤ max|values|`` minimising the MSE of ``bits``-bit quantization.

    Symmetric codes over ``[-c, c]``, or, with ``zero_min``, codes over ``[zero_min, c]``.
    """
    v = values.detach().double().reshape(-1)
    top = float(v.abs().max()) if zero_min is None else float(v.max())
    if top <= 0:
        return 0.0
    levels = (1 << bits) - 1
    best = (math.inf, top)
    for frac in _CLIP_FRACTIONS:
        c = top * frac
        lo = -c if zero_min is None else zero_min
        step = (c - lo) / levels
        err = float(((torch.clamp(torch.round((v - lo) / step), 0, levels) * step + lo - v) ** 2)
                    .sum())
        best = min(best, (err, c))
    return best[1]


def calibrate_layer(lw: LayerWeights, inputs: Sequence[torch.Tensor], model_cfg: MiniLMConfig,
                    bits: int = 8) -> dict[str, float]:
    """Range of every calibration point over a float trace of ``inputs`` ((S, d) each).

    Max |value| for ``vec_bits`` points; MSE-optimal clip for the int8 array operands.
    """
    if not inputs:
        raise ValueError("calibration needs at least one input sequence")
    stats = dict.fromkeys(_CALIB_POINTS, 0.0)
    samples: dict[str, list[torch.Tensor]] = {key: [] for key in set(_MSE_POINTS.values())}
    for x in inputs:
        trace: dict = {}
        encoder_layer_float(lw, x, model_cfg, trace=trace)
        for key in _CALIB_POINTS:
            stats[key] = max(stats[key], float(trace[key].abs().max()))
        for key in samples:
            samples[key].append(trace[key].reshape(-1))
    for point, key in _MSE_POINTS.items():
        zero_min = GeluParams.MIN_VALUE if point == "gelu" else None
        stats[point] = mse_range(torch.cat(samples[key]), bits, zero_min)
    return stats


def quantize_layer(lw: LayerWeights, stats: dict[str, float], model_cfg: MiniLMConfig,
                   cfg: StaConfig, nm: Optional[tuple[int, int]] = None,
                   in_scale: Optional[float] = None) -> IntEncoderLayer:
    """Quantize a float layer (already pruned if ``nm``) with calibration ``stats``.

    ``in_scale`` overrides the input scale (the previous integer layer's output scale).
    """
    ab, vb, mb = cfg.act_bits, cfg.vec_bits, cfg.requant_mult_bits
    s = {key: activation_scale(stats[key], ab) for key in ("x8", "q", "k", "v", "ctx", "ln1_8")}
    s.update({key: activation_scale(stats[key], vb) for key in
              ("x", "attn_out", "res1", "ln1", "ffn2", "res2", "out")})
    if in_scale is not None:
        s["x"] = in_scale
    s["ffn1"] = activation_scale(max(stats["ffn1"], GELU_MIN_RANGE), vb)
    s["gelu"], gelu_zero = GeluParams.output_scale(stats["gelu"], ab)   # stats["gelu"]: clip top
    lins = {
        "q": QLinear.build(lw.wq, lw.bq, s["x8"], s["q"], ab, cfg, nm),
        "k": QLinear.build(lw.wk, lw.bk, s["x8"], s["k"], ab, cfg, nm),
        "v": QLinear.build(lw.wv, lw.bv, s["x8"], s["v"], ab, cfg, nm),
        "o": QLinear.build(lw.wo, lw.bo, s["ctx"], s["attn_out"], vb, cfg, nm),
        "ffn1": QLinear.build(lw.w1, lw.b1, s["ln1_8"], s["ffn1"], vb, cfg, nm),
        "ffn2": QLinear.build(lw.w2, lw.b2, s["gelu"], s["ffn2"], vb, cfg, nm, in_zero=gelu_zero),
    }
    # Q·Kᵀ → base-2 log units with softmax_in_frac fraction bits (1/sqrt(d_head) and log2 e folded
    # in).
    score_real = (s["q"] * s["k"] / math.sqrt(model_cfg.head_dim) * LOG2E
                  * (1 << cfg.softmax_in_frac))
    score_mult, score_shift = quantize_multiplier(score_real, mb)
    omax = (1 << cfg.softmax_out_bits) - 1
    pv_mult, pv_shift = quantize_multiplier(s["v"] / omax / s["ctx"], mb)
    x8_mult, x8_shift = quantize_multiplier(s["x"] / s["x8"], mb)
    h8_mult, h8_shift = quantize_multiplier(s["ln1"] / s["ln1_8"], mb)
    return IntEncoderLayer(
        model_cfg=model_cfg, cfg=cfg, in_scale=s["x"], out_scale=s["out"], linears=lins,
        x8_mult=x8_mult, x8_shift=x8_shift, h8_mult=h8_mult, h8_shift=h8_shift,
        score_mult=score_mult, score_shift=score_shift, pv_mult=pv_mult, pv_shift=pv_shift,
        add1=AddParams.from_scales(s["attn_out"], s["x"], s["res1"], vb, mb),
        ln1=LayerNormParams.from_float(lw.ln1_g, lw.ln1_b, s["ln1"], cfg, out_bits=vb),
        gelu=GeluParams.from_scales(s["ffn1"], s["gelu"], cfg, zero=gelu_zero, out_bits=ab),
        add2=AddParams.from_scales(s["ffn2"], s["ln1"], s["res2"], vb, mb),
        ln2=LayerNormParams.from_float(lw.ln2_g, lw.ln2_b, s["out"], cfg, out_bits=vb),
        scales=s,
    )
