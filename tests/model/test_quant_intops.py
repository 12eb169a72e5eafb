"""Requant rule, integer GEMMs and vector ops against float references and edge cases."""


import numpy as np
import pytest
import torch

from nmaccel.model import nm
from nmaccel.model.intops import (
    AddParams,
    GeluParams,
    LayerNormParams,
    gelu_int,
    gemm_dense,
    gemm_sparse,
    isqrt,
    layernorm_int,
    matmul,
    residual_add,
)
from nmaccel.model.quant import (
    quantize_multiplier,
    quantize_weight_per_channel,
    requant,
    round_shift,
)
from nmaccel.spec.config import StaConfig

CFG = StaConfig()


def test_round_shift_is_round_half_up():
    v = np.array([5, 6, 7, -5, -6, -7, 4, -4])
    # /4: 1.25 1.5 1.75 -1.25 -1.5 -1.75 1 -1  → ties go toward +inf
    np.testing.assert_array_equal(round_shift(v, 2), [1, 2, 2, -1, -1, -2, 1, -1])
    np.testing.assert_array_equal(round_shift(v, 0), v)


def test_requant_saturates_and_broadcasts_per_channel():
    acc = np.array([[1000, -1000], [10**6, -10**6]])
    out = requant(acc, [1 << 14, 1 << 15], [15, 15], out_bits=16)
    np.testing.assert_array_equal(out, [[500, -1000], [32767, -32768]])
    np.testing.assert_array_equal(requant(acc, [1 << 14, 1 << 15], [15, 15]), [[127, -128]] * 2)
    assert requant([300], 1, 0, out_bits=8, signed=False)[0] == 255


@pytest.mark.parametrize("real", [1e-6, 0.0123, 0.5, 0.99999, 1.0, 3.7, 1000.0])
def test_quantize_multiplier_precision(real):
    mult, shift = quantize_multiplier(real, 16)
    assert (1 << 15) <= mult < (1 << 16)
    assert abs(mult / 2 ** shift - real) / real <= 2 ** -16


def test_quantize_multiplier_errors():
    with pytest.raises(ValueError, match="too large"):
        quantize_multiplier(1e6, 16)
    with pytest.raises(ValueError, match="finite non-negative"):
        quantize_multiplier(-1.0)
    assert quantize_multiplier(0.0) == (0, 0)


def test_requant_overflow_is_an_error():
    with pytest.raises(ValueError, match="overflows 63 bits"):
        requant([1 << 50], 1 << 15, 10)


def test_weight_quantization_per_channel():
    w = torch.tensor([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0]])
    wq, s = quantize_weight_per_channel(w)
    np.testing.assert_array_equal(wq[0], [64, -127, 32])
    assert s[1] == 1.0 and not wq[1].any()


def test_sparse_gemm_equals_dense_gemm_on_decompressed():
    rng = np.random.default_rng(0)
    for n_, m_ in [(1, 4), (2, 4), (1, 8), (2, 8), (4, 8), (4, 16)]:
        w = rng.integers(-127, 128, size=(12, 32))
        w = w * nm.nm_mask(torch.tensor(w, dtype=torch.float32), n_, m_).numpy()
        x = rng.integers(-128, 128, size=(5, 32))
        b = rng.integers(-1000, 1000, size=12)
        c = nm.compress(w, n_, m_)
        np.testing.assert_array_equal(gemm_sparse(x, c, b, CFG), gemm_dense(x, w, b, CFG))
        np.testing.assert_array_equal(gemm_dense(x, w, b, CFG), x @ w.T + b)


def test_gemm_bad_input():
    with pytest.raises(ValueError, match="equal K"):
        gemm_dense(np.zeros((2, 3), dtype=int), np.zeros((4, 5), dtype=int))
    with pytest.raises(ValueError, match=r"x must be signed 8-bit"):
        gemm_dense(np.full((1, 4), 200), np.ones((1, 4), dtype=int))
    with pytest.raises(ValueError, match="accumulator overflows acc_bits=20"):
        gemm_dense(np.full((1, 512), -128), np.full((1, 512), -128), cfg=StaConfig(acc_bits=20))
    with pytest.raises(ValueError, match="bias must have shape"):
        gemm_dense(np.ones((1, 4), dtype=int), np.ones((2, 4), dtype=int), bias=[1, 2, 3])
    c = nm.compress(np.array([[1, 0, 0, 2]]), 2, 4)
    c.indices[0, 0] = [3, 0]
    with pytest.raises(ValueError, match="not strictly ascending"):
        gemm_sparse(np.ones((1, 4), dtype=int), c)


