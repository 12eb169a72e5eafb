"""AdderNet layer (float + training gradients) and its post-training integer quantization.

Float AdderNet convolution (Chen et al., CVPR 2020)::

    y[n, o, i, j] = -sum_{c, kh, kw} | x_patch[n, c, kh, kw](i, j) - w[o, c, kh, kw] |

Zero padding is a real input level here: a padded tap contributes ``|0 - w|`` (same as the
reference AdderNet code, which unfolds the zero-padded input).

Training gradients (:class:`AdderConv2d`, AdderNet's rules, not the true sub-gradients):

* dY/dW = X - W (full-precision gradient instead of sign(X - W));
* dY/dX = HardTanh(W - X) (clipped, instead of sign(W - X));
* optional adaptive learning-rate scaling (``eta``): the weight gradient of the layer is
  rescaled to ``eta * sqrt(numel(W)) * g / ||g||_2`` (the paper's local learning rate).
  It is OFF by default (``eta=None``): the plain FP gradient is returned, so the autograd
  function is a pure function of its inputs and is checked directly in the tests.

Post-training quantization (arXiv:2212.10200, "Redistribution of Weights and Activations
for AdderNet Quantization"; formulas from /work/shared/references.md):

* activation range ``A`` (high percentile of |x|, :func:`activation_range`);
* output kernels grouped by 1-D k-means (``groups`` clusters, fixed seed) over max|w_o|;
* per group g: if max|W_g| > A then s_g = A, weights are clamped to [-A, A] and each channel
  gets the lossless bias ``b_o = -sum_k max(|w_ok| - A, 0)`` (exact for x in [0, A] because
  ``|x - w| = |x - clamp(w, -A, A)| + max(|w| - A, 0)``); else s_g = max|W_g|, b_o = 0;
* n bits, L = 2^n - 1: ``wq = clip(round(w L / (2 s_g)), -2^(n-1), 2^(n-1) - 1)``,
  ``aq = clip(round(x L / s_g), 0, L)``; integer accumulator ``acc = sum |aq - 2 wq|``
  (int64) and ``y_o = -(s_g / L) acc + b_o``.

Activations are quantized once per group scale (G versions of the input), see
:func:`adder_conv2d_quantized`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "VALID_BITS", "adder_conv2d", "AdderConv2d", "AdderQuantParams", "kmeans_1d",
    "activation_range", "quantize_adder_layer", "quantize_adder_activation",
    "adder_conv2d_int", "dequant", "adder_conv2d_quantized", "adder_acc_bits",
    "unfold_int", "lossless_clamp_bias",
]

VALID_BITS = (4, 5, 6, 7, 8)


# ----------------------------------------------------------------------------- helpers
def _pair(v, name):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair, got {v!r}")
        a, b = int(v[0]), int(v[1])
    else:
        a = b = int(v)
    return a, b


def conv_layer_params(in_channels, out_channels, kernel_size, stride, padding):
    """Validated ``(weight, stride, padding)`` for a conv-shaped layer (Kaiming-normal weight).

    Shared by :class:`AdderConv2d` and :class:`nmaccel.model.adabin.AdaBinConv2d`; a bad
    value raises ``ValueError`` naming the parameter, e.g. "in_channels must be >= 1, got 0".
    """
    kh, kw = _pair(kernel_size, "kernel_size")
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("kernel_size", min(kh, kw))):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value!r}")
    weight = nn.Parameter(torch.empty(out_channels, in_channels, kh, kw))
    nn.init.kaiming_normal_(weight)
    return weight, _pair(stride, "stride"), _pair(padding, "padding")


def _check_conv_args(x: torch.Tensor, w: torch.Tensor, stride, padding, xname="x", wname="w"):
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"{xname} must be a 4-D tensor (N, C, H, W), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x)}")
    if not isinstance(w, torch.Tensor) or w.dim() != 4:
        raise ValueError(f"{wname} must be a 4-D tensor (O, C, kH, kW), got "
                         f"{tuple(w.shape) if isinstance(w, torch.Tensor) else type(w)}")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"channel mismatch: {xname} has C={x.shape[1]}, {wname} has "
                         f"C={w.shape[1]}")
    s = _pair(stride, "stride")
    p = _pair(padding, "padding")
    if min(s) < 1:
        raise ValueError(f"stride must be >= 1, got {stride!r}")
    if min(p) < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    kh, kw = w.shape[2], w.shape[3]
    ho = (x.shape[2] + 2 * p[0] - kh) // s[0] + 1
    wo = (x.shape[3] + 2 * p[1] - kw) // s[1] + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"kernel {kh}x{kw} larger than padded input "
                         f"{x.shape[2] + 2 * p[0]}x{x.shape[3] + 2 * p[1]}")
    return s, p, ho, wo


def unfold_int(x: torch.Tensor, kh: int, kw: int, stride=1, padding=0) -> torch.Tensor:
    """``F.unfold`` for any dtype (integer/bool too): (N, C, H, W) -> (N, C*kh*kw, L).

    Tap order is (c, kh, kw), identical to ``F.unfold``; padding value is 0."""
    s = _pair(stride, "stride")
    p = _pair(padding, "padding")
    if p[0] or p[1]:
        x = F.pad(x, (p[1], p[1], p[0], p[0]))
    n, c = x.shape[:2]
    pt = x.unfold(2, kh, s[0]).unfold(3, kw, s[1])  # (N, C, Ho, Wo, kh, kw)
    ho, wo = pt.shape[2], pt.shape[3]
    return pt.permute(0, 1, 4, 5, 2, 3).reshape(n, c * kh * kw, ho * wo)


# ----------------------------------------------------------------------------- float
def adder_conv2d(x: torch.Tensor, w: torch.Tensor, stride=1, padding=0) -> torch.Tensor:
    """Float adder convolution y = -sum |x_patch - w| (plain autograd: sign gradients)."""
    s, p, ho, wo = _check_conv_args(x, w, stride, padding)
    o, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    cols = F.unfold(x, (kh, kw), padding=p, stride=s)              # (N, K, L)
    wc = w.reshape(o, -1)                                           # (O, K)
    y = -(cols[:, None, :, :] - wc[None, :, :, None]).abs().sum(2)  # (N, O, L)
    return y.reshape(x.shape[0], o, ho, wo)


class _AdderFn(torch.autograd.Function):
    """Y[n,o,l] = -sum_k |X[n,k,l] - W[o,k]| with AdderNet's gradient rules."""

    @staticmethod
    def forward(ctx, cols, wc, eta):
        ctx.save_for_backward(cols, wc)
        ctx.eta = eta
        return -(cols[:, None, :, :] - wc[None, :, :, None]).abs().sum(2)

    @staticmethod
    def backward(ctx, g):  # g: (N, O, L)
        cols, wc = ctx.saved_tensors
        grad_cols = grad_w = None
        if ctx.needs_input_grad[1]:
            # sum_{n,l} g[n,o,l] * (X[n,k,l] - W[o,k])
            grad_w = torch.einsum("nol,nkl->ok", g, cols) - wc * g.sum((0, 2))[:, None]
            if ctx.eta is not None:
                norm = grad_w.norm(p=2).clamp(min=1e-12)
                grad_w = grad_w * (ctx.eta * math.sqrt(grad_w.numel()) / norm)
        if ctx.needs_input_grad[0]:
            grad_cols = torch.zeros_like(cols)
            for o in range(wc.shape[0]):  # chunked over O to bound memory
                ht = (wc[o][None, :, None] - cols).clamp(-1.0, 1.0)
                grad_cols += g[:, o, None, :] * ht
        return grad_cols, grad_w, None


