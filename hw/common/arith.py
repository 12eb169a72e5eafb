"""Pipelined arithmetic shared by the STA and the conv engine.

:class:`PipelinedMultiplier` (``latency = MUL_LATENCY = 4``)
    ``o = a · b`` at full width. Both operands are cut into chunks of ``MUL_CHUNK_BITS``
    (17) bits from the LSB (unsigned; the top chunk keeps the operand's signedness), so every
    partial product fits one 18×18 hard multiplier (ECP5 MULT18X18D). Stage 1 registers each
    partial product's operands (its own copies, see below), stage 2 the partial products,
    stages 3 and 4 are two adder-tree levels (pairs for up to four partial products, e.g.
    34×34 or 68×17 bits; wider products sum ``ceil(sqrt(n))`` at a level; a product that
    needs one chunk just travels through). Written this way because Yosys' ``mul2dsp`` joins
    the chunks of a wide product with one combinational adder chain behind the multipliers:
    17.2 ns on the ECP5 for a 32×16-bit product.

    The operand registers: nextpnr times a MULT18X18D as a combinational 3.9 ns, so a
    register → DSP → register path has about 3.5 ns of routing left at 125 MHz, and an
    operand register that fed several DSPs (the chunk of a wide product, a per-feature
    scalar shared by every lane: ``mult``, ``gamma``) or sat among its own sources was
    placed 2–4 ns of routing away. Each partial product now has operand registers of its
    own, with nothing behind them but its multiplier. Identical registers would be merged
    by Yosys, so each is zeroed when the other operand of its partial product is zero
    (the product does not change): that makes it a function of its own pair of chunks.

:class:`RoundShiftSaturate` (``latency = ROUND_SATURATE_LATENCY = 4``)
    ``o = saturate(round_shift(value, shift) + zero, lo, hi)`` with ``round_shift`` of
    :mod:`nmaccel.model.quant` (round half up, arithmetic shift; ``shift = 0`` passes the
    value). Stages: the barrel shift ``pre = (2·value) >> shift`` in two steps (by
    ``shift & ~7``, then by ``shift & 7``: an 8:1 mux per bit each, instead of one 64:1 mux
    behind the shift register, which fans out to every bit of every lane); one add
    ``(pre + 2·zero + 1) >> 1``; the saturation (a sign-bit check for the usual power-of-two
    ranges, comparators otherwise).

Both are fully pipelined (one result per cycle) and hold no control: wrap them in
``EnableInserter`` to stall them with their pipeline.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Shape, ShapeCastable, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.dsp import registered_product
from nmaccel.spec.config import MUL_CHUNK_BITS, MUL_LATENCY, ROUND_SATURATE_LATENCY

__all__ = ["PipelinedMultiplier", "RoundShiftSaturate", "delay_chain", "mul_chunks",
           "partial_products", "product_shape", "sum_pairs"]

#: Width of the ``shift`` port of :class:`RoundShiftSaturate` (shifts 0..63).
SHIFT_BITS = 6
#: Low bits of the shift that :class:`RoundShiftSaturate` applies in its second stage (the
#: first shifts by the multiple of ``2**FINE_BITS``): two 8:1 muxes instead of one 64:1.
FINE_BITS = 3


def _shape(value, what: str) -> Shape:
    if isinstance(value, ShapeCastable):
        value = Shape.cast(value)
    if not isinstance(value, Shape) or value.width < 1:
        raise TypeError(f"{what} must be a signed or unsigned shape at least 1 bit wide, "
                        f"not {value!r}")
    return value


def delay_chain(m, sig, upto: int, name: str, *, reset_less: bool = True) -> list:
    """``[sig, sig delayed 1, …, sig delayed upto]``: what travels beside a pipeline."""
    regs = [sig]
    for k in range(1, upto + 1):
        r = Signal.like(sig, name=f"{name}_{k}", reset_less=reset_less)
        m.d.sync += r.eq(regs[-1])
        regs.append(r)
    return regs


def mul_chunks(shape) -> list[tuple[int, int, bool]]:
    """``(offset, width, signed)`` of each chunk :class:`PipelinedMultiplier` cuts ``shape``
    into."""
    shape = _shape(shape, "shape")
    chunks, off = [], 0
    while off < shape.width:
        width = min(MUL_CHUNK_BITS, shape.width - off)
        top = off + width == shape.width
        chunks.append((off, width, shape.signed and top))
        off += width
    return chunks


def product_shape(a_shape, b_shape) -> Shape:
    """Shape of ``a · b`` (exact): signed if either operand is."""
    a, b = _shape(a_shape, "a_shape"), _shape(b_shape, "b_shape")
    return signed(a.width + b.width + 1) if (a.signed or b.signed) else unsigned(a.width + b.width)


def sum_pairs(m, values, shape, name: str, *, reset_less: bool = False) -> list:
    """One registered level of a pairwise adder tree: ``values[2i] + values[2i + 1]`` into the
    register ``{name}_{i}`` of ``shape`` (an odd last value is registered alone; ``reset_less``
    registers without a reset). Returns the level's registers."""
    out = []
    for i in range(0, len(values), 2):
        s = Signal(shape, name=f"{name}_{i // 2}", reset_less=reset_less)
        m.d.sync += s.eq(values[i] + values[i + 1] if i + 1 < len(values) else values[i])
        out.append(s)
    return out


