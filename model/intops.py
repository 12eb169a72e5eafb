"""Integer reference operators: the bit-exact definitions the STA RTL copies.

Conventions: activations are ``(tokens, features)``; weights are nn.Linear-shaped
``(out_features, in_features)``; a GEMM computes ``acc = x @ w.T + bias`` in
``StaConfig.acc_bits`` signed integers (overflow raises, it never wraps silently).
Rounding everywhere is :func:`nmaccel.model.quant.round_shift` (round half up).

Ops
    :func:`gemm_dense` / :func:`gemm_sparse` (N:M compressed weights, gathered by index —
    the same arithmetic as the PE's index mux), :func:`matmul` (dense × dense: Q·Kᵀ, P·V),
    :func:`requant` (re-exported), :func:`residual_add`, :func:`layernorm_int`,
    :func:`gelu_int`. Parameters of the vector ops come in small frozen dataclasses the
    compiler fills from float scales (``*.from_scales``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nmaccel.model.quant import (
    as_int64,
    qrange,
    quantize_multiplier,
    requant,
    round_shift,
    saturate,
)
from nmaccel.spec.config import StaConfig

__all__ = [
    "gemm_dense", "gemm_sparse", "matmul", "requant", "AddParams", "residual_add",
    "LayerNormParams", "layernorm_int", "GeluParams", "gelu_int", "isqrt",
]

_DEFAULT_CFG = StaConfig()


def _check_acc(acc: np.ndarray, cfg: StaConfig, what: str) -> np.ndarray:
    lo, hi = qrange(cfg.acc_bits)
    if acc.size and (acc.min() < lo or acc.max() > hi):
        raise ValueError(f"{what} accumulator overflows acc_bits={cfg.acc_bits}: "
                         f"range {acc.min()}..{acc.max()}")
    return acc


def _check_operand(x: np.ndarray, bits: int, name: str, signed: bool = True) -> None:
    lo, hi = qrange(bits, signed)
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"{name} must be {'signed' if signed else 'unsigned'} {bits}-bit "
                         f"integers in [{lo}, {hi}], got {x.min()}..{x.max()}")


def _bias(bias, out: int) -> np.ndarray:
    if bias is None:
        return np.zeros(out, dtype=np.int64)
    bias = as_int64(bias, "bias")
    if bias.shape != (out,):
        raise ValueError(f"bias must have shape ({out},), not {bias.shape}")
    return bias


#: float64 represents every integer of magnitude below 2**53 exactly
_FLOAT64_EXACT = 1 << 53


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a (S, K) @ b (K, T)`` of int64 matrices, exactly, as int64.

    When ``K * max|a| * max|b| < 2**53`` every product and partial sum is an integer that
    float64 holds exactly, in any summation order, so the float64 (BLAS) product is the exact
    one; otherwise numpy's int64 product is used.
    """
    if a.size == 0 or b.size == 0:
        return (a @ b).astype(np.int64)
    bound = a.shape[1] * int(np.abs(a).max()) * int(np.abs(b).max())
    if bound >= _FLOAT64_EXACT:
        return a @ b
    return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)


def gemm_dense(x, w, bias=None, cfg: StaConfig = _DEFAULT_CFG) -> np.ndarray:
    """``x (S, K) int8 @ w (N, K).T int8 + bias (N,) int32`` → int32 ``(S, N)``."""
    x, w = as_int64(x, "x"), as_int64(w, "w")
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"gemm needs x (S, K) and w (N, K) with equal K, not {x.shape} and "
                         f"{w.shape}")
    _check_operand(x, cfg.act_bits, "x")
    _check_operand(w, cfg.weight_bits, "w")
    return _check_acc(exact_matmul(x, w.T) + _bias(bias, w.shape[0]), cfg, "gemm")


def gemm_sparse(x, c, bias=None, cfg: StaConfig = _DEFAULT_CFG) -> np.ndarray:
    """Sparse-weight × dense-activation GEMM from the compressed N:M form.

    ``c`` is an :class:`nmaccel.model.nm.NMCompressed` (values/indices of shape
    ``(N_out, groups, n)``). Each kept weight multiplies the activation its index selects
    inside its group of ``m`` — exactly the PE's M:1 mux — so the result equals
    :func:`gemm_dense` with the decompressed matrix.
    """
    c.validate()
    x = as_int64(x, "x")
    rows, groups, n = c.values.shape
    if x.ndim != 2 or x.shape[1] != groups * c.m:
        raise ValueError(f"x must be (S, {groups * c.m}) for this N:M weight, not {x.shape}")
    _check_operand(x, cfg.act_bits, "x")
    values = as_int64(c.values, "values")
    _check_operand(values, cfg.weight_bits, "N:M values")
    # Each kept weight at its index in its group: the decompressed matrix. Its product with
    # x is the gathered sum (a skipped position contributes weight 0), exactly.
    dense = np.zeros((rows, groups, c.m), dtype=np.int64)
    np.put_along_axis(dense, c.indices.astype(np.intp), values, axis=-1)
    acc = exact_matmul(x, dense.reshape(rows, groups * c.m).T)
    return _check_acc(acc + _bias(bias, rows), cfg, "sparse gemm")


