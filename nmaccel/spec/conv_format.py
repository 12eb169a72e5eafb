"""Conv-engine formats shared by the RTL (:mod:`nmaccel.hw.conv`) and the golden model
(:mod:`nmaccel.model.conv_ref`, which documents the memory and stream formats): PE modes,
counters, the per-lane parameter fields and the run-time layer settings.
"""

from __future__ import annotations

from enum import IntEnum

from nmaccel.spec.config import ConvConfig, clog2

__all__ = ["COUNTERS", "Mode", "param_fields", "settings_bits", "settings_fields"]

#: Counters a PE column accumulates per output (S0..S3, see :mod:`nmaccel.model.conv_ref`).
COUNTERS = 4


class Mode(IntEnum):
    ADDER = 0
    BINARY = 1
    MUL = 2


def param_fields(cfg: ConvConfig) -> list[tuple[str, int, bool]]:
    """Per-lane post-processing parameters ``(name, bits, signed)``, LSB first."""
    return ([(f"c{j}", cfg.coef_bits, True) for j in range(COUNTERS)] +
            [("bias", cfg.bias_bits, True), ("mult", cfg.mult_bits, False),
             ("shift", cfg.shift_bits, False)])


def settings_fields(cfg: ConvConfig) -> list[tuple[str, int]]:
    """Run-time layer settings of the engine ``(name, bits)``, LSB first."""
    return [("mode", 2), ("k3", 1), ("stride2", 1), ("pad", 1),
            ("height", clog2(cfg.max_height + 1)), ("width", clog2(cfg.max_width + 1)),
            ("cin", clog2(cfg.max_in_channels + 1)),
            ("in_tiles", clog2(cfg.max_in_tiles + 1)),
            ("out_tiles", clog2(cfg.max_out_tiles + 1)),
            ("binarize", 1), ("out_bits", 4), ("out_signed", 1)]


def settings_bits(cfg: ConvConfig) -> int:
    """Bits of the packed layer settings (the sum of :func:`settings_fields`)."""
    return sum(b for _, b in settings_fields(cfg))
