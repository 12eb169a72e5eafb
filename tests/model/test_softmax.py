"""Streaming base-2 softmax: online == two-pass bit for bit, bounded error vs float."""

import numpy as np
import pytest

from nmaccel.model.quant import qrange
from nmaccel.model.softmax import (
    exp2_table,
    softmax_float_reference,
    softmax_int,
    softmax_row_online,
)
from nmaccel.spec.config import STA_PRESETS, StaConfig

#: Tested bound of |integer − float softmax| in output LSBs (1/255), per preset.
#: Measured worst cases: ulx3s/large (and the ulx3s_board/ulx3s_lite board presets, same
#: softmax formats) ~0.504, tiny ~0.71 (coarser 6-bit input fraction).
LSB_BOUND = {"tiny": 0.75, "ulx3s": 0.51, "large": 0.51, "ulx3s_board": 0.51, "ulx3s_lite": 0.51}


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
