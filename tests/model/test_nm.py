"""Tests for nmaccel.model.nm: N:M masks, SR-STE, compressed format and word packing."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.ao.pruning import WeightNormSparsifier

from nmaccel.model.nm import (
    NMCompressed,
    NMSparseLinear,
    SrSteSparsify,
    bits_per_weight,
    compress,
    decompress,
    entry_bits,
    metadata_bits_per_group,
    nm_mask,
    pack_dense_words,
    pack_words,
    sr_ste_weight,
    unpack_dense_words,
    unpack_words,
    weight_word_bits,
    words_per_row,
)
from nmaccel.spec.config import StaConfig

ALL_NM = [(n, m) for m in (2, 4, 8, 16) for n in range(1, m)]


def random_nm_int(rng: np.random.Generator, rows: int, groups: int, n: int, m: int,
                  bits: int = 8, sparse_groups: bool = True) -> np.ndarray:
    """A random int matrix with at most n nonzeros per group (some groups with fewer)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    dense = np.zeros((rows, groups, m), dtype=np.int64)
    for r in range(rows):
        for g in range(groups):
            k = rng.integers(0, n + 1) if sparse_groups else n
            pos = rng.choice(m, size=k, replace=False)
            vals = rng.integers(lo, hi + 1, size=k)
            vals[vals == 0] = 1
            dense[r, g, pos] = vals
    return dense.reshape(rows, groups * m)


# -- compress / decompress --------------------------------------------------------------------


@pytest.mark.parametrize("n,m", ALL_NM)
def test_compress_roundtrip(n, m):
    rng = np.random.default_rng(1000 + 17 * m + n)
    for _ in range(3):
        rows, groups = int(rng.integers(1, 6)), int(rng.integers(1, 7))
        dense = random_nm_int(rng, rows, groups, n, m)
        c = compress(dense, n, m)
        c.validate()
        assert c.values.shape == c.indices.shape == (rows, groups, n)
        assert c.indices.dtype == np.uint8
        assert (c.cols, c.n, c.m) == (groups * m, n, m)
        assert np.array_equal(decompress(c), dense)
        assert np.array_equal(decompress(compress(torch.from_numpy(dense), n, m)), dense)


def test_compress_padding_lowest_unused_indices():
    dense = np.array([[0, 0, 7, 0,   0, 0, 0, 0,   5, 0, 0, 3]], dtype=np.int8)
    c = compress(dense, 2, 4)
    assert c.indices.tolist() == [[[0, 2], [0, 1], [0, 3]]]
    assert c.values.tolist() == [[[0, 7], [0, 0], [5, 3]]]
    assert c.values.dtype == np.int8
    assert np.array_equal(decompress(c), dense)


def test_compress_float_and_mask_consistency():
    torch.manual_seed(0)
    w = torch.randn(6, 32)
    ws = w * nm_mask(w, 2, 8)
    c = compress(ws, 2, 8)
    assert c.values.dtype == np.float32
    assert np.array_equal(decompress(c), ws.numpy())


# -- masks -------------------------------------------------------------------------------------


def torch_nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    model = torch.nn.Sequential(torch.nn.Linear(weight.shape[1], weight.shape[0]))
    with torch.no_grad():
        model[0].weight.copy_(weight)
    sparsifier = WeightNormSparsifier(sparsity_level=1.0, sparse_block_shape=(1, m),
                                      zeros_per_block=m - n)
    sparsifier.prepare(model, config=[{"tensor_fqn": "0.weight"}])
    sparsifier.step()
    return model[0].parametrizations.weight[0].mask.bool()


@pytest.mark.parametrize("n,m", [(1, 2), (1, 4), (2, 4), (3, 4), (2, 8), (5, 8), (4, 16), (11, 16)])
def test_mask_matches_torch_sparsifier(n, m):
    g = torch.Generator().manual_seed(7 * m + n)
    weight = torch.randn(12, 4 * m, generator=g, dtype=torch.float64).float()
    assert torch.unique(weight.abs()).numel() == weight.numel()  # no ties
    mask = nm_mask(weight, n, m)
    assert mask.dtype == torch.bool and mask.shape == weight.shape
    assert torch.equal(mask, torch_nm_mask(weight, n, m))
    assert torch.all(mask.reshape(12, 4, m).sum(-1) == n)


