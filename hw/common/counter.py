"""``Counter``: an up counter that is one SB_MAC16 accumulator on an iCE40.

``clear`` loads ``start``; otherwise ``en`` adds 1; ``value`` is the registered count (latency
1: a ``clear`` or ``en`` in cycle ``t`` shows in ``t + 1``). ``clear`` wins over ``en``; the
domain's reset loads ``start`` too. The count wraps at ``2**width``.

On an iCE40 platform (``platform.family == "iCE40"``) a counter of at most 32 bits is one
``SB_MAC16`` used as a 32-bit accumulator, with its multiplier unused: the lower 16-bit adder
adds its own output register and a carry-in of 1, the upper one adds its register and the
lower adder's carry; ``OLOADTOP``/``OLOADBOT`` load ``start`` from ``C``/``D`` and
``OHOLDTOP``/``OHOLDBOT`` hold the count while neither ``en`` nor ``clear`` is set. A 32-bit
counter in logic costs 32 logic cells (a LUT, a carry and a flip-flop each) and its share of
the enable logic; the iCE40UP5K has 8 SB_MAC16 and the lean STA multiplies on three.
Elsewhere (simulation, Verilog for cocotb, the ECP5) it is a register and an adder.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.spram import is_ice40

__all__ = ["Counter", "DSP_COUNTER_BITS"]

#: The widest counter one SB_MAC16 holds.
DSP_COUNTER_BITS = 32


class Counter(wiring.Component):
    """Up counter (see the module docstring).

    Parameters
    ----------
    width : int
        Bits of the count (1 to 64; at most :data:`DSP_COUNTER_BITS` to be an SB_MAC16).
    start : int
        The value ``clear`` (and reset) loads, ``0 <= start < 2**width``.
    dsp : bool
        Be an SB_MAC16 on an iCE40 (the default); ``False`` keeps the counter in logic there
        too, for a design whose SB_MAC16 are all taken.

    Attributes
    ----------
    en : In(1)
        Count this cycle.
    clear : In(1)
        Load ``start`` this cycle (wins over ``en``).
    value : Out(width)
        The count.
    """

    def __init__(self, width: int = 32, start: int = 0, dsp: bool = True) -> None:
        if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= 64:
            raise ValueError(f"width must be an integer from 1 to 64, not {width!r}")
        if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < 1 << width:
            raise ValueError(f"start must be an integer in [0, 2**{width}), not {start!r}")
        self.width, self.start, self.dsp = width, start, bool(dsp)
        super().__init__({"en": In(1), "clear": In(1), "value": Out(width)})

    def elaborate(self, platform) -> Module:
        m = Module()
        if self.dsp and is_ice40(platform) and self.width <= DSP_COUNTER_BITS:
            load = Signal()
            out = Signal(32)
            m.d.comb += [load.eq(self.clear | ResetSignal()), self.value.eq(out[:self.width])]
            hold = ~(self.en | load)
            zero16 = Const(0, 16)
            m.submodules.mac = Instance(
                "SB_MAC16",
                p_TOPOUTPUT_SELECT=Const(1, 2), p_BOTOUTPUT_SELECT=Const(1, 2),
                p_TOPADDSUB_LOWERINPUT=Const(0, 2), p_TOPADDSUB_UPPERINPUT=Const(0, 1),
                p_TOPADDSUB_CARRYSELECT=Const(2, 2),                   # the lower adder's carry
                p_BOTADDSUB_LOWERINPUT=Const(0, 2), p_BOTADDSUB_UPPERINPUT=Const(0, 1),
                p_BOTADDSUB_CARRYSELECT=Const(1, 2),                   # + 1
                i_CLK=ClockSignal(), i_CE=Const(1, 1),
                i_A=zero16, i_B=zero16,
                i_C=Const(self.start >> 16, 16), i_D=Const(self.start & 0xFFFF, 16),
                i_AHOLD=Const(0, 1), i_BHOLD=Const(0, 1), i_CHOLD=Const(0, 1),
                i_DHOLD=Const(0, 1), i_IRSTTOP=Const(0, 1), i_IRSTBOT=Const(0, 1),
                i_ORSTTOP=Const(0, 1), i_ORSTBOT=Const(0, 1),
                i_OLOADTOP=load, i_OLOADBOT=load, i_ADDSUBTOP=Const(0, 1),
                i_ADDSUBBOT=Const(0, 1), i_OHOLDTOP=hold, i_OHOLDBOT=hold,
                i_CI=Const(0, 1), i_ACCUMCI=Const(0, 1), i_SIGNEXTIN=Const(0, 1),
                o_O=out)
            return m
        count = Signal(self.width, init=self.start)
        m.d.comb += self.value.eq(count)
        with m.If(self.clear):
            m.d.sync += count.eq(self.start)
        with m.Elif(self.en):
            m.d.sync += count.eq(count + 1)
        return m
