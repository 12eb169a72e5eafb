"""Streaming base-2 softmax: online == two-pass bit for bit, bounded error vs float."""

import numpy as np
import pytest

from nmaccel.model.quant import qrange
from nmaccel.model.softmax import (
    exp2_table,
    softmax_float_reference,
    softmax_int,
    softmax_merge,
    softmax_partial,
    softmax_row_online,
    softmax_row_split,
)
from nmaccel.spec.config import STA_PRESETS, StaConfig

#: Tested bound of |integer − float softmax| in output LSBs (1/255), per preset.
#: Measured worst cases: ulx3s/large (and the ulx3s_board/ulx3s_lite board presets, same
#: softmax formats) ~0.504, tiny ~0.71 (coarser 6-bit input fraction).
LSB_BOUND = {"tiny": 0.75, "icebreaker": 0.75, "ulx3s": 0.51, "large": 0.51,
             "ulx3s_board": 0.51, "ulx3s_lite": 0.51, "ulx3s_lut": 0.51}


def _rows(cfg: StaConfig, rng, count):
    lo, hi = qrange(cfg.softmax_in_bits)
    one = 1 << cfg.softmax_in_frac
    for _ in range(count):
        length = int(rng.integers(1, cfg.max_seq + 1))
        spread = int(rng.choice([one, 8 * one, hi - lo]))
        centre = int(rng.integers(lo // 2, hi // 2))
        yield np.clip(rng.integers(-spread // 2, spread // 2 + 1, size=length) + centre, lo, hi)
    yield np.array([lo])                                  # length 1
    yield np.full(cfg.max_seq, 17)                        # all equal, full length
    yield np.array([hi] + [lo] * (cfg.max_seq - 1))       # max magnitude against very negative
    yield np.full(5, lo)                                  # all very negative
    yield np.array([lo, hi, lo, hi])


@pytest.mark.parametrize("preset", list(STA_PRESETS))
def test_online_equals_two_pass_and_error_bound(preset):
    cfg = STA_PRESETS[preset]
    rng = np.random.default_rng(1234)
    worst = 0.0
    for z in _rows(cfg, rng, 150):
        p = softmax_int(z, cfg)[0]
        for lanes in (1, cfg.softmax_lanes, 3):
            online, m, s_r, recip = softmax_row_online(z, cfg, lanes=lanes)
            np.testing.assert_array_equal(online, p)
        assert p.min() >= 0 and p.max() <= (1 << cfg.softmax_out_bits) - 1
        worst = max(worst, float(np.abs(p - softmax_float_reference(z, cfg)[0]).max()))
    assert worst <= LSB_BOUND[preset], worst


def _exact_sum(z, cfg: StaConfig):
    """Two-pass ``(M, S)`` in Python integers, straight from the definition."""
    f, g = cfg.softmax_in_frac, cfg.softmax_max_shift
    table = exp2_table(cfg)
    m = -((-max(int(v) for v in z)) >> f)
    s = 0
    for v in z:
        delta = (m << f) - int(v)
        s += int(table[delta & ((1 << f) - 1)]) << (g - (delta >> f))
    return m, s


def _split_rows(cfg: StaConfig, rng):
    """Rows for the k-way split: the max first, last, in the middle, ties, rows shorter
    than k beats, one element, extreme values, random rows."""
    lo, hi = qrange(cfg.softmax_in_bits)
    one = 1 << cfg.softmax_in_frac
    n, P = cfg.max_seq, cfg.softmax_lanes

    def rand(length, spread):
        centre = int(rng.integers(lo, hi, endpoint=True))
        return [int(v) for v in np.clip(centre + rng.integers(-spread, 1, size=length), lo, hi)]

    rows = []
    for length in sorted({1, 2, 3, P - 1, P, P + 1, 2 * P, 3 * P + 1, 4 * P, 5 * P - 1, n}):
        if not 1 <= length <= n:
            continue
        for spread in (one // 2 + 1, 8 * one, hi - lo):
            base = rand(length, spread)
            top = max(base) + int(rng.integers(0, 2 * one))
            top = min(top, hi)
            for where in (0, length - 1, length // 2):              # max first, last, middle
                row = list(base)
                row[where] = top
                rows.append(row)
            tie = list(base)                                        # ties: the max twice or more
            for where in rng.choice(length, size=min(length, 3), replace=False):
                tie[int(where)] = top
            rows.append(tie)
            rows.append(sorted(base))                               # rising: rescales each beat
            rows.append(sorted(base, reverse=True))                 # falling: never rescales
    rows += [[lo], [hi], [0], [lo] * n, [hi] * n, [hi] + [lo] * (n - 1), [lo] * (n - 1) + [hi],
             [lo, hi] * (n // 2), [hi, lo] * (n // 2)]
    rows += [[int(v) for v in rng.integers(lo, hi, int(rng.integers(1, n + 1)), endpoint=True)]
             for _ in range(20)]
    return rows


@pytest.mark.parametrize("preset", list(STA_PRESETS))
def test_split_equals_two_pass(preset):
    """k independent (max, sum) pairs fed round-robin and merged at the row's end equal the
    two-pass softmax_int bit for bit, and so do M, S_r and R (k = 1..4)."""
    cfg = STA_PRESETS[preset]
    rng = np.random.default_rng(77)
    g = cfg.softmax_max_shift
    omax = (1 << cfg.softmax_out_bits) - 1
    for z in _split_rows(cfg, rng):
        p = softmax_int([z], cfg)[0]
        m, s = _exact_sum(z, cfg)
        for lanes in (1, 3, cfg.softmax_lanes):
            want = softmax_row_online(np.array(z), cfg, lanes=lanes)
            assert want[1:] == (m, s >> g, (omax << cfg.softmax_recip_frac) // (s >> g))
            for k in (1, 2, 3, 4):
                got = softmax_row_split(np.array(z), cfg, k, lanes=lanes)
                np.testing.assert_array_equal(got[0], p)
                assert got[1:] == want[1:], (k, lanes, z)


def test_merge_of_partial_sums():
    """Partial (max, sum) pairs over any partition of a row's elements, in any order, merge
    to the exact two-pass (M, S); the merge is order- and grouping-free, skips empty parts,
    and a single part is returned as it is."""
    cfg = STA_PRESETS["ulx3s_board"]
    rng = np.random.default_rng(3)
    lo, hi = qrange(cfg.softmax_in_bits)
    for z in _split_rows(cfg, rng)[::3]:
        exact = _exact_sum(z, cfg)
        assert softmax_merge([softmax_partial([z], cfg)], cfg) == exact
        for _ in range(3):
            k = int(rng.integers(1, 6))
            owner = rng.integers(0, k, size=len(z))
            parts = [softmax_partial([[v for v, o in zip(z, owner) if o == j]], cfg)
                     for j in range(k)]
            assert softmax_merge(parts, cfg) == exact
            assert softmax_merge(parts[::-1] + [None], cfg) == exact
            if k >= 3:                                           # a tree of merges
                left = softmax_merge(parts[:2], cfg)
                assert softmax_merge([left] + parts[2:], cfg) == exact
    assert softmax_merge([None, None], cfg) is None
    assert softmax_partial([[], []], cfg) is None
    # extremes: a part at the lowest max merged into one at the highest (shift = G)
    a, b = softmax_partial([[lo]], cfg), softmax_partial([[hi]], cfg)
    assert b[0] - a[0] == cfg.softmax_max_shift
    assert softmax_merge([a, b], cfg) == _exact_sum([lo, hi], cfg)


def test_split_bad_args():
    cfg = StaConfig()
    for k in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            softmax_row_split(np.array([1, 2]), cfg, k)
    with pytest.raises(ValueError, match="lanes must be a positive integer"):
        softmax_row_split(np.array([1, 2]), cfg, 2, lanes=0)
    with pytest.raises(ValueError, match="takes one row, not 2"):
        softmax_row_split(np.zeros((2, 3), dtype=np.int64), cfg, 2)


def test_single_element_row_is_exactly_one():
    cfg = StaConfig()
    assert softmax_int([[123]], cfg)[0, 0] == 255


def test_batched_rows_match_rowwise():
    cfg = StaConfig()
    rng = np.random.default_rng(5)
    z = rng.integers(-5000, 5000, size=(7, 40))
    np.testing.assert_array_equal(softmax_int(z, cfg),
                                  np.stack([softmax_int(row, cfg)[0] for row in z]))


def test_table_definition():
    cfg = StaConfig()
    table = exp2_table(cfg)
    assert table[0] == 1 << cfg.softmax_exp_bits
    assert len(table) == 1 << cfg.softmax_in_frac
    assert np.all(np.diff(table) <= 0)


def test_bad_input():
    cfg = StaConfig(max_seq=16)
    with pytest.raises(ValueError, match="exceeds the configured maximum max_seq=16"):
        softmax_int(np.zeros(17, dtype=np.int64), cfg)
    with pytest.raises(ValueError, match="signed 16-bit integers"):
        softmax_int([[1 << 15]], cfg)
    with pytest.raises(ValueError, match="must hold integers"):
        softmax_int(np.array([0.5, 1.0]), cfg)
    with pytest.raises(ValueError, match="length >= 1"):
        softmax_int(np.zeros((2, 0), dtype=np.int64), cfg)
