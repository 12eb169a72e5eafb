"""``CarryProduct``: a signed product in LUT and carry logic (no DSP block), pipelined.

Synthesis maps ``*`` to a DSP block, or, without DSPs (``-nodsp``), to a generic array of
gates that costs about 400 ECP5 LUT4 for an 8 x 9-bit product (measured on one STA PE).
An FPGA with fewer DSP blocks than a design has products (the 256-multiplier STA array on an
ECP5-85F with 156 MULT18X18D) needs its small products built by hand.

Radix 2, the partial products inside the carry chains: the rows ``a_i · b · 2^i`` (the top
one, of a signed ``a``, subtracted) are added in pairs first, and on the ECP5 each bit of a
pair's sum is one half of a ``CCU2C``: its LUT4 computes the propagate
``(a_i ∧ b_t) ⊕ (a_{i+1} ∧ b_{t-1})`` straight from the operand bits, and the carry logic's
generate (a LUT2 of the half's A and B inputs: the low quarter of the LUT4's INIT) is the
first AND, which is what a full adder generates when the propagate is 0. So a pair costs
``b_bits + 2`` chain halves and no separate AND gates. The top pair subtracts:
``x − y = x + ¬y + 1``, the ``+1`` as its segment's carry-in. Each pair is a segment of
halves started by a half that sets its carry-in (:func:`pair_sums`), a chain of its own.
The pairs' sums are registered, then added in a registered tree (``CCU2C`` chains as Yosys
maps ``+``).

Measured (Yosys ``synth_ecp5``, one 8 x 9-bit product alone): 43 ``CCU2C`` (86 LUT4 halves),
no other LUT4, 88 FF; the radix-4 Booth form it replaces (a LUT4 pair per partial-product
bit, outside the chains) took 28 ``CCU2C`` + 64 LUT4 + 24 ``PFUMX`` (120 LUT4), 112 FF: 28%
fewer LUTs for the STA array's 256 products (``ulx3s_lut``).

On any other platform the pairs' sums are plain arithmetic (same values, same latency):
simulation runs that form; an Icarus test checks the ``CCU2C`` form against Yosys' own
simulation model of the primitive (``share/ecp5/ccu2c_sim.vh``).

Ports
    ``a`` In ``signed(a_bits)`` (gives the rows: the narrower operand), ``b`` In
    ``signed(b_bits)``, ``p`` Out ``signed(a_bits + b_bits)``: ``a · b`` of the operands
    presented ``latency`` cycles earlier. Throughput one product per cycle, no stall.

Latency
    ``latency`` register stages (:func:`~nmaccel.spec.config.carry_product_latency`): the
    pairs' sums, then one per adder-tree level (3 for an 8-bit ``a``).
"""

from __future__ import annotations

from amaranth.hdl import Const, Instance, Module, Mux, Shape, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.arith import sum_pairs
from nmaccel.hw.common.dsp import is_ecp5
from nmaccel.spec.config import carry_product_latency, carry_product_pairs

__all__ = ["CarryProduct", "carry_product_latency", "carry_product_pairs", "chained_sum_pairs",
           "lut_init",
           "pair_sums"]


def lut_init(f) -> int:
    """The 16-bit INIT of an ECP5 LUT4 computing ``f(A, B, C, D)`` (bit ``8D + 4C + 2B + A``)."""
    return sum(1 << i for i in range(16)
               if f(i & 1, (i >> 1) & 1, (i >> 2) & 1, (i >> 3) & 1))


#: LUT4 functions of a chain half. ``A``/``B`` feed the generate (a LUT2 of them), so they
#: carry the term a full adder generates when the propagate is 0.
_ADD_HALF = lut_init(lambda a, b, c, d: (a & b) ^ (c & d))            # x_t + y_t
_SUB_HALF = lut_init(lambda a, b, c, d: (1 ^ (a & b)) ^ (c & d))      # ¬y_t + x_t
_PLAIN_ADD = lut_init(lambda a, b, c, d: a ^ c)                        # x_t (A) + y_t (C)


def _check_widths(a_bits, b_bits) -> None:
    for name, v in (("a_bits", a_bits), ("b_bits", b_bits)):
        if isinstance(v, bool) or not isinstance(v, int) or not 2 <= v <= 32:
            raise ValueError(f"{name} must be an integer in [2, 32], not {v!r}")


