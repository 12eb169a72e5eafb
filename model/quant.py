"""Quantization formats of nmaccel, defined once (integer-only whitepaper scheme).

* Weights: int8, symmetric, per output channel: ``w ≈ wq * s_w[o]``, ``wq ∈ [-127, 127]``.
* Activations: int8, symmetric, per tensor: ``x ≈ xq * s_x``, ``xq ∈ [-128, 127]``.
* Accumulators: int32 (``StaConfig.acc_bits``).
* Requantization of an accumulator ``acc`` to ``out_bits``::

      y = saturate(round_shift(acc * mult, shift))
      round_shift(v, s) = (v + 2**(s-1)) >> s   for s > 0   (>> is an arithmetic shift)
                        = v                      for s = 0

  i.e. **round half up** (ties toward +infinity), then saturation to the signed (or
  unsigned) ``out_bits`` range. ``mult`` is an unsigned integer below
  ``2**requant_mult_bits``; ``mult / 2**shift`` approximates the real rescale factor.
  The RTL requant unit, the residual adder and LayerNorm's normaliser all use
  :func:`round_shift`.

Integer arithmetic here is NumPy ``int64``; every function checks that its products
cannot overflow 63 bits and raises ``ValueError`` otherwise, rather than wrap silently.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nmaccel.spec.config import StaConfig

__all__ = [
    "qrange", "saturate", "round_shift", "quantize_multiplier", "requant",
    "quantize_weight_per_channel", "activation_scale", "quantize_activation",
    "as_int64",
]

_INT64_SAFE = 1 << 62


def as_int64(x, name: str = "x") -> np.ndarray:
    """``x`` (NumPy array, torch tensor or sequence) as an ``int64`` array; floats are refused."""
    if isinstance(x, torch.Tensor):
        if x.is_floating_point():
            raise ValueError(f"{name} must hold integers, not {x.dtype}")
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object:
        arr = arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, not {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def qrange(bits: int, signed: bool = True) -> tuple[int, int]:
    """The integer range of a ``bits``-wide (signed or unsigned) number."""
    if not isinstance(bits, int) or bits < 1 or bits > 62:
        raise ValueError(f"bits must be an integer in [1, 62], not {bits!r}")
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def saturate(x: np.ndarray, bits: int, signed: bool = True) -> np.ndarray:
    lo, hi = qrange(bits, signed)
    return np.clip(x, lo, hi)


def round_shift(v: np.ndarray, shift) -> np.ndarray:
    """``round(v / 2**shift)`` with ties toward +infinity; ``shift`` may be per element."""
    v = as_int64(v, "v")
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(shift < 0) or np.any(shift > 62):
        raise ValueError(f"shift must be in [0, 62], not {shift.min()}..{shift.max()}")
    half = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    if np.any(np.abs(v) >= _INT64_SAFE - half):
        raise ValueError("round_shift input overflows 63 bits")
    return np.right_shift(v + half, shift)


def quantize_multiplier(real: float, mult_bits: int = StaConfig.requant_mult_bits,
                        max_shift: int = 62) -> tuple[int, int]:
    """Split a positive real rescale factor into ``(mult, shift)`` with ``real ≈ mult / 2**shift``.

    ``mult`` is normalised into ``[2**(mult_bits-1), 2**mult_bits)`` for the most precision;
    factors too large for a non-negative shift or so small that the shift would exceed
    ``max_shift`` raise ``ValueError`` (the latter returns ``(0, 0)`` only for ``real == 0``).
    """
    if not isinstance(real, (int, float)) or not math.isfinite(real) or real < 0:
        raise ValueError(f"rescale factor must be a finite non-negative number, not {real!r}")
    if real == 0:
        return 0, 0
    # real = mantissa * 2**exponent, mantissa in [0.5, 1)
    mantissa, exponent = math.frexp(real)
    mult = int(round(mantissa * (1 << mult_bits)))
    shift = mult_bits - exponent
    if mult == 1 << mult_bits:                       # rounding carried into a new bit
        mult >>= 1
        shift -= 1
    if shift < 0:
        raise ValueError(f"rescale factor {real!r} is too large for a {mult_bits}-bit multiplier "
                         f"and a non-negative shift (at most {2.0 ** (mult_bits - 1)!r})")
    if shift > max_shift:
        # Reduce precision rather than exceed the shifter: drop low multiplier bits.
        drop = shift - max_shift
        mult = (mult + (1 << (drop - 1))) >> drop
        shift = max_shift
        if mult == 0:
            raise ValueError(f"rescale factor {real!r} is too small for a shift of at most "
                             f"{max_shift}")
    return mult, shift


def requant(acc, mult, shift, out_bits: int = 8, signed: bool = True,
            mult_bits: int = StaConfig.requant_mult_bits, zero: int = 0) -> np.ndarray:
    """Requantize integers ``acc`` by ``mult / 2**shift`` (round half up), add ``zero``, saturate.

    ``mult`` and ``shift`` are scalars or broadcast along the last axis (per output channel);
    ``zero`` is the output zero point (0 for the symmetric formats).
    """
    acc = as_int64(acc, "acc")
    mult = np.asarray(mult, dtype=np.int64)
    if np.any(mult < 0) or np.any(mult >= (1 << mult_bits)):
        raise ValueError(f"mult must be in [0, 2**{mult_bits}), not {mult.min()}..{mult.max()}")
    if acc.size and int(np.abs(acc).max()) * max(int(mult.max()), 1) >= _INT64_SAFE:
        raise ValueError("requant product acc * mult overflows 63 bits; "
                         f"|acc| up to {int(np.abs(acc).max())}, mult up to {int(mult.max())}")
    return saturate(round_shift(acc * mult, shift) + zero, out_bits, signed)


def quantize_weight_per_channel(w: torch.Tensor, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel quantization of ``w`` (rows = output channels).

    Returns ``(wq, scale)``: ``wq`` int64 in ``[-(2**(bits-1)-1), 2**(bits-1)-1]``, ``scale``
    float64 per row; an all-zero row gets scale 1.0. Rounding: half to even (``torch.round``).
    """
    w = torch.as_tensor(w, dtype=torch.float64)
    if w.dim() != 2:
        raise ValueError(f"weight must be 2-D (out, in), not of shape {tuple(w.shape)}")
    qmax = (1 << (bits - 1)) - 1
    maxabs = w.abs().amax(dim=1)
    scale = torch.where(maxabs > 0, maxabs / qmax, torch.ones_like(maxabs))
    wq = torch.clamp(torch.round(w / scale[:, None]), -qmax, qmax)
    return wq.to(torch.int64).numpy(), scale.numpy()


def activation_scale(maxabs: float, bits: int = 8) -> float:
    """Per-tensor symmetric scale so that ``maxabs`` maps onto the largest code."""
    if not math.isfinite(maxabs) or maxabs < 0:
        raise ValueError(f"maxabs must be a finite non-negative number, not {maxabs!r}")
    return (maxabs if maxabs > 0 else 1.0) / ((1 << (bits - 1)) - 1)


def quantize_activation(x: torch.Tensor, scale: float, bits: int = 8) -> np.ndarray:
    """``clamp(round(x / scale))`` to the signed ``bits`` range, as int64."""
    x = torch.as_tensor(x, dtype=torch.float64)
    lo, hi = qrange(bits)
    return torch.clamp(torch.round(x / scale), lo, hi).to(torch.int64).numpy()
