"""Integer base-2 streaming softmax: the bit-exact definition the RTL copies.

Input format
    Signed ``B = softmax_in_bits`` integers ``z`` in base-2 log units with
    ``F = softmax_in_frac`` fractional bits: the row's float softmax is
    ``2**(z_i / 2**F) / Σ_j 2**(z_j / 2**F)`` (= ``exp(x)`` normalised when
    ``z = x · log2(e) · 2**F``; the requant unit folds ``log2 e`` and ``1/sqrt(d)`` into
    its multiplier, so the softmax itself needs no multiplier on its input).

Definition (E = ``softmax_exp_bits``, K = ``softmax_recip_frac``, G = 2**(B - F),
``omax = 2**softmax_out_bits - 1``)
    1. ``M = ceil(max_i z_i / 2**F)`` — an **integer** maximum (as in Softermax), so
       rescaling a running sum is a pure shift.
    2. ``δ_i = M·2**F - z_i ≥ 0``, ``q_i = δ_i >> F``, ``r_i = δ_i mod 2**F``;
       ``2**(-δ_i/2**F) ≈ T[r_i] · 2**-(E + q_i)`` with the table
       ``T[r] = round_half_up(2**E · 2**(-r / 2**F))``.
    3. Exact sum ``S = Σ_i T[r_i] · 2**(G - q_i)`` — every term is an integer because
       ``q_i ≤ G`` for any in-range input; ``S_r = S >> G``.
    4. One reciprocal per row: ``R = floor(omax · 2**K / S_r)``.
    5. ``e_i = T[r_i] >> q_i``; ``p_i = min(omax, (e_i · R + 2**(K-1)) >> K)`` — uint
       probabilities with scale ``1/omax`` (a one-element row gives exactly ``omax``).

Streaming (online) form
    The hardware sees a row ``P = softmax_lanes`` elements per cycle and keeps a running
    integer max ``m`` and running sum ``S`` relative to it. When a lane group raises the
    max by ``Δ`` the sum is rescaled by ``S >> Δ``; because every term carries ``G`` guard
    bits that shift is exact, so the one-pass result equals the two-pass result **bit for
    bit** (see :func:`softmax_row_online`; tests compare both). The accumulator is
    ``StaConfig.softmax_sum_bits`` wide. A second pass over the buffered row produces
    ``p_i`` from ``M`` and ``R``.
"""

from __future__ import annotations

import numpy as np

from nmaccel.model.quant import as_int64, qrange
from nmaccel.spec.config import StaConfig
from nmaccel.spec.softmax_format import exp2_table

__all__ = ["exp2_table", "softmax_int", "softmax_row_online", "softmax_float_reference",
           "check_softmax_input"]


def check_softmax_input(z, cfg: StaConfig) -> np.ndarray:
    """``z`` as int64 of shape (rows, length), validated against ``cfg``."""
    z = as_int64(z, "softmax input")
    if z.ndim == 1:
        z = z[None, :]
    if z.ndim != 2 or z.shape[-1] < 1:
        raise ValueError(f"softmax input must be (rows, length) with length >= 1, not {z.shape}")
    if z.shape[-1] > cfg.max_seq:
        raise ValueError(f"softmax row length {z.shape[-1]} exceeds the configured maximum "
                         f"max_seq={cfg.max_seq}")
    lo, hi = qrange(cfg.softmax_in_bits)
    if z.size and (z.min() < lo or z.max() > hi):
        raise ValueError(f"softmax input must be signed {cfg.softmax_in_bits}-bit integers in "
                         f"[{lo}, {hi}], got {z.min()}..{z.max()}")
    return z


def _decompose(z: np.ndarray, cfg: StaConfig, m_int: np.ndarray):
    """``(q, r)`` of every element relative to the integer max ``m_int`` (per row)."""
    f = cfg.softmax_in_frac
    delta = (m_int[..., None] << f) - z
    return delta >> f, delta & ((1 << f) - 1)


def _ceil_int(z: np.ndarray, frac: int) -> np.ndarray:
    return -((-z) >> frac)