class AdderConv2d(nn.Module):
    """Adder convolution layer trained with AdderNet's gradients (see module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 eta: float | None = None):
        super().__init__()
        self.weight, self.stride, self.padding = conv_layer_params(
            in_channels, out_channels, kernel_size, stride, padding)
        self.eta = eta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        _, _, ho, wo = _check_conv_args(x, w, self.stride, self.padding)
        cols = F.unfold(x, w.shape[2:], padding=self.padding, stride=self.stride)
        y = _AdderFn.apply(cols, w.reshape(w.shape[0], -1), self.eta)
        return y.reshape(x.shape[0], w.shape[0], ho, wo)

    def extra_repr(self):
        o, c, kh, kw = self.weight.shape
        return f"{c}, {o}, kernel_size=({kh}, {kw}), stride={self.stride}, " \
               f"padding={self.padding}, eta={self.eta}"


# ----------------------------------------------------------------------------- quantization
def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or \
            int(bits) not in VALID_BITS:
        raise ValueError(f"bits must be one of {VALID_BITS}, got {bits!r}")
    return int(bits)


def kmeans_1d(values, k: int, iters: int = 100, seed: int = 0):
    """Deterministic 1-D k-means (Lloyd). Returns (labels int64 (n,), centers float64 (G,)).

    Init: k evenly spaced quantiles of the distinct values; an empty cluster is re-seeded
    with a point drawn by ``np.random.default_rng(seed)``. Clusters that stay empty are
    dropped; labels are renumbered 0..G-1 in increasing center order (G <= k)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("kmeans_1d needs at least one value")
    if not np.all(np.isfinite(v)):
        raise ValueError("kmeans_1d values must be finite")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k!r}")
    uniq = np.unique(v)
    k = min(int(k), uniq.size)
    rng = np.random.default_rng(seed)
    centers = np.quantile(uniq, np.linspace(0.0, 1.0, k)) if k > 1 else np.array([v.mean()])
    labels = np.zeros(v.size, dtype=np.int64)
    for _ in range(iters):
        labels = np.argmin(np.abs(v[:, None] - centers[None, :]), axis=1)
        new = centers.copy()
        for j in range(k):
            m = labels == j
            new[j] = v[m].mean() if m.any() else v[rng.integers(v.size)]
        if np.array_equal(new, centers):
            break
        centers = new
    labels = np.argmin(np.abs(v[:, None] - centers[None, :]), axis=1)
    used = np.unique(labels)
    order = used[np.argsort(centers[used])]
    remap = np.full(k, -1, dtype=np.int64)
    remap[order] = np.arange(order.size)
    return remap[labels], centers[order]