def matmul(a, b, cfg: StaConfig = _DEFAULT_CFG, a_signed: bool = True) -> np.ndarray:
    """Dense × dense ``a (S, K) @ b (T, K).T`` → int32 ``(S, T)``.

    Q·Kᵀ uses int8 × int8; P·V passes ``a`` = uint8 probabilities (``a_signed=False``;
    the multiplier is one bit wider in that mode) and ``b`` = Vᵀ.
    """
    a, b = as_int64(a, "a"), as_int64(b, "b")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"matmul needs a (S, K) and b (T, K) with equal K, not {a.shape} and "
                         f"{b.shape}")
    _check_operand(a, cfg.act_bits if a_signed else cfg.softmax_out_bits, "a", signed=a_signed)
    _check_operand(b, cfg.act_bits, "b")
    return _check_acc(exact_matmul(a, b.T), cfg, "matmul")


# -- residual add ---------------------------------------------------------------------------

@dataclass(frozen=True)
class AddParams:
    """``y = saturate(round_shift(a·mult_a + b·mult_b, shift), out_bits)``."""

    mult_a: int
    mult_b: int
    shift: int
    out_bits: int

    @classmethod
    def from_scales(cls, scale_a: float, scale_b: float, scale_out: float, out_bits: int,
                    mult_bits: int = StaConfig.requant_mult_bits) -> AddParams:
        """Both rescale factors share one shift, set by the larger of the two."""
        ra, rb = scale_a / scale_out, scale_b / scale_out
        big_mult, shift = quantize_multiplier(max(ra, rb), mult_bits)
        small = round(min(ra, rb) * (1 << shift))
        ma, mb = (big_mult, small) if ra >= rb else (small, big_mult)
        return cls(ma, mb, shift, out_bits)


def residual_add(a, b, p: AddParams) -> np.ndarray:
    a, b = as_int64(a, "a"), as_int64(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"residual operands must have equal shapes, not {a.shape} and {b.shape}")
    return saturate(round_shift(a * p.mult_a + b * p.mult_b, p.shift), p.out_bits)


# -- LayerNorm ------------------------------------------------------------------------------

def isqrt(v: np.ndarray) -> np.ndarray:
    """Exact ``floor(sqrt(v))`` of non-negative int64 values (bitwise, as the RTL's
    shift-subtract)."""
    v = as_int64(v, "v")
    if v.size and v.min() < 0:
        raise ValueError("isqrt of a negative number")
    root = np.zeros_like(v)
    rem = v.copy()
    bit = np.int64(1) << np.int64(62)
    while bit:
        trial = root + bit
        take = rem >= trial
        rem = np.where(take, rem - trial, rem)
        root = np.where(take, (root >> 1) + bit, root >> 1)
        bit >>= 2
    return root


@dataclass(frozen=True)
class LayerNormParams:
    """Integer LayerNorm over the last axis.

    ``gamma`` (int, per feature) and ``beta`` (int32, per feature, at scale
    ``s_gamma · 2**-ln_frac``) are applied to the normalised value, then ``mult/shift``
    requantizes to ``out_bits``.
    """

    gamma: tuple[int, ...]
    beta: tuple[int, ...]
    mult: int
    shift: int
    out_bits: int = 8

    @classmethod
    def from_float(cls, gamma, beta, scale_out: float, cfg: StaConfig,
                   gamma_bits: int | None = None, out_bits: int = 8) -> LayerNormParams:
        gamma_bits = cfg.ln_gamma_bits if gamma_bits is None else gamma_bits
        gamma = np.asarray(gamma, dtype=np.float64)
        beta = np.asarray(beta, dtype=np.float64)
        s_gamma = max(float(np.abs(gamma).max()), 1e-12) / ((1 << (gamma_bits - 1)) - 1)
        gq = np.round(gamma / s_gamma).astype(np.int64)
        s_norm = s_gamma / (1 << cfg.ln_frac)
        bq = np.round(beta / s_norm).astype(np.int64)
        mult, shift = quantize_multiplier(s_norm / scale_out, cfg.requant_mult_bits)
        return cls(tuple(int(v) for v in gq), tuple(int(v) for v in bq), mult, shift, out_bits)