def _finish(q, r, s_r, cfg: StaConfig) -> np.ndarray:
    omax = (1 << cfg.softmax_out_bits) - 1
    k = cfg.softmax_recip_frac
    table = exp2_table(cfg)
    recip = (omax << k) // s_r                                   # one reciprocal per row
    e = table[r] >> q
    # e < 2**(E+1) and recip < omax·2**K / 2**(E-1): the product needs E+1+log2(omax)+K-E+1 bits.
    p = (e * recip[..., None] + (1 << (k - 1))) >> k
    return np.minimum(p, omax)


def softmax_int(z, cfg: StaConfig) -> np.ndarray:
    """Two-pass integer softmax over the last axis of ``z`` (rows, length) → uint probabilities.

    Vectorised; the exact ``S >> G`` is computed bucket-wise (``A_q = Σ_{q_i=q} T[r_i]``,
    then ``floor(Σ_q A_q / 2**q)`` by halving from the largest ``q`` down), which equals the
    wide accumulator of the RTL without ever holding it.
    """
    z = check_softmax_input(z, cfg)
    if cfg.softmax_recip_frac + cfg.softmax_out_bits + 2 > 62:
        raise ValueError("softmax_recip_frac too large for the 64-bit golden model")
    g = cfg.softmax_max_shift
    m_int = _ceil_int(z.max(axis=-1), cfg.softmax_in_frac)
    q, r = _decompose(z, cfg, m_int)
    table = exp2_table(cfg)
    buckets = np.zeros((z.shape[0], g + 1), dtype=np.int64)
    rows = np.broadcast_to(np.arange(z.shape[0])[:, None], z.shape)
    np.add.at(buckets, (rows, q), table[r])
    acc = np.zeros(z.shape[0], dtype=np.int64)
    # floor((acc + A_q) / 2) is exact floor
    for bucket in range(g, 0, -1):
        acc = (acc + buckets[:, bucket]) >> 1
    s_r = acc + buckets[:, 0]
    return _finish(q, r, s_r, cfg)


def softmax_row_online(z, cfg: StaConfig, lanes: int | None = None) -> np.ndarray:
    """One-pass (online) form, as the hardware streams it, for a single row.

    Consumes ``lanes`` (default ``cfg.softmax_lanes``) elements per step, keeping the
    running integer max and the exact running sum in a Python integer of
    ``cfg.softmax_sum_bits`` bits; rescales by a shift when the max grows. Returns
    ``(p, M, S_r, R)`` so the RTL's internal state can be checked too.
    """
    z = check_softmax_input(z, cfg)
    if z.shape[0] != 1:
        raise ValueError(f"softmax_row_online takes one row, not {z.shape[0]}")
    z = z[0]
    lanes = cfg.softmax_lanes if lanes is None else lanes
    f, g = cfg.softmax_in_frac, cfg.softmax_max_shift
    table = exp2_table(cfg)
    m = None
    s = 0
    for start in range(0, len(z), lanes):
        chunk = [int(v) for v in z[start:start + lanes]]
        m_chunk = -((-max(chunk)) >> f)
        if m is None:
            m = m_chunk
        elif m_chunk > m:
            s >>= m_chunk - m                                   # exact: every term has G guard bits
            m = m_chunk
        for v in chunk:
            delta = (m << f) - v
            s += int(table[delta & ((1 << f) - 1)]) << (g - (delta >> f))
    assert s.bit_length() <= cfg.softmax_sum_bits, "running sum exceeded softmax_sum_bits"
    s_r = s >> g
    q, r = _decompose(z[None, :], cfg, np.array([m], dtype=np.int64))
    p = _finish(q, r, np.array([s_r], dtype=np.int64), cfg)[0]
    omax = (1 << cfg.softmax_out_bits) - 1
    return p, m, s_r, (omax << cfg.softmax_recip_frac) // s_r


def softmax_float_reference(z, cfg: StaConfig) -> np.ndarray:
    """The float softmax the integer one approximates, in units of output LSBs (× omax)."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = z[None, :]
    x = z / (1 << cfg.softmax_in_frac)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp2(x)
    return e / e.sum(axis=-1, keepdims=True) * ((1 << cfg.softmax_out_bits) - 1)
