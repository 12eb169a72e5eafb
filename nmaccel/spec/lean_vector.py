"""The memory-lean STA's time-shared vector datapath, defined once: its operations, the widths
of every product it forms, and its exact cycle count (pure Python, no Amaranth).

The RTL (:class:`nmaccel.hw.sta_lean.vector.SharedVectorUnit`) sizes its registers and its
multiply loops from :func:`lean_vector_format`; :func:`op_cycles` counts the same states.
Every result is that of the golden models (:mod:`nmaccel.model.quant`,
:mod:`nmaccel.model.intops`, :mod:`nmaccel.model.softmax`).

One 16 × 16-bit unsigned multiplier (one SB_MAC16 on an iCE40) forms every product in
sign-magnitude: an ``a``-bit by ``b``-bit product takes ``chunks(a) · chunks(b)`` cycles
(:data:`CHUNK` bits per chunk) plus one to apply the sign and add the addend. A rounding
shift by ``s`` walks the value right 16, 4 or 1 bits a cycle (:func:`rss_cycles`).
Division (64 quotient bits) and the integer square root (32 result bits) take one bit a cycle.

Operations (:class:`VecOp`), on elements (``n`` per command, parameters shared) or on one row
of ``n`` elements:

``REQUANT``   ``y = sat(round_shift(a·mult, shift) + zero, osel)`` (a GEMM's ``acc + bias``)
``GELU``      ``y = requant(x·poly(x), mult, shift, zero)`` (:func:`~nmaccel.model.intops.gelu_int`)
``ADD``       ``y = sat(round_shift(a·mult + b·mult2, shift), osel)``
              (:func:`~nmaccel.model.intops.residual_add`)
``LAYERNORM`` ``y = layernorm_int(row)`` at ``vec_bits``, and ``y2 = requant(y, mult2, shift2)``
              at ``act_bits`` (the ABUF copy of the STA's LAYERNORM command)
``SOFTMAX``   ``y = softmax_int(row)`` (unsigned ``softmax_out_bits``)
"""

from __future__ import annotations

import dataclasses
import functools
from enum import IntEnum

from nmaccel.spec.config import StaConfig, clog2

__all__ = ["CHUNK", "DIV_STEPS", "ISQRT_STEPS", "VecOp", "LeanVectorFormat",
           "lean_vector_format", "chunks", "shift_steps", "rss_cycles", "mul_cycles",
           "op_cycles"]

#: Bits per multiplier chunk (the SB_MAC16's 16 × 16 unsigned product).
CHUNK = 16
#: Quotient bits of the restoring divider (one a cycle).
DIV_STEPS = 64
#: Result bits of the integer square root (one a cycle; ``isqrt`` of a 64-bit value).
ISQRT_STEPS = 32
#: Bits the rounding shifter moves in one cycle, largest first.
SHIFT_STRIDES = (16, 4, 1)


class VecOp(IntEnum):
    """Operation of a vector command (``op``, 3 bits)."""
    REQUANT = 0
    GELU = 1
    ADD = 2
    LAYERNORM = 3
    SOFTMAX = 4


ROW_OPS = (VecOp.LAYERNORM, VecOp.SOFTMAX)