def partial_products(m, a, b, name: str = "", *, platform=None, ce=None,
                     gate: bool = True) -> list:
    """The first two stages of :class:`PipelinedMultiplier` for values ``a`` and ``b``: per
    pair of chunks (:func:`mul_chunks`) a :func:`~nmaccel.hw.common.dsp.registered_product`
    (its own operand registers, then the partial product's register; on the ECP5 both inside
    one MULT18X18D). ``ce``: their clock enable; ``gate``: as ``registered_product``'s.
    Returns ``[(partial product, bit offset)]``; their sum is ``a · b``."""
    partials = []
    for ia, (oa, wa, sa) in enumerate(mul_chunks(a.shape())):
        ca = a[oa:oa + wa]
        ca = ca.as_signed() if sa else ca
        for ib, (ob, wb, sb) in enumerate(mul_chunks(b.shape())):
            cb = b[ob:ob + wb]
            cb = cb.as_signed() if sb else cb
            p = registered_product(m, ca, cb, product_shape(ca.shape(), cb.shape()),
                                   platform=platform, name=f"{name}{ia}_{ib}_", ce=ce,
                                   gate=gate)
            partials.append((p, oa + ob))
    return partials


class PipelinedMultiplier(wiring.Component):
    """``o = a · b`` over ``MUL_LATENCY`` register stages (module docstring).

    Ports
        ``a`` In ``a_shape``; ``b`` In ``b_shape``; ``o`` Out :func:`product_shape`;
        ``ce`` In 1 (init 1): clock enable of the partial products (a pipeline that stalls
        this multiplier with ``EnableInserter`` drives it with the same enable: the ECP5's
        DSP registers are not reached by ``EnableInserter``).

    Inputs presented in cycle ``t`` give ``o`` in cycle ``t + latency``.
    """

    latency = MUL_LATENCY

    def __init__(self, a_shape, b_shape) -> None:
        a, b = _shape(a_shape, "a_shape"), _shape(b_shape, "b_shape")
        self.a_shape, self.b_shape = a, b
        self.o_shape = product_shape(a, b)
        super().__init__({"a": In(a), "b": In(b), "ce": In(1, init=1),
                          "o": Out(self.o_shape)})

    def elaborate(self, platform) -> Module:
        m = Module()
        ow = self.o_shape
        partials = partial_products(m, self.a, self.b, platform=platform, ce=self.ce)
        # MUL_LATENCY − 2 adder-tree levels: pairs while that suffices, wider groups otherwise.
        level = [(p << off) for p, off in partials]
        levels = MUL_LATENCY - 2
        for k in range(levels):
            left = levels - k
            group = 2
            while group ** left < len(level):
                group += 1
            nxt = []
            for j in range(0, len(level), group):
                s = Signal(ow, name=f"sum{k}_{j // group}", reset_less=True)
                m.d.sync += s.eq(sum(level[j:j + group]))
                nxt.append(s)
            level = nxt
        assert len(level) == 1
        m.d.comb += self.o.eq(level[0])
        return m


