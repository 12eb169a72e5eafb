"""``MulAcc``: a multiply-accumulator that is one SB_MAC16 on an iCE40.

``load`` sets the accumulator to ``init``; otherwise ``en`` adds ``a · b``; ``value`` is the
registered accumulator (a ``load`` or ``en`` in cycle ``t`` shows in ``t + 1``; ``a``, ``b``
and ``init`` are read in that cycle). ``load`` wins over ``en``. The sum wraps at ``width``
bits (two's complement).

On an iCE40 platform (``platform.family == "iCE40"``), with signed operands of at most 16 bits
and ``width <= 32``, it is one ``SB_MAC16``: the 16 × 16 signed product (no input or pipeline
registers) goes into both 16-bit adders (``*ADDSUB_LOWERINPUT = 2``), each of which adds its
own output register (``*ADDSUB_UPPERINPUT = 0``; the upper one takes the lower one's carry),
``OLOADTOP``/``OLOADBOT`` load ``init`` from ``C``/``D`` and ``OHOLDTOP``/``OHOLDBOT`` hold
it while neither ``en`` nor ``load`` is set. The accumulator then costs no logic cells (in
logic: a ``width``-bit adder per product, its flip-flops and the product registers). Elsewhere
(simulation, Verilog for cocotb, the ECP5) it is ``*``, an adder and a register.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Shape, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.spram import is_ice40

__all__ = ["MulAcc", "MAC16_BITS"]

#: Operand width of the SB_MAC16's signed 16 × 16 product.
MAC16_BITS = 16


class MulAcc(wiring.Component):
    """Multiply-accumulator (see the module docstring).

    Parameters
    ----------
    a_shape, b_shape : Shape
        The operands' shapes (signed or unsigned).
    width : int
        Bits of the accumulator (signed), 2 to 64.

    Attributes
    ----------
    a, b : In(a_shape), In(b_shape)
        The operands of this cycle's product.
    en : In(1)
        Add ``a · b`` this cycle.
    load : In(1)
        Set the accumulator to ``init`` this cycle (wins over ``en``).
    init : In(signed(width))
    value : Out(signed(width))
        The accumulator.
    """

    def __init__(self, a_shape, b_shape, width: int = 32) -> None:
        self.a_shape, self.b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        if isinstance(width, bool) or not isinstance(width, int) or not 2 <= width <= 64:
            raise ValueError(f"width must be an integer from 2 to 64, not {width!r}")
        self.width = width
        super().__init__({"a": In(self.a_shape), "b": In(self.b_shape), "en": In(1),
                          "load": In(1), "init": In(signed(width)),
                          "value": Out(signed(width))})

    @property
    def fits_mac16(self) -> bool:
        """Whether the operands fit the SB_MAC16's signed 16-bit ports and the sum its 32 bits."""
        def bits(s):
            return s.width + (0 if s.signed else 1)
        return (bits(self.a_shape) <= MAC16_BITS and bits(self.b_shape) <= MAC16_BITS
                and self.width <= 32)

    def elaborate(self, platform) -> Module:
        m = Module()
        if is_ice40(platform) and self.fits_mac16:
            a16, b16 = Signal(signed(16)), Signal(signed(16))
            init32 = Signal(signed(32))
            out = Signal(32)
            m.d.comb += [a16.eq(self.a), b16.eq(self.b), init32.eq(self.init),
                         self.value.eq(out[:self.width])]
            hold = ~(self.en | self.load)
            m.submodules.mac = Instance(
                "SB_MAC16",
                p_A_SIGNED=Const(1, 1), p_B_SIGNED=Const(1, 1),
                p_TOPOUTPUT_SELECT=Const(1, 2), p_BOTOUTPUT_SELECT=Const(1, 2),
                p_TOPADDSUB_LOWERINPUT=Const(2, 2), p_TOPADDSUB_UPPERINPUT=Const(0, 1),
                p_TOPADDSUB_CARRYSELECT=Const(2, 2),                   # the lower adder's carry
                p_BOTADDSUB_LOWERINPUT=Const(2, 2), p_BOTADDSUB_UPPERINPUT=Const(0, 1),
                p_BOTADDSUB_CARRYSELECT=Const(0, 2),
                i_CLK=ClockSignal(), i_CE=Const(1, 1),
                i_A=a16, i_B=b16, i_C=init32[16:], i_D=init32[:16],
                i_AHOLD=Const(0, 1), i_BHOLD=Const(0, 1), i_CHOLD=Const(0, 1),
                i_DHOLD=Const(0, 1), i_IRSTTOP=Const(0, 1), i_IRSTBOT=Const(0, 1),
                i_ORSTTOP=Const(0, 1), i_ORSTBOT=Const(0, 1),
                i_OLOADTOP=self.load, i_OLOADBOT=self.load, i_ADDSUBTOP=Const(0, 1),
                i_ADDSUBBOT=Const(0, 1), i_OHOLDTOP=hold, i_OHOLDBOT=hold,
                i_CI=Const(0, 1), i_ACCUMCI=Const(0, 1), i_SIGNEXTIN=Const(0, 1),
                o_O=out)
            return m
        acc = Signal(signed(self.width))
        m.d.comb += self.value.eq(acc)
        with m.If(self.load):
            m.d.sync += acc.eq(self.init)
        with m.Elif(self.en):
            m.d.sync += acc.eq(acc + self.a * self.b)
        return m