def chunks(bits: int) -> int:
    """Multiplier chunks of a ``bits``-bit magnitude."""
    return max(1, -(-bits // CHUNK))


@dataclasses.dataclass(frozen=True)
class LeanVectorFormat:
    """Widths (in bits of magnitude) and chunk counts of every product, from a config."""

    cfg: StaConfig
    #: longest row (LAYERNORM features, SOFTMAX keys): ``max_seq``
    row_depth: int
    count_bits: int
    #: magnitude bits of: a GEMM accumulator, a vec_bits value, a requant multiplier
    acc_mag: int
    vec_mag: int
    mult_mag: int
    #: GELU: the polynomial, the product x·poly
    poly_mag: int
    gelu_mag: int
    #: LayerNorm: c = d·x − Σx, the reciprocal R, the normalised n, n·gamma + beta
    c_mag: int
    recip_mag: int
    n_mag: int
    y_mag: int
    #: softmax: the exponent e, its reciprocal
    e_mag: int
    srecip_mag: int

    @property
    def div_bits(self) -> int:
        """Width of the divisor / root register: the widest divisor (the row length, the
        LayerNorm σ, the softmax's bucketed sum). σ = isqrt(Σc² // d) < 2**c_mag, since every
        ``|c| < 2**c_mag``."""
        bucket_sum = self.e_mag + self.count_bits + 1
        return max(self.count_bits, self.c_mag, bucket_sum)

    @property
    def a_chunks(self) -> int:
        """Chunks of the multiplier's first operand register (the widest first operand)."""
        return max(chunks(b) for b in (self.acc_mag, self.vec_mag, self.poly_mag, self.gelu_mag,
                                       self.c_mag, self.n_mag, self.y_mag, self.e_mag))

    @property
    def b_chunks(self) -> int:
        """Chunks of the second operand register."""
        return max(chunks(b) for b in (self.mult_mag, self.vec_mag, self.count_bits, self.c_mag,
                                       self.recip_mag, self.cfg.ln_gamma_bits, self.srecip_mag))


@functools.cache
def lean_vector_format(cfg: StaConfig) -> LeanVectorFormat:
    StaConfig.require(cfg)
    row = cfg.max_seq
    vec = cfg.vec_bits
    c_mag = vec + clog2(row) + 1
    n_mag = cfg.ln_frac + (clog2(row) + 1) // 2 + 2
    return LeanVectorFormat(
        cfg=cfg, row_depth=row, count_bits=clog2(row + 1),
        acc_mag=cfg.acc_bits, vec_mag=vec, mult_mag=cfg.requant_mult_bits,
        poly_mag=cfg.acc_bits + 1, gelu_mag=vec + cfg.acc_bits,
        c_mag=c_mag, recip_mag=cfg.ln_recip_frac + 1, n_mag=n_mag,
        y_mag=max(n_mag + cfg.ln_gamma_bits, cfg.acc_bits) + 1,
        e_mag=cfg.softmax_exp_bits + 1,
        srecip_mag=cfg.softmax_out_bits + cfg.softmax_recip_frac - cfg.softmax_exp_bits + 2)


def shift_steps(s: int) -> int:
    """Cycles the shifter takes to move a value right by ``s`` bits."""
    steps = 0
    for stride in SHIFT_STRIDES:
        steps += s // stride
        s %= stride
    return steps


def rss_cycles(shift: int) -> int:
    """Cycles of one round-shift-saturate by ``shift``: the walk by ``shift - 1``, the rounding
    step (both only for ``shift > 0``), the zero point, the saturation."""
    return (shift_steps(shift - 1) + 1 if shift > 0 else 0) + 2


def mul_cycles(a_mag: int, b_mag: int) -> int:
    """Cycles of one product: the operands' magnitudes (``MUL_LD``), every chunk pair, then
    the last product."""
    return 1 + chunks(a_mag) * chunks(b_mag) + 1


def op_cycles(cfg: StaConfig, op: int, n: int, shift: int = 0, shift2: int = 0) -> int:
    """Cycles from accepting a command until the unit is idle again, when every input beat is
    offered and every result taken at once (waits on the streams add to this).

    ``shift``/``shift2`` are the command's shifts (the rounding walk depends on them). Every
    state the unit passes is one term: a one-cycle step (the ``1 +`` terms, each setting up
    the next engine call), an engine (:func:`mul_cycles`, :func:`rss_cycles`, a division, a
    square root), a stream beat.
    """
    f = lean_vector_format(cfg)
    op = VecOp(op)
    if n == 0:
        return 1
    mul, rss = mul_cycles, rss_cycles
    if op == VecOp.REQUANT:
        each = 1 + mul(f.acc_mag, f.mult_mag) + 1 + rss(shift) + 1
    elif op == VecOp.ADD:
        each = 1 + mul(f.vec_mag, f.mult_mag) + 1 + mul(f.vec_mag, f.mult_mag) + 1 + rss(shift) + 1
    elif op == VecOp.GELU:
        each = (1 + mul(f.vec_mag, f.vec_mag) + 1 + mul(f.poly_mag, f.vec_mag) + 1
                + mul(f.gelu_mag, f.mult_mag) + 1 + rss(shift) + 1)
    if op not in ROW_OPS:
        return 1 + n * each
    if op == VecOp.LAYERNORM:
        stats = n * (1 + mul(f.vec_mag, f.count_bits) + 1 + mul(f.c_mag, f.c_mag) + 1)
        recip = DIV_STEPS + 1 + ISQRT_STEPS + 1 + DIV_STEPS + 1
        out = n * (1 + mul(f.vec_mag, f.count_bits) + 1 + mul(f.c_mag, f.recip_mag)
                   + 1 + rss(cfg.ln_recip_frac - cfg.ln_frac)
                   + 1 + mul(f.n_mag, cfg.ln_gamma_bits) + 1 + mul(f.y_mag, f.mult_mag)
                   + 1 + rss(shift) + 1 + mul(f.vec_mag, f.mult_mag) + 1 + rss(shift2) + 1)
        return 1 + n + stats + recip + out
    g = cfg.softmax_max_shift
    sums = 1 + 2 * n
    halve = 2 + g + 2
    recip = DIV_STEPS + 1
    out = n * (1 + 1 + mul(f.e_mag, f.srecip_mag) + 1 + rss(cfg.softmax_recip_frac) + 1)
    return 1 + n + sums + halve + recip + out
