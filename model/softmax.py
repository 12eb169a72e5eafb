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

Split form
    ``S`` is an exact integer (no term or partial sum is ever rounded), and integer addition
    is associative, so any order or split of the accumulation gives the same ``S`` bit for
    bit. :func:`softmax_row_split` keeps ``k`` independent (running max, running sum) pairs,
    feeds the beats to them round-robin, and merges them at the row's end with the same exact
    shift (:func:`softmax_merge`: each partial sum keeps its ``G`` guard bits relative to the
    row's final max). The RTL uses this to give each shift-and-add loop ``k`` cycles.
"""

from __future__ import annotations

import numpy as np

from nmaccel.model.quant import as_int64, qrange
from nmaccel.spec.config import StaConfig
from nmaccel.spec.softmax_format import exp2_table

__all__ = ["exp2_table", "softmax_int", "softmax_row_online", "softmax_row_split",
           "softmax_partial", "softmax_merge", "softmax_float_reference", "check_softmax_input"]


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


def _one_row(z, cfg: StaConfig, name: str) -> np.ndarray:
    z = check_softmax_input(z, cfg)
    if z.shape[0] != 1:
        raise ValueError(f"{name} takes one row, not {z.shape[0]}")
    return z[0]


def _beats(z: np.ndarray, lanes: int) -> list[list[int]]:
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
    return [[int(v) for v in z[s:s + lanes]] for s in range(0, len(z), lanes)]


def softmax_partial(beats, cfg: StaConfig) -> tuple[int, int] | None:
    """One (running max, running sum) pair over ``beats`` (lists of in-range inputs), in
    order: the exact ``(m, S)`` with ``S = Σ T[r_i]·2**(G - q_i)`` relative to the integer
    max ``m`` of those elements, rescaled by a shift whenever a beat raises the max; ``None``
    for no elements. The shift is exact because every term carries ``G`` guard bits."""
    f, g = cfg.softmax_in_frac, cfg.softmax_max_shift
    table = exp2_table(cfg)
    m = None
    s = 0
    for chunk in beats:
        if not chunk:
            continue
        m_chunk = -((-max(chunk)) >> f)
        if m is None:
            m = m_chunk
        elif m_chunk > m:
            assert s & ((1 << (m_chunk - m)) - 1) == 0, "rescale would round"
            s >>= m_chunk - m
            m = m_chunk
        for v in chunk:
            delta = (m << f) - int(v)
            s += int(table[delta & ((1 << f) - 1)]) << (g - (delta >> f))
    if m is None:
        return None
    assert s.bit_length() <= cfg.softmax_sum_bits, "running sum exceeded softmax_sum_bits"
    return m, s


def softmax_merge(parts, cfg: StaConfig) -> tuple[int, int] | None:
    """Merges partial ``(m_j, S_j)`` pairs (``None`` for an empty one) of one row:
    ``M = max m_j``, ``S = Σ S_j >> (M - m_j)``. Exact (asserted): each ``S_j`` keeps its
    ``G`` guard bits relative to the row's final max, so no shift drops a one bit. Any
    order, any grouping gives the same ``(M, S)``; ``None`` if every part is empty."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    big = max(m for m, _ in parts)
    total = 0
    for m, s in parts:
        assert big - m <= cfg.softmax_max_shift and s & ((1 << (big - m)) - 1) == 0, \
            "merge shift would round"
        total += s >> (big - m)
    assert total.bit_length() <= cfg.softmax_sum_bits, "merged sum exceeded softmax_sum_bits"
    return big, total


def _result(z: np.ndarray, m: int, s: int, cfg: StaConfig):
    s_r = s >> cfg.softmax_max_shift
    q, r = _decompose(z[None, :], cfg, np.array([m], dtype=np.int64))
    p = _finish(q, r, np.array([s_r], dtype=np.int64), cfg)[0]
    omax = (1 << cfg.softmax_out_bits) - 1
    return p, m, s_r, (omax << cfg.softmax_recip_frac) // s_r


def softmax_row_online(z, cfg: StaConfig, lanes: int | None = None):
    """One-pass (online) form, as the hardware streams it, for a single row.

    Consumes ``lanes`` (default ``cfg.softmax_lanes``) elements per step, keeping the
    running integer max and the exact running sum in a Python integer of
    ``cfg.softmax_sum_bits`` bits; rescales by a shift when the max grows. Returns
    ``(p, M, S_r, R)`` so the RTL's internal state can be checked too.
    """
    z = _one_row(z, cfg, "softmax_row_online")
    lanes = cfg.softmax_lanes if lanes is None else lanes
    m, s = softmax_partial(_beats(z, lanes), cfg)
    return _result(z, m, s, cfg)


def softmax_row_split(z, cfg: StaConfig, k: int, lanes: int | None = None):
    """The online form split ``k`` ways, for a single row: beat ``b`` (``lanes`` elements,
    default ``cfg.softmax_lanes``) goes to pair ``b mod k``, each pair is a
    :func:`softmax_partial`, and :func:`softmax_merge` combines them at the row's end.
    Returns ``(p, M, S_r, R)`` like :func:`softmax_row_online`, bit for bit the same for any
    ``k >= 1`` (a row of fewer than ``k`` beats leaves pairs empty)."""
    z = _one_row(z, cfg, "softmax_row_split")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, not {k!r}")
    beats = _beats(z, cfg.softmax_lanes if lanes is None else lanes)
    m, s = softmax_merge([softmax_partial(beats[j::k], cfg) for j in range(k)], cfg)
    return _result(z, m, s, cfg)


def softmax_float_reference(z, cfg: StaConfig) -> np.ndarray:
    """The float softmax the integer one approximates, in units of output LSBs (× omax)."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = z[None, :]
    x = z / (1 << cfg.softmax_in_frac)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp2(x)
    return e / e.sum(axis=-1, keepdims=True) * ((1 << cfg.softmax_out_bits) - 1)
