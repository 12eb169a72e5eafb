"""A product with registered operands and a registered result, in one hard multiplier on the ECP5.

``registered_product(m, a, b, ...)`` returns ``a · b`` two clock cycles after ``a`` and ``b``
are presented (latency ``REGISTERED_PRODUCT_LATENCY`` = 2: the operand registers, then the
product register), one product per cycle.

On an ECP5 platform (``platform.family == "ecp5"``) it is one ``MULT18X18D`` with its input
registers A and B and its output register enabled (``REG_INPUTA_CLK``, ``REG_INPUTB_CLK``,
``REG_OUTPUT_CLK`` on ``CLK0``, clock enable ``CE0``, no reset, signed operands). Yosys maps
``*`` on the ECP5 to a combinational ``MULT18X18D`` and leaves the registers in the fabric; the
nextpnr-ecp5 in use then times fabric register → DSP → fabric register with the DSP's 3.9 ns
plus routing on both sides. Measured on 16 signed 9×9 products, each operand register feeding
four of them (``nmaccel bench block-fmax``-style out-of-context build): 121.8 MHz inferred, the
critical path ``register → MULT18X18D.A`` 2.7 ns of routing + 3.9 ns; 273 MHz with the
registers in the DSP (0.74 ns clock-to-out from its output register, the critical path in the
fabric after it).

Elsewhere (simulation, Verilog for cocotb, the iCE40) the same two stages are fabric registers
and ``*``: each operand register is zeroed when the other operand is zero (the product does
not change; the registers are then functions of their own pair and Yosys does not merge the
copies of a shared operand into one register with a large fan-out).

Operands: signed or unsigned Values of at most 18 bits signed (17 bits unsigned), the
``MULT18X18D``'s ports; :func:`fits_dsp` says whether a pair fits.

``ce``: clock enable of both stages (a Value, default 1). A DSP instance is not reached by
``EnableInserter``: a stalled pipeline passes its enable here.

``gate=False`` (fabric form only): plain operand registers, without the zeroing; on the
iCE40 Yosys can then take them into the SB_MAC16 (the conv engine's short
post-processing: about 225 fewer logic cells on the iCE40UP5K).

``lut``: the product in logic on every platform (:func:`lut_product`: a shift-and-add
without ``*``, so no synthesis flow maps it to a hard multiplier), for a design that leaves
the device's few DSPs to other blocks (the iCE40UP5K has 8 SB_MAC16); the first stage then
registers the first level of its adder tree instead of the operands (same latency).
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Mux, Shape, Signal, signed

__all__ = ["REGISTERED_PRODUCT_LATENCY", "DSP_PORT_BITS", "fits_dsp", "is_ecp5",
           "lut_product", "registered_product"]

#: Register stages of :func:`registered_product`: operands, product.
REGISTERED_PRODUCT_LATENCY = 2
#: Width of a MULT18X18D operand port (signed).
DSP_PORT_BITS = 18


def is_ecp5(platform) -> bool:
    """Whether ``platform`` builds for a Lattice ECP5 (Amaranth's ``LatticePlatform``)."""
    return getattr(platform, "family", None) == "ecp5"


def _signed_bits(shape: Shape) -> int:
    return shape.width if shape.signed else shape.width + 1


def fits_dsp(a_shape, b_shape) -> bool:
    """Whether both operands fit a MULT18X18D port as signed values."""
    return all(_signed_bits(Shape.cast(s)) <= DSP_PORT_BITS for s in (a_shape, b_shape))


def _lut_terms(a, b) -> list:
    """Shifted copies of ``a`` selected by the bits of ``b`` (the top one negated for a signed
    ``b``): their sum is ``a · b``."""
    bs = b.shape()
    terms = []
    for k in range(bs.width):
        t = Mux(b[k], a, 0) << k
        terms.append(-t if (bs.signed and k == bs.width - 1) else t)
    return terms


def _pair_sums(terms) -> list:
    return [terms[j] + terms[j + 1] if j + 1 < len(terms) else terms[j]
            for j in range(0, len(terms), 2)]


def lut_product(a, b):
    """``a · b`` as a sum of shifted copies of ``a`` selected by the bits of ``b`` (the top
    bit of a signed ``b`` subtracted), added in a balanced tree (log2 of b's width adders
    deep; on the iCE40UP5K a chain of 7 for int8 was the engine's critical path, 31 ns): no
    ``*`` for Yosys to map to a DSP."""
    terms = _lut_terms(a, b)
    while len(terms) > 1:
        terms = _pair_sums(terms)
    return terms[0]


def registered_product(m: Module, a, b, out_shape, *, platform=None, name: str = "",
                       ce=None, lut: bool = False, gate: bool = True):
    """``a · b`` (as ``out_shape``) after :data:`REGISTERED_PRODUCT_LATENCY` registers; see
    the module docstring. Returns the product's Signal."""
    a_shape, b_shape = a.shape(), b.shape()
    out_shape = Shape.cast(out_shape)
    p = Signal(out_shape, name=f"{name}p")
    if is_ecp5(platform) and fits_dsp(a_shape, b_shape) and not lut:
        a18, b18 = Signal(signed(18), name=f"{name}a18"), Signal(signed(18), name=f"{name}b18")
        p36 = Signal(signed(36), name=f"{name}p36")
        m.d.comb += [a18.eq(a), b18.eq(b)]          # sign or zero extension by shape
        zero = Const(0, 1)
        en = Const(1, 1) if ce is None else ce
        ports = {f"i_A{k}": a18[k] for k in range(18)}
        ports.update({f"i_B{k}": b18[k] for k in range(18)})
        ports.update({f"i_C{k}": zero for k in range(18)})
        ports.update({f"o_P{k}": p36[k] for k in range(36)})
        m.submodules[f"{name}dsp"] = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK="CLK0", p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
            p_REG_INPUTB_CLK="CLK0", p_REG_INPUTB_CE="CE0", p_REG_INPUTB_RST="RST0",
            p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
            p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0",
            p_GSR="DISABLED", p_RESETMODE="SYNC", p_SOURCEB_MODE="B_SHIFT",
            p_MULT_BYPASS="DISABLED",
            i_SIGNEDA=Const(1, 1), i_SIGNEDB=Const(1, 1), i_SOURCEA=zero, i_SOURCEB=zero,
            i_CLK0=ClockSignal(), i_CLK1=zero, i_CLK2=zero, i_CLK3=zero,
            i_CE0=en, i_CE1=zero, i_CE2=zero, i_CE3=zero,
            i_RST0=zero, i_RST1=zero, i_RST2=zero, i_RST3=zero,
            **ports)
        m.d.comb += p.eq(p36)
        return p
    rp = Signal(out_shape, name=f"{name}rp", reset_less=True)
    if lut:
        # in logic: the first adder level of lut_product in the first stage (registered in
        # place of the operands), the rest of the tree in the second (the whole tree behind
        # the operand registers was the iCE40UP5K engine's critical path, 29 ns)
        psum = signed(a_shape.width + b_shape.width + 1)
        firsts = _pair_sums(_lut_terms(a, b))
        regs = [Signal(psum, name=f"{name}rs{j}", reset_less=True) for j in range(len(firsts))]
        stages = [r.eq(f) for r, f in zip(regs, firsts)]
        while len(regs) > 1:
            regs = _pair_sums(regs)
        stages.append(rp.eq(regs[0]))
    else:
        ra = Signal(a_shape, name=f"{name}ra", reset_less=True)
        rb = Signal(b_shape, name=f"{name}rb", reset_less=True)
        if gate:
            stages = [ra.eq(Mux(b == 0, 0, a)), rb.eq(Mux(a == 0, 0, b)), rp.eq(ra * rb)]
        else:
            stages = [ra.eq(a), rb.eq(b), rp.eq(ra * rb)]
    if ce is None:
        m.d.sync += stages
    else:
        with m.If(ce):
            m.d.sync += stages
    m.d.comb += p.eq(rp)
    return p