def activation_range(x: torch.Tensor, percentile: float = 99.94) -> float:
    """A = given percentile of |x| over calibration data (outlier clamp)."""
    a = torch.as_tensor(x).detach().abs().reshape(-1).double()
    if a.numel() == 0:
        raise ValueError("activation_range needs calibration data")
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    return float(torch.quantile(a, percentile / 100.0)) if a.numel() <= 16_000_000 \
        else float(np.percentile(a.numpy(), percentile))


def lossless_clamp_bias(w: torch.Tensor, A: float) -> torch.Tensor:
    """Per-output-channel b_o = -sum_k max(|w_ok| - A, 0)."""
    return -(w.abs() - A).clamp(min=0).reshape(w.shape[0], -1).sum(1)


@dataclass
class AdderQuantParams:
    """Integer adder layer. wq: int64 (O, C, kH, kW) in [-2^(n-1), 2^(n-1)-1];
    group: int64 (O,) group id per output channel; scale: float64 (G,) s_g;
    bias: float64 (O,) lossless-clamp bias b_o; L = 2^bits - 1; act_range: A."""
    wq: torch.Tensor
    group: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor
    bits: int
    L: int
    act_range: float

    @property
    def channel_scale(self) -> torch.Tensor:
        """s_g of each output channel, (O,)."""
        return self.scale[self.group]


def quantize_adder_layer(w: torch.Tensor, act_range_A: float, bits: int, groups: int = 4,
                         seed: int = 0) -> AdderQuantParams:
    """Post-training quantization of adder weights w (O, C, kH, kW), arXiv:2212.10200."""
    bits = _check_bits(bits)
    if not isinstance(w, torch.Tensor) or w.dim() != 4:
        raise ValueError("w must be a 4-D tensor (O, C, kH, kW)")
    if not torch.isfinite(w).all():
        raise ValueError("w must be finite")
    A = float(act_range_A)
    if not math.isfinite(A) or A <= 0:
        raise ValueError(f"act_range_A must be a finite positive number, got {act_range_A!r}")
    if isinstance(groups, bool) or int(groups) != groups or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    w = w.detach().double()
    o = w.shape[0]
    L = (1 << bits) - 1
    kmax = w.abs().reshape(o, -1).amax(1)                              # (O,)
    labels, _ = kmeans_1d(kmax.numpy(), int(groups), seed=seed)
    group = torch.from_numpy(labels)
    G = int(group.max()) + 1
    scale = torch.empty(G, dtype=torch.float64)
    bias = torch.zeros(o, dtype=torch.float64)
    wc = w.clone()
    for g in range(G):
        m = group == g
        mg = float(kmax[m].max())
        if mg > A:
            scale[g] = A
            bias[m] = lossless_clamp_bias(w[m], A)
            wc[m] = w[m].clamp(-A, A)
        else:
            # all-zero group: any positive scale works; use A
            scale[g] = mg if mg > 0 else A
    s_o = scale[group].reshape(o, 1, 1, 1)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    wq = torch.round(wc * L / (2 * s_o)).clamp(lo, hi).to(torch.int64)
    return AdderQuantParams(wq=wq, group=group, scale=scale, bias=bias, bits=bits, L=L,
                            act_range=A)