def layernorm_int(x, p: LayerNormParams, cfg: StaConfig = _DEFAULT_CFG) -> np.ndarray:
    """Integer LayerNorm (division-free but for one reciprocal per row).

    With ``d`` features::

        c_i = d·x_i − Σx                      (= d·(x_i − mean), exact)
        σ   = max(1, isqrt(floor(Σ c_i² / d))) (≈ d·std)
        R   = floor(2**K / σ)                  (K = ln_recip_frac; one reciprocal per row)
        n_i = round_shift(c_i · R, K − ln_frac) (normalised value, ln_frac fraction bits)
        y_i = requant(n_i · gamma_i + beta_i, mult, shift, out_bits)

    The float model's ``eps`` (1e-12 in MiniLM) is below one LSB and is dropped.
    """
    x = as_int64(x, "x")
    d = x.shape[-1]
    _check_operand(x, cfg.vec_bits, "layernorm input")
    if len(p.gamma) != d:
        raise ValueError(f"LayerNorm has {len(p.gamma)} features, input has {d}")
    c = d * x - x.sum(axis=-1, keepdims=True)
    # < d · (2d·2**(vec_bits-1))**2: 2**60 at d=384, 16 bits
    var = (c * c).sum(axis=-1, keepdims=True)
    sigma = np.maximum(isqrt(var // d), 1)
    k = cfg.ln_recip_frac
    recip = (np.int64(1) << np.int64(k)) // sigma
    norm = round_shift(c * recip, k - cfg.ln_frac)
    y = norm * np.asarray(p.gamma, dtype=np.int64) + np.asarray(p.beta, dtype=np.int64)
    return requant(y, p.mult, p.shift, p.out_bits, mult_bits=cfg.requant_mult_bits)


# -- GELU -----------------------------------------------------------------------------------

#: I-BERT's second-order erf approximation (Kim et al., ICML 2021, arXiv:2101.01321):
#: erf(t) ≈ sign(t)·[a·(min(|t|, -b) + b)**2 + 1].
GELU_A = -0.2888
GELU_B = -1.769


@dataclass(frozen=True)
class GeluParams:
    """Integer GELU (I-BERT i-GELU) on ``vec_bits`` inputs of scale ``s``.

    With ``Xb = floor(-b·√2 / s)``, ``Cp = floor(2 / (|a|·s²))``, ``u = min(|x|, Xb)``::

        g = x · (Cp + sign(x)·(Cp − (u − Xb)**2))          (scale s·|a|·s²/4)
        y = requant(g, mult, shift, out_bits, zero=zero)

    GELU's output is ≥ −0.17, so it is stored with a zero point: the real value is
    ``scale_out · (y − zero)``. The next GEMM folds ``−zero · Σ_k w[o, k]`` into its bias,
    which is exact, so the array itself never sees the zero point.
    """

    clip: int
    cp: int
    mult: int
    shift: int
    zero: int = 0
    out_bits: int = 8

    #: smallest value GELU takes (at x ≈ −0.75), used to place the zero point
    MIN_VALUE = -0.17

    @staticmethod
    def output_scale(max_value: float, out_bits: int = 8) -> tuple[float, int]:
        """``(scale, zero)`` covering ``[MIN_VALUE, max_value]`` with ``out_bits`` codes."""
        lo, hi = qrange(out_bits)
        scale = (max(max_value, 1e-6) - GeluParams.MIN_VALUE) / (hi - lo)
        return scale, lo + round(-GeluParams.MIN_VALUE / scale)

    @classmethod
    def from_scales(cls, scale_in: float, scale_out: float, cfg: StaConfig, zero: int = 0,
                    out_bits: int = 8) -> GeluParams:
        if not scale_in > 0 or not scale_out > 0:
            raise ValueError(f"GELU scales must be positive, not {scale_in!r}, {scale_out!r}")
        clip = math.floor(-GELU_B * math.sqrt(2.0) / scale_in)
        cp = math.floor(2.0 / (-GELU_A * scale_in * scale_in))
        if cp >= 1 << 31:
            raise ValueError(f"GELU input scale {scale_in!r} is too fine: the polynomial constant "
                             f"needs {cp.bit_length()} > 31 bits; use a coarser input scale")
        g_scale = scale_in * (-GELU_A) * scale_in * scale_in / 4.0
        mult, shift = quantize_multiplier(g_scale / scale_out, cfg.requant_mult_bits)
        return cls(clip, cp, mult, shift, zero, out_bits)


def gelu_int(x, p: GeluParams, cfg: StaConfig = _DEFAULT_CFG) -> np.ndarray:
    x = as_int64(x, "x")
    _check_operand(x, cfg.vec_bits, "GELU input")
    u = np.minimum(np.abs(x), p.clip)
    poly = p.cp + np.sign(x) * (p.cp - (u - p.clip) ** 2)
    return requant(x * poly, p.mult, p.shift, p.out_bits, mult_bits=cfg.requant_mult_bits,
                   zero=p.zero)