def test_mask_ties_lower_index_wins_and_leading_dims():
    w = torch.tensor([[1.0, -1.0, 1.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    assert nm_mask(w, 2, 4).tolist() == [[True, True, False, False], [True, True, False, False]]
    w3 = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(nm_mask(w3, 2, 4), nm_mask(w3.reshape(6, 8), 2, 4).reshape(2, 3, 8))
    assert np.array_equal(nm_mask(w3.numpy(), 2, 4), nm_mask(w3, 2, 4).numpy())


# -- storage ----------------------------------------------------------------------------------


def test_bits_per_weight():
    assert bits_per_weight(2, 4, 8) == 5.0
    assert bits_per_weight(2, 4) == 5.0
    assert bits_per_weight(1, 4) == 2.5
    assert bits_per_weight(1, 2) == 4.5
    assert bits_per_weight(2, 8) == 2.75
    assert bits_per_weight(4, 16, 4) == 2.0


def test_metadata_bits_per_group():
    assert metadata_bits_per_group(2, 4) == {"index": 4, "bitmap": 4, "minimum": 3}
    assert metadata_bits_per_group(1, 2) == {"index": 1, "bitmap": 2, "minimum": 1}
    assert metadata_bits_per_group(2, 8) == {"index": 6, "bitmap": 8, "minimum": 5}
    assert metadata_bits_per_group(8, 16) == {"index": 32, "bitmap": 16, "minimum": 14}


# -- packing ----------------------------------------------------------------------------------


PACK_CFGS = [
    dict(lanes=4, n=2, m=4),                      # E=10, 40-bit words
    dict(lanes=2, n=1, m=2),                      # E=9
    dict(lanes=6, n=3, m=4),                      # E=10, 60 bits
    dict(lanes=8, n=2, m=4),                      # 80 bits -> Python ints
    dict(lanes=8, n=4, m=16, weight_bits=4),      # E=8, 64 bits exactly -> uint64
    dict(lanes=16, n=8, m=16, weight_bits=16),    # E=20, 320 bits
    dict(lanes=3, n=1, m=8),                      # odd lanes
]


@pytest.mark.parametrize("params", PACK_CFGS,
                         ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()))
def test_pack_roundtrip(params):
    cfg = StaConfig(**params)
    n, m = cfg.n, cfg.m
    rng = np.random.default_rng(cfg.lanes * 131 + n * 7 + m)
    E = entry_bits(cfg)
    assert E == cfg.weight_bits + cfg.index_bits
    for rows, groups in [(1, 1), (3, 5), (4, 2 * cfg.lanes // n), (2, 7)]:
        dense = random_nm_int(rng, rows, groups, n, m, bits=cfg.weight_bits)
        dense[0, :m] = 0  # an all-zero group
        c = compress(dense, n, m)
        words = pack_words(c, cfg)
        wpr = words_per_row(groups * m, n, m, cfg.lanes)
        assert words.shape == (rows, wpr) and wpr == -(-groups * n // cfg.lanes)
        assert words.dtype == (np.uint64 if cfg.lanes * E <= 64 else object)
        back = unpack_words(words, cfg, n, m, groups * m)
        assert np.array_equal(back.values, c.values)
        assert np.array_equal(back.indices, c.indices)
        assert np.array_equal(decompress(back), dense)
        # spot-check the documented layout on the first entry of every row
        for r in range(rows):
            first = int(words[r, 0]) & ((1 << E) - 1)
            v = first & ((1 << cfg.weight_bits) - 1)
            assert v == int(c.values[r, 0, 0]) & ((1 << cfg.weight_bits) - 1)
            assert first >> cfg.weight_bits == int(c.indices[r, 0, 0])


def test_pack_layout_exact():
    cfg = StaConfig(lanes=4, n=2, m=4)
    dense = np.array([[-1, 0, 0, 2,   0, 0, 0, 0,   0, 3, 0, 0]])
    words = pack_words(compress(dense, 2, 4), cfg)
    assert words.dtype == np.uint64 and words.shape == (1, 2)

    def entry(v, i):
        return (v & 0xFF) | (i << 8)
    w0 = entry(-1, 0) | entry(2, 3) << 10 | entry(0, 0) << 20 | entry(0, 1) << 30
    w1 = entry(0, 0) | entry(3, 1) << 10 | entry(0, 0) << 20 | entry(0, 1) << 30  # padding group
    assert [int(x) for x in words[0]] == [w0, w1]


def test_dense_pack_roundtrip():
    rng = np.random.default_rng(5)
    for params in [dict(lanes=4), dict(lanes=8), dict(lanes=16, n=2, m=4, weight_bits=16)]:
        cfg = StaConfig(**params)
        lo, hi = -(1 << (cfg.weight_bits - 1)), (1 << (cfg.weight_bits - 1))
        for cols in (1, cfg.lanes, 3 * cfg.lanes + 1):
            w = rng.integers(lo, hi, size=(3, cols))
            words = pack_dense_words(w, cfg)
            assert words.shape == (3, -(-cols // cfg.lanes))
            assert words.dtype == (np.uint64 if weight_word_bits(cfg) <= 64 else object)
            assert np.array_equal(unpack_dense_words(words, cfg, cols), w)
    words = pack_dense_words(np.array([[1, -2, 3]], dtype=np.int8), StaConfig(lanes=4))
    assert int(words[0, 0]) == 0x03FE01


# -- SR-STE -----------------------------------------------------------------------------------


def test_sr_ste_gradient():
    torch.manual_seed(1)
    w = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 8, dtype=torch.float64)
    lam = 0.3
    mask = nm_mask(w, 2, 4)
    out = sr_ste_weight(w, 2, 4, lam=lam)
    assert torch.equal(out, w.detach() * mask)
    out.backward(g)
    assert torch.allclose(w.grad, g + lam * (~mask).double() * w.detach(), rtol=0, atol=1e-15)
    w.grad = None
    SrSteSparsify.apply(w, 1, 4, 2e-4).backward(g)
    assert torch.allclose(w.grad, g + 2e-4 * (~nm_mask(w, 1, 4)).double() * w.detach())


def test_nm_sparse_linear():
    torch.manual_seed(2)
    layer = NMSparseLinear(16, 5, n=2, m=8, lam=1e-3)
    assert (layer.n, layer.m, layer.lam) == (2, 8, 1e-3)
    x = torch.randn(3, 16)
    w = layer.weight.detach()
    expect = F.linear(x, w * nm_mask(w, 2, 8), layer.bias.detach())
    out = layer(x)
    assert torch.allclose(out, expect, atol=1e-6)
    out.sum().backward()
    mask = nm_mask(w, 2, 8)
    dense_grad = torch.ones(3, 5).t() @ x
    assert torch.allclose(layer.weight.grad, dense_grad + 1e-3 * (~mask) * w, atol=1e-5)
    assert torch.equal(layer.sparse_weight(), w * mask)
    assert "n=2, m=8" in repr(layer)


# -- bad input --------------------------------------------------------------------------------


def test_bad_nm():
    w = torch.randn(2, 8)
    with pytest.raises(ValueError, match=re.escape("n must satisfy 1 <= n < m (m=4), not 4")):
        nm_mask(w, 4, 4)
    with pytest.raises(ValueError, match=re.escape("n must satisfy 1 <= n < m (m=4), not 0")):
        nm_mask(w, 0, 4)
    with pytest.raises(ValueError, match=re.escape("m must be a power of two in [2, 16], not 3")):
        nm_mask(torch.randn(2, 9), 1, 3)
    with pytest.raises(ValueError, match=re.escape("m must be a power of two in [2, 16], not 32")):
        compress(np.zeros((2, 32)), 2, 32)
    with pytest.raises(ValueError, match=re.escape("n must satisfy 1 <= n < m (m=2), not 2")):
        bits_per_weight(2, 2)
    with pytest.raises(ValueError, match=re.escape("m must be a power of two in [2, 16], not 6")):
        NMSparseLinear(12, 3, n=2, m=6)
    with pytest.raises(ValueError, match=re.escape("in_features (10) must be divisible by m=4")):
        NMSparseLinear(10, 3, n=2, m=4)


def test_bad_last_dim():
    msg = re.escape("the last dimension of weight (10) must be divisible by m=4")
    with pytest.raises(ValueError, match=msg):
        nm_mask(torch.randn(3, 10), 2, 4)
    with pytest.raises(ValueError, match=re.escape(
            "the last dimension of dense (10) must be divisible by m=4")):
        compress(np.zeros((3, 10), dtype=np.int8), 2, 4)


def test_compress_too_many_nonzeros():
    dense = np.zeros((4, 12), dtype=np.int8)
    dense[2, 8:11] = [1, 2, 3]
    with pytest.raises(ValueError, match=re.escape(
            "row 2 group 2 of dense has 3 nonzeros at positions [0, 1, 2], more than n=2")):
        compress(dense, 2, 4)


def test_validate_errors():
    c = compress(np.zeros((5, 24), dtype=np.int8), 2, 4)
    c.indices[3, 5] = [2, 2]
    with pytest.raises(ValueError, match=re.escape(
            "indices of row 3 group 5 are not strictly ascending: [2, 2]")):
        c.validate()
    c = compress(np.zeros((5, 24), dtype=np.int8), 2, 4)
    c.indices[1, 4] = [3, 1]
    with pytest.raises(ValueError, match=re.escape(
            "indices of row 1 group 4 are not strictly ascending: [3, 1]")):
        c.validate()
    with pytest.raises(ValueError, match=re.escape(
            "indices of row 1 group 4 are not strictly ascending")):
        decompress(c)
    c.indices[1, 4] = [1, 4]
    with pytest.raises(ValueError, match=re.escape(
            "indices of row 1 group 4 must be in [0, 4): [1, 4]")):
        c.validate()
    bad_shape = NMCompressed(values=np.zeros((2, 3, 2)), indices=np.zeros((2, 3, 2), np.uint8),
                             n=2, m=4, cols=8)
    with pytest.raises(ValueError, match=re.escape("values must have shape (rows, 2, 2)")):
        bad_shape.validate()


def test_pack_errors():
    cfg = StaConfig(lanes=4, n=2, m=4)
    fc = compress(np.array([[0.5, 0.0, 0.0, 1.5]]), 2, 4)
    with pytest.raises(ValueError, match=re.escape(
            "values must have an integer dtype for packing, not float64")):
        pack_words(fc, cfg)
    with pytest.raises(ValueError, match=re.escape(
            "w_int must have an integer dtype for packing, not float32")):
        pack_dense_words(np.zeros((2, 4), dtype=np.float32), cfg)
    big = compress(np.array([[200, 0, 0, 1]]), 2, 4)
    with pytest.raises(ValueError, match=re.escape(
            "values must fit in weight_bits=8 signed bits [-128, 127]; found 200")):
        pack_words(big, cfg)
    with pytest.raises(ValueError, match=re.escape("m=8 of the weights must equal cfg.m=4")):
        pack_words(compress(np.zeros((1, 8), dtype=np.int8), 2, 8), cfg)
    words = pack_words(compress(np.array([[1, 0, 2, 0]]), 2, 4), cfg)
    with pytest.raises(ValueError, match=re.escape("words must have 1 words per row")):
        unpack_words(np.concatenate([words, words], axis=1), cfg, 2, 4, 4)
    with pytest.raises(ValueError, match=re.escape(
            "padding entry 2 of row 0 must be (value 0, index 0), not (5, 0)")):
        unpack_words(words | np.uint64(5 << 20), cfg, 2, 4, 4)
    with pytest.raises(ValueError, match=re.escape("has bits set above the 40-bit word width")):
        unpack_words(words | np.uint64(1 << 40), cfg, 2, 4, 4)