def quantize_adder_activation(x: torch.Tensor, s_g: float, bits: int) -> torch.Tensor:
    """aq = clip(round(x L / s_g), 0, L) as int64 (negative inputs saturate to 0)."""
    bits = _check_bits(bits)
    s = float(s_g)
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"s_g must be a finite positive number, got {s_g!r}")
    if not isinstance(x, torch.Tensor):
        raise ValueError("x must be a tensor")
    L = (1 << bits) - 1
    return torch.round(x.detach().double() * L / s).clamp(0, L).to(torch.int64)


def adder_conv2d_int(aq: torch.Tensor, wq: torch.Tensor, stride=1, padding=0) -> torch.Tensor:
    """Integer reference: acc[n,o,i,j] = sum |aq_patch - 2 wq| (int64, padding aq = 0)."""
    for name, t in (("aq", aq), ("wq", wq)):
        if isinstance(t, torch.Tensor) and (t.dtype.is_floating_point or t.dtype.is_complex
                                            or t.dtype == torch.bool):
            raise ValueError(f"{name} must be an integer tensor, got {t.dtype}")
    s, p, ho, wo = _check_conv_args(aq, wq, stride, padding, "aq", "wq")
    if aq.numel() and int(aq.min()) < 0:
        raise ValueError("aq must be non-negative (unsigned activation codes)")
    o, kh, kw = wq.shape[0], wq.shape[2], wq.shape[3]
    cols = unfold_int(aq.to(torch.int64), kh, kw, s, p)      # (N, K, L)
    w2 = 2 * wq.to(torch.int64).reshape(o, -1)               # (O, K)
    acc = torch.empty(aq.shape[0], o, cols.shape[2], dtype=torch.int64)
    for i in range(o):
        acc[:, i] = (cols - w2[i][None, :, None]).abs().sum(1)
    return acc.reshape(aq.shape[0], o, ho, wo)


def dequant(acc: torch.Tensor, params: AdderQuantParams) -> torch.Tensor:
    """y = -(s_g / L) acc + b_o (float64), acc (N, O, H, W)."""
    if acc.dim() != 4 or acc.shape[1] != params.wq.shape[0]:
        raise ValueError(f"acc must be (N, {params.wq.shape[0]}, H, W), got {tuple(acc.shape)}")
    s = params.channel_scale.reshape(1, -1, 1, 1)
    return -(s / params.L) * acc.double() + params.bias.reshape(1, -1, 1, 1)


def adder_conv2d_quantized(x: torch.Tensor, params: AdderQuantParams, stride=1,
                           padding=0) -> torch.Tensor:
    """End-to-end: quantize x once per group scale, integer conv per group, dequantize."""
    o = params.wq.shape[0]
    _check_conv_args(x, params.wq, stride, padding)
    acc = None
    for g in range(params.scale.numel()):
        m = params.group == g
        if not m.any():
            continue
        aq = quantize_adder_activation(x, float(params.scale[g]), params.bits)
        a = adder_conv2d_int(aq, params.wq[m], stride, padding)
        if acc is None:
            acc = torch.zeros(x.shape[0], o, *a.shape[2:], dtype=torch.int64)
        acc[:, m] = a
    return dequant(acc, params)


def adder_acc_bits(bits: int, K: int) -> int:
    """Unsigned accumulator width for K taps: each |aq - 2 wq| <= L + 2^n (n+1 bits)."""
    bits = _check_bits(bits)
    if int(K) < 1:
        raise ValueError(f"K must be >= 1, got {K!r}")
    L = (1 << bits) - 1
    return int(K * (L + (1 << bits))).bit_length()
