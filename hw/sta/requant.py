"""Requantization unit: ``o = saturate(round_shift(acc * mult, shift), out_bits)``.

Bit-exact with :func:`nmaccel.model.quant.requant`::

    round_shift(v, s) = (v + 2**(s-1)) >> s   for s > 0   (arithmetic shift, round half up)
                      = v                      for s = 0

followed by saturation to the signed (default) or unsigned ``out_bits`` range.

Pipeline (``latency = REQUANT_LATENCY = 8``, :mod:`nmaccel.spec.config`)
    1–4. ``acc * mult`` in a :class:`~nmaccel.hw.common.arith.PipelinedMultiplier`;
    5–8. arithmetic shift (two stages), round half up, saturate in a
    :class:`~nmaccel.hw.common.arith.RoundShiftSaturate`.

Inputs sampled by clock tick ``t`` appear on ``o`` right after tick ``t + latency − 1``;
``o_valid`` follows ``valid`` with the same delay. The unit is fully pipelined (one result
per cycle).
"""

from __future__ import annotations

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.arith import PipelinedMultiplier, RoundShiftSaturate, delay_chain
from nmaccel.spec.config import REQUANT_LATENCY, StaConfig

__all__ = ["SHIFT_BITS", "RequantUnit"]

#: Width of the ``shift`` port (shifts 0..63; the golden model allows 0..62).
SHIFT_BITS = 6


class RequantUnit(wiring.Component):
    """Pipelined requantizer (see the module docstring).

    Ports
        ``acc``     In  ``signed(acc_bits)``
        ``mult``    In  ``unsigned(requant_mult_bits)``
        ``shift``   In  ``unsigned(6)``
        ``valid``   In  1
        ``ce``      In  1 (init 1) -- clock enable of the product's DSP registers (drive it with
                    the enable of an ``EnableInserter`` that stalls the unit)
        ``o``       Out ``signed(out_bits)`` (``unsigned(out_bits)`` if ``signed=False``)
        ``o_valid`` Out 1

    Parameters
        ``config``   a :class:`StaConfig` (``acc_bits``, ``requant_mult_bits``)
        ``out_bits`` output width, an integer in [2, 62] (8 for int8 activations, 16 for the
                     vector unit, 32 for a saturating pass-through of ``acc`` with mult=1, shift=0)
        ``signed``   signed (default) or unsigned saturation
    """

    latency = REQUANT_LATENCY

    def __init__(self, config: StaConfig, out_bits: int = 8, signed: bool = True) -> None:
        StaConfig.require(config)
        if not isinstance(out_bits, int) or isinstance(out_bits, bool) or not 2 <= out_bits <= 62:
            raise ValueError(f"out_bits must be an integer in [2, 62], not {out_bits!r}")
        if not isinstance(signed, bool):
            raise TypeError(f"signed must be a bool, not {type(signed).__name__}")
        self.config = config
        self.out_bits = out_bits
        self.is_signed = signed
        if signed:
            self.lo, self.hi = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
        else:
            self.lo, self.hi = 0, (1 << out_bits) - 1
        out_shape = _signed(out_bits) if signed else unsigned(out_bits)
        super().__init__({
            "acc": In(_signed(config.acc_bits)),
            "mult": In(unsigned(config.requant_mult_bits)),
            "shift": In(unsigned(SHIFT_BITS)),
            "valid": In(1),
            "ce": In(1, init=1),
            "o": Out(out_shape),
            "o_valid": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.config
        m.submodules.mul = mul = PipelinedMultiplier(_signed(cfg.acc_bits),
                                                     unsigned(cfg.requant_mult_bits))
        m.submodules.rss = rss = RoundShiftSaturate(mul.o_shape, self.out_bits,
                                                    out_signed=self.is_signed)
        shifts = delay_chain(m, self.shift, mul.latency, "shift")
        valids = delay_chain(m, self.valid, self.latency, "valid", reset_less=False)
        m.d.comb += [
            mul.a.eq(self.acc), mul.b.eq(self.mult), mul.ce.eq(self.ce),
            rss.value.eq(mul.o), rss.shift.eq(shifts[mul.latency]),
            self.o.eq(rss.o), self.o_valid.eq(valids[self.latency]),
        ]
        return m


def _signed(width: int):
    return signed(width)
