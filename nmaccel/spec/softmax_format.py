"""The streaming softmax's exponent table, defined once (the number format of
:mod:`nmaccel.model.softmax`, which documents the whole rule; the RTL's ROMs hold this table).
"""

from __future__ import annotations

import functools

import numpy as np

from nmaccel.spec.config import StaConfig

__all__ = ["exp2_table"]


@functools.cache
def _exp2_table(exp_bits: int, in_frac: int) -> np.ndarray:
    r = np.arange(1 << in_frac, dtype=np.float64)
    return np.floor(np.exp2(exp_bits - r / (1 << in_frac)) + 0.5).astype(np.int64)


def exp2_table(cfg: StaConfig) -> np.ndarray:
    """``T[r] = round_half_up(2**E · 2**(-r / 2**F))`` for ``r in [0, 2**F)`` (read-only)."""
    table = _exp2_table(cfg.softmax_exp_bits, cfg.softmax_in_frac)
    table.flags.writeable = False
    return table
