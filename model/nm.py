"""N:M structured sparsity: masks, SR-STE training, the compressed format and memory packing.

Everything that the RTL, the compiler and the host driver need to agree on about N:M weights
is defined here, once.

Conventions
    Weights follow the ``nn.Linear`` layout ``(out_features, in_features)``: the *last*
    dimension is the input-channel dimension and is cut into groups of ``m`` consecutive
    channels; each group keeps at most ``n`` nonzeros. Valid patterns: ``m`` a power of two in
    [2, 16] and ``1 <= n < m``.

Compressed format (:class:`NMCompressed`)
    ``values[r, g, k]`` / ``indices[r, g, k]`` is the k-th kept weight of group ``g`` of row
    ``r``; it sits at dense column ``g * m + indices[r, g, k]``. Every group holds exactly
    ``n`` entries with strictly ascending indices in ``[0, m)``. A group with fewer than ``n``
    nonzeros is padded with the lowest unused indices, holding value 0.

Weight-memory words (:func:`pack_words`)
    One word holds ``L = cfg.lanes`` entries of ``E = cfg.weight_bits + cfg.index_bits`` bits;
    entry ``j`` occupies bits ``[j*E, (j+1)*E)``: value (two's complement) in the low
    ``weight_bits`` bits, index in the next ``index_bits`` bits. For one output row the entries
    run group 0..G-1, each group's ``n`` entries in ascending-index order, cut into words of
    ``L``; each row starts on a fresh word. The row's last word is filled with whole *padding
    groups*: value 0 and indices ``0, 1, ..., n-1`` (a valid ascending group that contributes
    nothing). Words are ``numpy.uint64`` when ``L*E <= 64`` and Python ints (``dtype=object``)
    otherwise (:func:`weight_word_bits`).

This module never imports Amaranth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nmaccel.spec.config import StaConfig, clog2

__all__ = [
    "check_nm",
    "nm_mask",
    "SrSteSparsify",
    "sr_ste_weight",
    "NMSparseLinear",
    "NMCompressed",
    "compress",
    "decompress",
    "bits_per_weight",
    "metadata_bits_per_group",
    "entry_bits",
    "weight_word_bits",
    "words_per_row",
    "pack_words",
    "unpack_words",
    "dense_words_per_row",
    "pack_dense_words",
    "unpack_dense_words",
]

SR_STE_LAMBDA = 2e-4


# -- validation -------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_nm(n: Any, m: Any) -> tuple[int, int]:
    """Validate an N:M pattern and return ``(n, m)`` as Python ints.

    ``m`` must be a power of two in [2, 16] and ``1 <= n < m``; raises ``ValueError`` otherwise.
    """
    if not _is_int(m) or not 2 <= m <= 16 or int(m) & (int(m) - 1):
        raise ValueError(f"m must be a power of two in [2, 16], not {m!r}")
    m = int(m)
    if not _is_int(n) or not 1 <= n < m:
        raise ValueError(f"n must satisfy 1 <= n < m (m={m}), not {n!r}")
    return int(n), m


def _check_cols(cols: int, m: int, what: str) -> None:
    if cols % m:
        raise ValueError(f"the last dimension of {what} ({cols}) must be divisible by m={m}")


def _check_cfg(cfg: Any) -> StaConfig:
    if not isinstance(cfg, StaConfig):
        raise ValueError(f"cfg must be a StaConfig, not {type(cfg).__name__}")
    return cfg


# -- masks -------------------------------------------------------------------------------------


def nm_mask(weight: torch.Tensor | np.ndarray, n: int, m: int) -> torch.Tensor | np.ndarray:
    """Boolean N:M mask keeping, per row and per group of ``m`` input channels, the ``n`` largest
    |w|.

    ``weight`` has any leading dimensions; the last one (input channels) must be divisible by
    ``m``. Ties in |w| are broken deterministically: the lower index within the group wins.
    Returns a ``torch.BoolTensor`` (a numpy bool array for a numpy input) shaped like ``weight``.
    """
    n, m = check_nm(n, m)
    is_numpy = isinstance(weight, np.ndarray)
    w = torch.from_numpy(np.ascontiguousarray(weight)) if is_numpy else weight
    if not isinstance(w, torch.Tensor):
        raise ValueError("weight must be a torch.Tensor or numpy array, not "
                         f"{type(weight).__name__}")
    if w.dim() < 1:
        raise ValueError("weight must have at least one dimension (input channels)")
    _check_cols(w.shape[-1], m, "weight")
    w = w.detach()
    if w.is_floating_point() and bool(torch.isnan(w).any()):
        raise ValueError("weight contains NaN; an N:M mask is undefined")
    if w.dtype == torch.bool:
        w = w.to(torch.int8)
    mag = w.abs().reshape(*w.shape[:-1], w.shape[-1] // m, m)
    # A stable descending sort keeps equal magnitudes in index order: lower index wins ties.
    order = torch.sort(mag, dim=-1, descending=True, stable=True).indices[..., :n]
    mask = torch.zeros(mag.shape, dtype=torch.bool, device=w.device)
    mask.scatter_(-1, order, True)
    mask = mask.reshape(w.shape)
    return mask.numpy() if is_numpy else mask


# -- SR-STE ------------------------------------------------------------------------------------


class SrSteSparsify(torch.autograd.Function):
    """Sparse-refined straight-through estimator (Zhou et al., ICLR 2021, arXiv:2102.04010).

    Forward: ``w * mask`` with ``mask = nm_mask(w, n, m)``.
    Backward: ``grad + lam * (1 - mask) * w`` for the dense weight (no gradient for n, m, lam).
    Call as ``SrSteSparsify.apply(weight, n, m, lam)``.
    """

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, n: int, m: int,
                lam: float = SR_STE_LAMBDA) -> torch.Tensor:
        mask = nm_mask(weight, n, m)
        ctx.save_for_backward(weight, mask)
        ctx.lam = float(lam)
        return weight * mask

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight, mask = ctx.saved_tensors
        pruned = (~mask).to(weight.dtype)
        return grad_output + ctx.lam * pruned * weight, None, None, None


def sr_ste_weight(weight: torch.Tensor, n: int, m: int, lam: float = SR_STE_LAMBDA) -> torch.Tensor:
    """N:M-sparsified ``weight`` whose gradient follows SR-STE (see :class:`SrSteSparsify`)."""
    n, m = check_nm(n, m)
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"weight must be a torch.Tensor, not {type(weight).__name__}")
    if not weight.is_floating_point():
        raise ValueError(f"weight must be a floating-point tensor for SR-STE, not {weight.dtype}")
    if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not lam >= 0:
        raise ValueError(f"lam must be a non-negative number, not {lam!r}")
    return SrSteSparsify.apply(weight, n, m, float(lam))


class NMSparseLinear(torch.nn.Linear):
    """``nn.Linear`` whose weight is N:M-sparsified by SR-STE in every forward pass.

    ``forward(x) == F.linear(x, weight * nm_mask(weight, n, m), bias)``; the dense ``weight``
    is what the optimizer updates. ``in_features`` must be divisible by ``m``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 n: int = 2, m: int = 4, lam: float = SR_STE_LAMBDA,
                 device: Any = None, dtype: Any = None) -> None:
        n, m = check_nm(n, m)
        if not _is_int(in_features) or in_features < 1:
            raise ValueError(f"in_features must be a positive integer, not {in_features!r}")
        if in_features % m:
            raise ValueError(f"in_features ({in_features}) must be divisible by m={m}")
        if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not lam >= 0:
            raise ValueError(f"lam must be a non-negative number, not {lam!r}")
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.n = n
        self.m = m
        self.lam = float(lam)

    def mask(self) -> torch.Tensor:
        """The current N:M mask of ``weight`` (bool, no gradient)."""
        return nm_mask(self.weight, self.n, self.m)

    def sparse_weight(self) -> torch.Tensor:
        """The current sparsified weight, detached (what would be deployed)."""
        w = self.weight.detach()
        return w * nm_mask(w, self.n, self.m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, sr_ste_weight(self.weight, self.n, self.m, self.lam), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n={self.n}, m={self.m}, lam={self.lam:g}"


# -- compressed format -------------------------------------------------------------------------


@dataclass
class NMCompressed:
    """An N:M-sparse ``(rows, cols)`` matrix in index form (the format shared with RTL/compiler).

    ``values``: integer (or float) array ``(rows, groups, n)``; ``indices``: ``uint8`` array
    ``(rows, groups, n)``, strictly ascending within a group, each ``< m``; ``groups = cols // m``.
    Entry ``(r, g, k)`` is dense element ``[r, g * m + indices[r, g, k]]``.
    """

    values: np.ndarray
    indices: np.ndarray
    n: int
    m: int
    cols: int

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values)
        self.indices = np.asarray(self.indices)

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])

    @property
    def groups(self) -> int:
        return int(self.values.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        """Dense shape ``(rows, cols)``."""
        return self.rows, self.cols

    def validate(self) -> NMCompressed:
        """Check shapes, index range and strict ascending order; return ``self``.

        Raises ``ValueError`` naming the first offending row/group (row-major order), e.g.
        ``"indices of row 3 group 5 are not strictly ascending: [2, 2]"``.
        """
        n, m = check_nm(self.n, self.m)
        if not _is_int(self.cols) or self.cols < 0:
            raise ValueError(f"cols must be a non-negative integer, not {self.cols!r}")
        _check_cols(int(self.cols), m, "the dense matrix (cols)")
        groups = int(self.cols) // m
        for name, arr in (("values", self.values), ("indices", self.indices)):
            if arr.ndim != 3 or arr.shape[1:] != (groups, n):
                raise ValueError(f"{name} must have shape (rows, {groups}, {n}) = "
                                 f"(rows, cols // m, n), not {arr.shape}")
        if self.values.shape != self.indices.shape:
            raise ValueError(f"values {self.values.shape} and indices {self.indices.shape} "
                             "must have the same shape")
        if not np.issubdtype(self.indices.dtype, np.integer):
            raise ValueError(f"indices must have an integer dtype, not {self.indices.dtype}")
        if not (np.issubdtype(self.values.dtype, np.integer)
                or np.issubdtype(self.values.dtype, np.floating)):
            raise ValueError(f"values must have an integer or float dtype, not {self.values.dtype}")
        # int16 holds every index a valid file can have (m <= 2**15) and the out-of-range ones
        # of a uint8/int8 array; wider dtypes keep int64
        small = self.indices.dtype.itemsize == 1
        idx = self.indices.astype(np.int16 if small else np.int64)
        bad_range = ((idx < 0) | (idx >= m)).any(axis=-1)
        bad_order = (np.diff(idx, axis=-1) <= 0).any(axis=-1) if n > 1 else np.zeros_like(bad_range)
        bad = bad_range | bad_order
        if bad.any():
            r, g = (int(v) for v in np.argwhere(bad)[0])
            shown = [int(v) for v in idx[r, g]]
            if bad_range[r, g]:
                raise ValueError(f"indices of row {r} group {g} must be in [0, {m}): {shown}")
            raise ValueError(f"indices of row {r} group {g} are not strictly ascending: {shown}")
        return self


def _to_numpy(array: Any, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    if isinstance(array, np.ndarray):
        return array
    raise ValueError(f"{name} must be a numpy array or torch.Tensor, not {type(array).__name__}")


def compress(dense: np.ndarray | torch.Tensor, n: int, m: int) -> NMCompressed:
    """Compress a 2-D matrix that is already N:M sparse (along its last dimension).

    Per group, the positions of the nonzeros are kept; a group with fewer than ``n`` nonzeros is
    padded with its lowest unused indices holding value 0, so every group has exactly ``n``
    entries in ascending index order. A group with more than ``n`` nonzeros raises
    ``ValueError`` naming the first such row/group. ``values`` keep the dtype of ``dense``.
    """
    n, m = check_nm(n, m)
    d = _to_numpy(dense, "dense")
    if d.ndim != 2:
        raise ValueError(f"dense must be a 2-D matrix (rows, cols), not shape {d.shape}")
    if not (np.issubdtype(d.dtype, np.integer) or np.issubdtype(d.dtype, np.floating)):
        raise ValueError(f"dense must have an integer or float dtype, not {d.dtype}")
    rows, cols = d.shape
    _check_cols(cols, m, "dense")
    groups = cols // m
    grouped = d.reshape(rows, groups, m)
    nonzero = grouped != 0
    counts = nonzero.sum(axis=-1)
    if (counts > n).any():
        r, g = (int(v) for v in np.argwhere(counts > n)[0])
        pos = [int(v) for v in np.flatnonzero(nonzero[r, g])]
        raise ValueError(f"row {r} group {g} of dense has {int(counts[r, g])} nonzeros at "
                         f"positions {pos}, more than n={n} for {n}:{m} sparsity")
    # Priority: nonzeros first, then zeros by ascending index; keep n, then sort ascending.
    key = (~nonzero).astype(np.int64) * m + np.arange(m)
    chosen = np.sort(np.argsort(key, axis=-1, kind="stable")[..., :n], axis=-1)
    values = np.take_along_axis(grouped, chosen, axis=-1).copy()
    return NMCompressed(values=values, indices=chosen.astype(np.uint8), n=n, m=m, cols=cols)


def decompress(c: NMCompressed) -> np.ndarray:
    """Exact inverse of :func:`compress`: the dense ``(rows, cols)`` matrix (dtype of
    ``values``)."""
    c.validate()
    dense = np.zeros((c.rows, c.groups, c.m), dtype=c.values.dtype)
    np.put_along_axis(dense, c.indices.astype(np.intp), c.values, axis=-1)
    return dense.reshape(c.rows, c.cols)


# -- storage cost ------------------------------------------------------------------------------


def bits_per_weight(n: int, m: int, weight_bits: int = 8) -> float:
    """Average storage bits per dense weight in index form: ``n * (weight_bits + clog2(m)) / m``.

    E.g. 2:4 int8 -> 5.0, 1:4 -> 2.5 (dense int8 is 8).
    """
    n, m = check_nm(n, m)
    if not _is_int(weight_bits) or weight_bits < 1:
        raise ValueError(f"weight_bits must be a positive integer, not {weight_bits!r}")
    return n * (int(weight_bits) + clog2(m)) / m


def metadata_bits_per_group(n: int, m: int) -> dict[str, int]:
    """Metadata bits per group of ``m`` for the three encodings.

    ``index``: ``n * ceil(log2 m)`` (the one used here); ``bitmap``: ``m``;
    ``minimum``: ``ceil(log2 C(m, n))`` (enumerating the patterns).
    """
    n, m = check_nm(n, m)
    return {"index": n * clog2(m), "bitmap": m, "minimum": clog2(math.comb(m, n))}


# -- weight-memory packing ---------------------------------------------------------------------


def entry_bits(cfg: StaConfig) -> int:
    """Bits of one sparse word entry: ``E = weight_bits + index_bits``."""
    cfg = _check_cfg(cfg)
    return cfg.weight_bits + cfg.index_bits


def weight_word_bits(cfg: StaConfig) -> int:
    """Width of one weight-memory word, ``lanes * E``; words are uint64 iff this is <= 64."""
    return _check_cfg(cfg).lanes * entry_bits(cfg)


def _word_dtype(cfg: StaConfig) -> Any:
    return np.uint64 if weight_word_bits(cfg) <= 64 else object


def _value_dtype(weight_bits: int) -> Any:
    return np.int8 if weight_bits <= 8 else np.int16 if weight_bits <= 16 else np.int64


def words_per_row(cols: int, n: int, m: int, lanes: int) -> int:
    """Sparse words per output row: ``ceil((cols // m) * n / lanes)``."""
    n, m = check_nm(n, m)
    if not _is_int(cols) or cols < 0:
        raise ValueError(f"cols must be a non-negative integer, not {cols!r}")
    _check_cols(int(cols), m, "the weight (cols)")
    if not _is_int(lanes) or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
    if lanes % n:
        raise ValueError(f"lanes ({lanes}) must be a multiple of n={n}")
    return -(-(int(cols) // m) * n // int(lanes))


def _check_pack_pattern(cfg: StaConfig, n: int, m: int) -> None:
    if m != cfg.m:
        raise ValueError(f"m={m} of the weights must equal cfg.m={cfg.m} (the mux width)")
    if cfg.lanes % n:
        raise ValueError(f"cfg.lanes ({cfg.lanes}) must be a multiple of n={n}")


def _check_int_fit(values: np.ndarray, bits: int, what: str) -> None:
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{what} must have an integer dtype for packing, not {values.dtype}")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if values.size:
        v = values.astype(np.int64)
        bad = (v < lo) | (v > hi)
        if bad.any():
            pos = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{what} must fit in weight_bits={bits} signed bits [{lo}, {hi}]; "
                             f"found {int(v[pos])} at {pos}")


def _join_fields(fields: np.ndarray, field_bits: int, dtype: Any) -> np.ndarray:
    """OR ``fields[..., j] << (j * field_bits)`` over the last axis (fields already masked)."""
    lanes = fields.shape[-1]
    if dtype is object:
        f = fields.astype(object)
        shifts = np.array([j * field_bits for j in range(lanes)], dtype=object)
        return (f << shifts).sum(axis=-1) if lanes else np.zeros(fields.shape[:-1], dtype=object)
    f = fields.astype(np.uint64)
    shifts = (np.arange(lanes, dtype=np.uint64) * np.uint64(field_bits))
    # fields do not overlap, so the sum is the bitwise OR
    return np.bitwise_or.reduce(f << shifts, axis=-1).astype(np.uint64)


def _split_fields(words: np.ndarray, field_bits: int, lanes: int) -> np.ndarray:
    """Inverse of :func:`_join_fields`: unsigned fields, shape ``words.shape + (lanes,)`` int64."""
    if words.dtype == object:
        shifts = np.array([j * field_bits for j in range(lanes)], dtype=object)
        f = (words[..., None] >> shifts) & ((1 << field_bits) - 1)
        return f.astype(np.int64)
    w = words.astype(np.uint64)
    shifts = np.arange(lanes, dtype=np.uint64) * np.uint64(field_bits)
    f = (w[..., None] >> shifts) & np.uint64((1 << field_bits) - 1)
    return f.astype(np.int64)


def _as_words(words: Any, width: int) -> np.ndarray:
    w = np.asarray(words)
    if w.ndim != 2:
        raise ValueError(f"words must be a 2-D array (rows, words_per_row), not shape {w.shape}")
    if w.dtype != object and not np.issubdtype(w.dtype, np.integer):
        raise ValueError(f"words must be unsigned integers (uint64 or Python ints), not {w.dtype}")
    if w.dtype == object:
        for i, x in enumerate(w.flat):
            if not _is_int(x) or x < 0:
                raise ValueError(f"word {np.unravel_index(i, w.shape)} is not a non-negative "
                                 f"integer: {x!r}")
        w = np.array([[int(x) for x in row] for row in w], dtype=object).reshape(w.shape)
        over = np.array([[x >> width != 0 for x in row] for row in w], dtype=bool).reshape(w.shape)
    else:
        if np.issubdtype(w.dtype, np.signedinteger) and (w < 0).any():
            raise ValueError("words must be non-negative")
        w = w.astype(np.uint64)
        over = (w >> np.uint64(width)) != 0 if width < 64 else np.zeros(w.shape, dtype=bool)
    if over.any():
        pos = tuple(int(i) for i in np.argwhere(over)[0])
        raise ValueError(f"word {pos} has bits set above the {width}-bit word width")
    return w


def pack_words(c: NMCompressed, cfg: StaConfig) -> np.ndarray:
    """Pack ``c`` into weight-memory words, shape ``(rows, words_per_row)``.

    Layout (see module docstring): ``L = cfg.lanes`` entries per word, entry ``j`` at bits
    ``[j*E, (j+1)*E)`` with ``E = weight_bits + index_bits``, value (two's complement) low,
    index high; entries in (group, k) order per output row, each row on fresh words; the last
    word is filled with padding groups (values 0, indices ``0..n-1``). ``c.m`` must equal
    ``cfg.m`` and ``cfg.lanes`` must be a multiple of ``c.n``; values must be integers fitting
    ``cfg.weight_bits`` signed bits. dtype: uint64 if ``lanes * E <= 64``, else object.
    """
    cfg = _check_cfg(cfg)
    if not isinstance(c, NMCompressed):
        raise ValueError(f"c must be an NMCompressed, not {type(c).__name__}")
    c.validate()
    _check_pack_pattern(cfg, c.n, c.m)
    _check_int_fit(c.values, cfg.weight_bits, "values")
    lanes, wb = cfg.lanes, cfg.weight_bits
    wpr = words_per_row(c.cols, c.n, c.m, lanes)
    total = wpr * lanes
    used = c.groups * c.n
    vals = np.zeros((c.rows, total), dtype=np.int64)
    idx = np.tile(np.arange(total, dtype=np.int64) % c.n, (c.rows, 1))  # padding groups
    vals[:, :used] = c.values.reshape(c.rows, used)
    idx[:, :used] = c.indices.reshape(c.rows, used)
    entries = (vals & ((1 << wb) - 1)) | (idx << wb)
    return _join_fields(entries.reshape(c.rows, wpr, lanes), entry_bits(cfg), _word_dtype(cfg))


def unpack_words(words: np.ndarray, cfg: StaConfig, n: int, m: int, cols: int) -> NMCompressed:
    """Exact inverse of :func:`pack_words` for an ``n``:``m`` matrix with ``cols`` dense columns.

    Raises ``ValueError`` if the word count per row is wrong, bits above the word width are set,
    the padding entries are not the canonical ones, or the result fails ``validate()``.
    """
    cfg = _check_cfg(cfg)
    n, m = check_nm(n, m)
    _check_pack_pattern(cfg, n, m)
    wpr = words_per_row(cols, n, m, cfg.lanes)
    w = _as_words(words, weight_word_bits(cfg))
    if w.shape[1] != wpr:
        raise ValueError(f"words must have {wpr} words per row for cols={cols}, {n}:{m}, "
                         f"lanes={cfg.lanes}; got {w.shape[1]}")
    rows, lanes, wb = w.shape[0], cfg.lanes, cfg.weight_bits
    fields = _split_fields(w, entry_bits(cfg), lanes).reshape(rows, wpr * lanes)
    vals = fields & ((1 << wb) - 1)
    vals = np.where(vals >= (1 << (wb - 1)), vals - (1 << wb), vals)
    idx = fields >> wb
    groups, used = cols // m, (cols // m) * n
    pad_v, pad_i = vals[:, used:], idx[:, used:]
    want_i = np.arange(used, wpr * lanes) % n
    bad = (pad_v != 0) | (pad_i != want_i)
    if bad.any():
        r, j = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"padding entry {used + j} of row {r} must be (value 0, index "
                         f"{int(want_i[j])}), not ({int(pad_v[r, j])}, {int(pad_i[r, j])})")
    c = NMCompressed(values=vals[:, :used].reshape(rows, groups, n).astype(_value_dtype(wb)),
                     indices=idx[:, :used].reshape(rows, groups, n).astype(np.uint8),
                     n=n, m=m, cols=int(cols))
    return c.validate()


# -- dense packing -----------------------------------------------------------------------------


def dense_words_per_row(cols: int, lanes: int) -> int:
    """Dense words per output row: ``ceil(cols / lanes)``."""
    if not _is_int(cols) or cols < 0:
        raise ValueError(f"cols must be a non-negative integer, not {cols!r}")
    if not _is_int(lanes) or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
    return -(-int(cols) // int(lanes))


def pack_dense_words(w_int: np.ndarray | torch.Tensor, cfg: StaConfig) -> np.ndarray:
    """Pack a dense integer ``(rows, cols)`` matrix into words of ``L = cfg.lanes`` values.

    Value ``j`` of a word (dense column ``word * L + j``) occupies bits
    ``[j*weight_bits, (j+1)*weight_bits)`` in two's complement; no index bits (indices are
    implicitly the identity). Each row starts on a fresh word; the last word is padded with 0.
    Bits at and above ``L * weight_bits`` are 0. dtype follows the sparse words (uint64 iff
    ``weight_word_bits(cfg) <= 64``) so both kinds share the weight memory.
    """
    cfg = _check_cfg(cfg)
    w = _to_numpy(w_int, "w_int")
    if w.ndim != 2:
        raise ValueError(f"w_int must be a 2-D matrix (rows, cols), not shape {w.shape}")
    _check_int_fit(w, cfg.weight_bits, "w_int")
    rows, cols = w.shape
    lanes, wb = cfg.lanes, cfg.weight_bits
    wpr = dense_words_per_row(cols, lanes)
    vals = np.zeros((rows, wpr * lanes), dtype=np.int64)
    vals[:, :cols] = w
    fields = vals & ((1 << wb) - 1)
    return _join_fields(fields.reshape(rows, wpr, lanes), wb, _word_dtype(cfg))


def unpack_dense_words(words: np.ndarray, cfg: StaConfig, cols: int) -> np.ndarray:
    """Exact inverse of :func:`pack_dense_words`: the ``(rows, cols)`` matrix (int8/int16)."""
    cfg = _check_cfg(cfg)
    wpr = dense_words_per_row(cols, cfg.lanes)
    lanes, wb = cfg.lanes, cfg.weight_bits
    w = _as_words(words, lanes * wb)
    if w.shape[1] != wpr:
        raise ValueError(f"words must have {wpr} words per row for cols={cols}, "
                         f"lanes={lanes}; got {w.shape[1]}")
    rows = w.shape[0]
    vals = _split_fields(w, wb, lanes).reshape(rows, wpr * lanes)
    vals = np.where(vals >= (1 << (wb - 1)), vals - (1 << wb), vals)
    if (vals[:, cols:] != 0).any():
        r, j = (int(v) for v in np.argwhere(vals[:, cols:] != 0)[0])
        raise ValueError(f"padding value {cols + j} of row {r} must be 0, not "
                         f"{int(vals[r, cols + j])}")
    return vals[:, :cols].astype(_value_dtype(wb))
