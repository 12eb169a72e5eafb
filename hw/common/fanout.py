"""``own_copy``: a register of a value that synthesis keeps, one per caller.

A value broadcast to blocks spread across the chip (the STA array's row weights and column
activations to its PEs) is one register with a long net to each block. The usual fix is a
register copy next to each block, fed by the broadcast one: the long net then runs
register to register, with no logic behind it. Yosys' ``opt_merge`` folds identical
``$dff`` cells into one, so copies written as Amaranth registers come back as the single
register they copy (measured: four 8-bit copies of one value, ``synth_ecp5``: 8
``TRELLIS_FF``, not 32).

On an ECP5 platform each copy is a ``TRELLIS_FF`` instance per bit (as Yosys maps a plain
``$_DFF_P_``, clock enable tied off), which no pass merges; elsewhere (simulation, Verilog for
cocotb) an Amaranth register: the same value in the same cycle.

Ports
    ``own_copy(m, value, name, platform=..., reset=False)`` returns a Signal of ``value``'s
    shape that holds ``value`` of the previous cycle (latency 1, a copy per cycle, no enable).
    ``reset=True``: the domain's reset clears it (synchronously, as an Amaranth register's
    reset; the ``TRELLIS_FF``'s ``LSR``), else it has none (``reset_less``).
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, ResetSignal, Signal, Value

from nmaccel.hw.common.dsp import is_ecp5

__all__ = ["own_copy"]


def own_copy(m: Module, value, name: str, *, platform=None, domain: str = "sync",
             reset: bool = False) -> Signal:
    """``value`` registered into a copy of its own (see the module docstring)."""
    value = Value.cast(value)
    copy = Signal(value.shape(), name=name, reset_less=not reset)
    if not is_ecp5(platform):
        m.d[domain] += copy.eq(value)
        return copy
    bits = Value.cast(copy)
    for i in range(len(value)):
        m.submodules[f"{name}_ff{i}"] = Instance(
            "TRELLIS_FF", p_GSR="AUTO", p_CEMUX="1", p_CLKMUX="CLK", p_LSRMUX="LSR",
            p_REGSET="RESET", p_SRMODE="LSR_OVER_CE", i_CLK=ClockSignal(domain),
            i_LSR=ResetSignal(domain) if reset else Const(0, 1), i_DI=value[i], o_Q=bits[i])
    return copy