class RoundShiftSaturate(wiring.Component):
    """``o = saturate(round_shift(value, shift) + zero, lo, hi)`` over four stages.

    Ports
        ``value`` In ``value_shape``; ``shift`` In ``unsigned(6)``;
        ``zero`` In ``signed(zero_bits)`` (only when ``zero_bits > 0``);
        ``o`` Out ``signed(out_bits)`` or ``unsigned(out_bits)``.

    Parameters
        ``out_bits``, ``out_signed``: the output range ``[−2**(out_bits−1), 2**(out_bits−1))``
        or ``[0, 2**out_bits)``; ``lo``/``hi`` narrow it (default: the whole range).

    Inputs presented in cycle ``t`` give ``o`` in cycle ``t + latency``.
    """

    latency = ROUND_SATURATE_LATENCY

    def __init__(self, value_shape, out_bits: int, *, out_signed: bool = True,
                 zero_bits: int = 0, lo: int | None = None, hi: int | None = None) -> None:
        v = _shape(value_shape, "value_shape")
        if not isinstance(out_bits, int) or isinstance(out_bits, bool) or not 1 <= out_bits <= 64:
            raise ValueError(f"out_bits must be an integer in [1, 64], not {out_bits!r}")
        if not isinstance(out_signed, bool):
            raise TypeError(f"out_signed must be a bool, not {type(out_signed).__name__}")
        if not isinstance(zero_bits, int) or isinstance(zero_bits, bool) or zero_bits < 0:
            raise ValueError(f"zero_bits must be a non-negative integer, not {zero_bits!r}")
        full_lo = -(1 << (out_bits - 1)) if out_signed else 0
        full_hi = (1 << (out_bits - 1)) - 1 if out_signed else (1 << out_bits) - 1
        lo = full_lo if lo is None else lo
        hi = full_hi if hi is None else hi
        if not full_lo <= lo <= hi <= full_hi:
            raise ValueError(f"lo..hi must lie in {full_lo}..{full_hi} with lo <= hi, "
                             f"not {lo}..{hi}")
        self.value_shape, self.out_bits, self.out_signed = v, out_bits, out_signed
        self.zero_bits, self.lo, self.hi = zero_bits, lo, hi
        self.full_range = (lo, hi) == (full_lo, full_hi)
        ports = {"value": In(v), "shift": In(unsigned(SHIFT_BITS)),
                 "o": Out(signed(out_bits) if out_signed else unsigned(out_bits))}
        if zero_bits:
            ports["zero"] = In(signed(zero_bits))
        super().__init__(ports)

    def elaborate(self, platform) -> Module:
        m = Module()
        v = self.value_shape
        # round_shift(v, s) = (((2·v) >> s) + 1) >> 1 for every s >= 0: (2v) >> s = v >> (s − 1)
        # for s > 0, and s = 0 gives (2v + 1) >> 1 = v.
        # 1: the coarse shift, by the multiple of 2**FINE_BITS in ``shift``;
        w = v.width + 1
        coarse = Signal(signed(w), name="coarse", reset_less=True)
        fine = Signal(FINE_BITS, name="fine", reset_less=True)
        m.d.sync += [coarse.eq((self.value << 1) >> (self.shift[FINE_BITS:] << FINE_BITS)),
                     fine.eq(self.shift[:FINE_BITS])]
        # 2: the fine shift, pre = (2·value) >> shift.
        pre = Signal(signed(w), name="pre", reset_less=True)
        m.d.sync += pre.eq(coarse >> fine)
        # 3: (pre + 2·zero + 1) >> 1 = floor((pre + 1) / 2) + zero.
        rw = max(w, self.zero_bits + 2) + 1
        rounded = Signal(signed(rw), name="rounded", reset_less=True)
        if self.zero_bits:
            zero = delay_chain(m, self.zero, 2, "zero")[-1]
            m.d.sync += rounded.eq((pre + ((zero << 1) | 1)) >> 1)
        else:
            m.d.sync += rounded.eq((pre + 1) >> 1)
        # 4: saturate.
        lo, hi, n = self.lo, self.hi, self.out_bits
        if self.full_range and self.out_signed:
            top = rounded[n - 1:]                     # fits iff these bits are all equal
            fits = (top == 0) | (top == (1 << len(top)) - 1)
            m.d.sync += self.o.eq(Mux(fits, rounded[:n], Mux(rounded[-1], lo, hi)))
        elif self.full_range:
            fits = rounded[n:] == 0                   # includes the sign bit
            m.d.sync += self.o.eq(Mux(fits, rounded[:n], Mux(rounded[-1], lo, hi)))
        else:
            m.d.sync += self.o.eq(Mux(rounded > hi, hi, Mux(rounded < lo, lo, rounded)))
        return m