#: A segment's first half: propagate 0 (its LUT4 reads the C = 1 quarter, all zeros), so the
#: carry coming in from the segment before is dropped, and generate from the low quarter (the
#: LUT2 of A and B): 1 for a subtracting pair's "+1", 0 otherwise.
_CARRY_ONE, _CARRY_ZERO = 0x000F, 0x0000


def _chains(m: Module, name: str, segments) -> list:
    """CCU2C chains for ``segments``, each a list of halves ``((A, B, C, D), INIT)`` whose
    first half sets its carry (:func:`_carry_half`); returns each segment's sum outputs (its
    carry half's included, first).

    Segments are grouped into chains of an even number of halves, as short as possible: a
    segment of even length alone, two of odd length together. nextpnr's timing follows the
    carry through a whole chain (it cannot see that a segment's first half drops the carry
    coming in), so one chain for a level's adds made its delay that of every segment in a row
    (5.0 ns of logic, the critical path of a ``ulx3s_lut`` PE). The chain ends cost no cells:
    the build's carry-end pass (:mod:`nmaccel.boards.carry_ends`) disconnects a head whose
    first half drops its carry-in, and a last COUT nothing reads; an odd length would leave a
    spare half (half a CCU2C) per chain, two odd segments share none.
    """
    groups, group = [], []
    for seg in segments:
        group.append(seg)
        if sum(map(len, group)) % 2 == 0:
            groups.append(group)
            group = []
    if group:
        groups.append(group)
    out = []
    for g, group in enumerate(groups):
        halves = [h for seg in group for h in seg]
        if len(halves) % 2:
            halves = halves + [((Const(0, 1),) * 4, 0)]              # a spare half
        sums = Signal(len(halves), name=f"{name}g{g}s")
        carry = Const(0, 1)
        for j in range(0, len(halves), 2):
            cout = Signal(name=f"{name}g{g}c{j // 2}")
            ports = {"i_CIN": carry, "o_COUT": cout, "o_S0": sums[j], "o_S1": sums[j + 1]}
            for h in (0, 1):
                for port, bit in zip("ABCD", halves[j + h][0]):
                    ports[f"i_{port}{h}"] = bit
            m.submodules[f"{name}g{g}ccu{j // 2}"] = Instance(
                "CCU2C", p_INIT0=halves[j][1], p_INIT1=halves[j + 1][1], p_INJECT1_0="NO",
                p_INJECT1_1="NO", **ports)
            carry = cout
        at = 0
        for seg in group:
            out.append(sums[at:at + len(seg)])
            at += len(seg)
    return out


def _carry_half(one: bool):
    """A segment's first half (see :data:`_CARRY_ONE`)."""
    zero = Const(0, 1)
    return (zero, zero, Const(1, 1), zero), _CARRY_ONE if one else _CARRY_ZERO


def _pairs_chain(m: Module, name: str, b, segments, width: int) -> list:
    """The row-pair sums ``lo·b + 2·hi·b`` (``negative``: ``lo·b − 2·hi·b``) modulo
    ``2**width`` of ``segments`` (``[(lo, hi, negative)]``) in CCU2C halves: per pair a half
    that sets its carry-in, then one half per bit (:func:`_chains`: for an even ``width`` a
    chain per pair)."""
    B = len(b)

    def bx(i):                                      # b sign-extended; b_{-1} = 0
        return Const(0, 1) if i < 0 else b[min(i, B - 1)]
    segs = [[_carry_half(negative)]
            + [((bx(t - 1), hi, bx(t), lo), _SUB_HALF) if negative  # A, B: ¬y_t; C, D: x_t
               else ((bx(t), lo, bx(t - 1), hi), _ADD_HALF)         # A, B: x_t;  C, D: y_t
               for t in range(width)]
            for lo, hi, negative in segments]
    return [sums[1:] for sums in _chains(m, name, segs)]


