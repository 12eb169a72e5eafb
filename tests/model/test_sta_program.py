"""WBUF weight entries: the vectorized packing equals the row-by-row definition."""

import numpy as np
import pytest

from nmaccel.model import nm as nmfmt
from nmaccel.model.sta_program import pack_weight_entries
from nmaccel.spec.config import sta_preset
from nmaccel.spec.sta_isa import Mode


def _by_rows(rows_words, pad_row, R, WW):
    """The definition: row ``rt*R + r`` at bits ``[r*WW, (r+1)*WW)`` of entry
    ``rt*k_steps + s``; rows past the weight's are ``pad_row``."""
    features, k_steps = rows_words.shape
    out = []
    for rt in range(-(-features // R)):
        for s in range(k_steps):
            word = 0
            for r in range(R):
                f = rt * R + r
                word |= int(rows_words[f, s] if f < features else pad_row[s]) << (r * WW)
            out.append(word)
    return out


@pytest.mark.parametrize("preset,features", [("tiny", 5), ("ulx3s_board", 40),
                                             ("ulx3s_board", 64), ("large", 33)])
@pytest.mark.parametrize("mode", [Mode.SPARSE, Mode.DENSE])
def test_weight_entries_equal_the_row_by_row_definition(preset, features, mode):
    cfg = sta_preset(preset)
    rng = np.random.default_rng(features)
    cols = 8 * cfg.m * cfg.lanes
    w = rng.integers(-127, 128, (features, cols))
    WW = cfg.lanes * (cfg.weight_bits + cfg.index_bits)
    if mode == Mode.SPARSE:
        keep = np.argsort(rng.random((features, cols // cfg.m, cfg.m)), -1)[..., :cfg.n]
        mask = np.zeros((features, cols // cfg.m, cfg.m), bool)
        np.put_along_axis(mask, keep, True, -1)
        weight = nmfmt.compress(w * mask.reshape(features, cols), cfg.n, cfg.m)
        rows_words = nmfmt.pack_words(weight, cfg)
        pad_row = nmfmt.pack_words(nmfmt.compress(np.zeros((1, cols), np.int64), cfg.n,
                                                  cfg.m), cfg)[0]
    else:
        weight = w
        rows_words = nmfmt.pack_dense_words(w, cfg)
        pad_row = np.zeros(rows_words.shape[1], dtype=object)
    entries, m_tiles, k_steps = pack_weight_entries(weight, cfg, mode)
    assert (m_tiles, k_steps) == (-(-features // cfg.rows), rows_words.shape[1])
    assert [int(e) for e in entries] == _by_rows(rows_words, pad_row, cfg.rows, WW)