def test_matmul_unsigned_probabilities():
    p = np.array([[255, 0], [128, 127]])
    v = np.array([[1, -2], [3, 4]])
    np.testing.assert_array_equal(matmul(p, v, CFG, a_signed=False), p @ v.T)
    with pytest.raises(ValueError, match="signed 8-bit"):
        matmul(p, v, CFG)


def test_isqrt_exact():
    v = np.array([0, 1, 2, 3, 4, 15, 16, 17, 10**12, (1 << 62) - 1])
    r = isqrt(v)
    assert np.all(r * r <= v) and np.all((r + 1) * (r + 1) > v)


def test_layernorm_close_to_float():
    rng = np.random.default_rng(1)
    xf = rng.normal(0, 3, size=(10, 384))
    xf[:, 5] += 40                                           # an outlier channel, as in BERT
    s_x = np.abs(xf).max() / 32767
    xq = np.round(xf / s_x).astype(np.int64)
    g, b = rng.normal(1, 0.2, 384), rng.normal(0, 0.1, 384)
    ref = torch.nn.functional.layer_norm(torch.tensor(xq * s_x), (384,), torch.tensor(g),
                                         torch.tensor(b), eps=1e-12).numpy()
    s_o = np.abs(ref).max() / 127
    y = layernorm_int(xq, LayerNormParams.from_float(g, b, s_o, CFG), CFG)
    assert np.abs(y * s_o - ref).max() / s_o <= 0.6          # measured 0.51 LSB


def test_layernorm_constant_row_and_bad_width():
    p = LayerNormParams.from_float(np.ones(4), np.zeros(4), 0.01, CFG)
    np.testing.assert_array_equal(layernorm_int(np.full((1, 4), 7), p, CFG), 0)
    with pytest.raises(ValueError, match="LayerNorm has 4 features, input has 3"):
        layernorm_int(np.zeros((1, 3), dtype=int), p, CFG)


def test_gelu_close_to_float():
    s_in, s_out = 6 / 32767, 6 / 127
    p = GeluParams.from_scales(s_in, s_out, CFG)
    x = np.arange(-32768, 32768, 7)
    ref = torch.nn.functional.gelu(torch.tensor(x * s_in)).numpy()
    assert np.abs(gelu_int(x, p, CFG) * s_out - ref).max() / s_out <= 1.0   # measured 0.88 LSB


def test_gelu_zero_point_output():
    s_out, zero = GeluParams.output_scale(10.0)
    p = GeluParams.from_scales(10 / 32767, s_out, CFG, zero=zero)
    x = np.array([-32768, -2458, 0, 32767])                 # -10, -0.75, 0, 10
    real = (gelu_int(x, p, CFG) - zero) * s_out
    np.testing.assert_allclose(real, [0.0, -0.17, 0.0, 10.0], atol=1.5 * s_out)


def test_gelu_rejects_too_fine_scale():
    with pytest.raises(ValueError, match="too fine"):
        GeluParams.from_scales(1e-7, 0.01, CFG)


def test_residual_add():
    p = AddParams.from_scales(0.5, 0.25, 0.5, 16)
    assert (p.mult_a / 2 ** p.shift, p.mult_b / 2 ** p.shift) == (1.0, 0.5)
    np.testing.assert_array_equal(residual_add([10, -10], [3, 3], p), [12, -8])  # 11.5→12, -8.5→-8
    with pytest.raises(ValueError, match="equal shapes"):
        residual_add([1, 2], [1], p)
def test_exact_matmul_equals_the_int64_product_on_both_paths():
    """The float64 path (bound below 2**53) and the int64 path give numpy's int64 product."""
    from nmaccel.model.intops import exact_matmul
    rng = np.random.default_rng(5)
    a = rng.integers(-128, 128, (7, 1536), dtype=np.int64)
    b = rng.integers(-128, 128, (1536, 9), dtype=np.int64)
    assert np.array_equal(exact_matmul(a, b), a @ b)            # float64 path
    big = rng.integers(-(1 << 40), 1 << 40, (3, 64), dtype=np.int64)
    huge = rng.integers(-(1 << 20), 1 << 20, (64, 2), dtype=np.int64)
    assert np.array_equal(exact_matmul(big, huge), big @ huge)  # past 2**53: int64 path
    # just below the bound: sums of 2**52-sized terms stay exact
    edge_a = np.full((1, 2), 1 << 26, dtype=np.int64)
    edge_b = np.full((2, 1), (1 << 26) - 1, dtype=np.int64)
    assert exact_matmul(edge_a, edge_b)[0, 0] == 2 * (1 << 26) * ((1 << 26) - 1)
    assert exact_matmul(np.zeros((0, 3), np.int64), np.zeros((3, 2), np.int64)).shape == (0, 2)