def chained_sum_pairs(m: Module, values, shape, name: str, *, platform=None) -> list:
    """One registered adder-tree level, ``values[2i] + values[2i + 1]`` into registers
    ``{name}_{i}`` of ``shape`` (an odd last value registered alone), as
    :func:`~nmaccel.hw.common.arith.sum_pairs`; on the ECP5 each add a segment of CCU2C halves
    started by a half that drops the incoming carry (:func:`_chains`: two adds share a chain
    where that saves a spare half). Elsewhere :func:`~nmaccel.hw.common.arith.sum_pairs`
    itself."""
    if not is_ecp5(platform) or len(values) < 2:
        return sum_pairs(m, values, shape, name, reset_less=True)
    shape = Shape.cast(shape)
    W = shape.width
    zero = Const(0, 1)
    segs = []
    for i in range(0, len(values) - 1, 2):
        x, y = Signal(shape, name=f"{name}_x{i // 2}"), Signal(shape, name=f"{name}_y{i // 2}")
        m.d.comb += [x.eq(values[i]), y.eq(values[i + 1])]          # extended to ``shape``
        segs.append([_carry_half(False)] + [((x[t], zero, y[t], zero), _PLAIN_ADD)
                                            for t in range(W)])
    out = []
    for i, sums in enumerate(_chains(m, f"{name}_", segs)):
        r = Signal(shape, name=f"{name}_{i}", reset_less=True)
        m.d.sync += r.eq(sums[1:])
        out.append(r)
    if len(values) % 2:
        r = Signal(shape, name=f"{name}_{len(out)}", reset_less=True)
        m.d.sync += r.eq(values[-1])
        out.append(r)
    return out


def pair_sums(m: Module, a, b, *, platform=None, name: str = "") -> list:
    """The first stage of :class:`CarryProduct` for signed values ``a`` and ``b``: one
    register per row pair ``k`` holding ``a_{2k}·b + 2·a_{2k+1}·b`` (the top pair
    subtracts), ``signed(len(b) + 2)``; ``Σ_k pair_k · 4^k = a · b``. On the ECP5 one chain
    of CCU2C halves computes them all, elsewhere plain arithmetic (same values)."""
    A, B = len(a), len(b)
    pairs = carry_product_pairs(A)
    rows = [a[min(i, A - 1)] for i in range(2 * pairs)]          # sign-extended
    # the top row weighs −2^(2·pairs − 1): the last pair subtracts
    segments = [(rows[2 * k], rows[2 * k + 1], k == pairs - 1) for k in range(pairs)]
    if is_ecp5(platform):
        values = _pairs_chain(m, f"{name}pairs_", b, segments, B + 2)
    else:
        values = [Mux(lo, b, 0) - (Mux(hi, b, 0) << 1) if negative
                  else Mux(lo, b, 0) + (Mux(hi, b, 0) << 1) for lo, hi, negative in segments]
    out = []
    for k, value in enumerate(values):
        pair = Signal(signed(B + 2), name=f"{name}pair{k}", reset_less=True)
        m.d.sync += pair.eq(value)
        out.append(pair)
    return out


class CarryProduct(wiring.Component):
    """Pipelined signed ``a × b`` whose partial products sit in the ECP5 carry chains (see
    the module docstring).

    Parameters
    ----------
    a_bits, b_bits : int
        Widths of the signed operands, each in [2, 32].

    Attributes
    ----------
    latency : int
        Register stages from ``a``/``b`` to ``p``.
    pairs : int
        Row pairs (``ceil(a_bits / 2)``: an odd ``a`` is sign-extended by one bit).
    """

    def __init__(self, a_bits: int, b_bits: int) -> None:
        _check_widths(a_bits, b_bits)
        self.a_bits, self.b_bits = a_bits, b_bits
        self.p_bits = a_bits + b_bits
        self.pairs = carry_product_pairs(a_bits)
        self.latency = carry_product_latency(a_bits)
        super().__init__({"a": In(signed(a_bits)), "b": In(signed(b_bits)),
                          "p": Out(signed(self.p_bits))})

    def elaborate(self, platform) -> Module:
        m = Module()
        pairs = pair_sums(m, self.a, self.b, platform=platform)
        level, stage = [p << (2 * k) for k, p in enumerate(pairs)], 0
        while len(level) > 1:
            stage += 1
            level = sum_pairs(m, level, signed(self.p_bits), f"sum{stage}", reset_less=True)
        assert 1 + stage == self.latency
        m.d.comb += self.p.eq(level[0])
        return m
