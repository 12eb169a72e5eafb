"""Cycle model of the STA vector unit (:mod:`nmaccel.hw.sta.vector`), FINN style.

Pure Python (no Amaranth import): the compiler and the cycle model read it, and the RTL
components import their pipeline depths and iteration counts from here (built from the
arithmetic latencies of :mod:`nmaccel.spec.config`), so the prediction and the hardware share
one source of truth. The tests compare every number with cycles
measured in simulation.

Conventions
    *Latency* ``L`` of a pipeline: data presented (and accepted) in cycle ``t`` appears on the
    output (``o``/``o_valid``, or the output stream's payload/valid) in cycle ``t + L``.

ResidualAddLanes (``RESIDUAL_LATENCY = 10``) and GeluLanes (``GELU_LATENCY = 14``)
    Fully pipelined, one beat per cycle, no back-pressure: with beats presented in cycles
    ``0 .. beats − 1`` the last output appears in cycle ``beats − 1 + latency``.

LayerNormUnit (one row block = ``lanes`` tokens × ``features`` features)
    ``features`` phase-0 beats (one per cycle), then ``layernorm_stats_cycles(cfg)`` cycles
    with ``i.ready`` low (``d·Σx²`` and ``(Σx)²`` by shift-add, one bit of ``|Σx|`` per
    cycle; one cycle for their difference; one cycle per result bit of the shift-subtract
    square root; one per quotient bit of the reciprocal), then
    ``features`` phase-1 beats; the last output leaves ``LAYERNORM_LATENCY`` cycles after
    the last phase-1 beat. All lanes run in parallel, so ``lanes`` does not change the count.
"""

from __future__ import annotations

from nmaccel.spec.config import MUL_LATENCY, REQUANT_LATENCY, ROUND_SATURATE_LATENCY

__all__ = [
    "GELU_LATENCY",
    "LAYERNORM_LATENCY",
    "LAYERNORM_MAX_FEATURES",
    "LAYERNORM_LOAD_CYCLES",
    "LAYERNORM_SUB_CYCLES",
    "RESIDUAL_LATENCY",
    "gelu_latency",
    "layernorm_block_interval",
    "layernorm_cycles",
    "layernorm_div_cycles",
    "layernorm_mul_cycles",
    "layernorm_sqrt_cycles",
    "layernorm_stats_cycles",
    "layernorm_sum_bits",
    "layernorm_var_bits",
    "residual_latency",
]

#: ResidualAddLanes: input register (``b`` comes straight from a VBUF block RAM); products
#: (a PipelinedMultiplier); sum; round/shift/saturate (RoundShiftSaturate).
RESIDUAL_LATENCY = 1 + MUL_LATENCY + 1 + ROUND_SATURATE_LATENCY
#: GeluLanes: clip; square; polynomial (x·mult alongside); (x·mult)·poly (PipelinedMultipliers);
#: round/shift/zero/saturate.
GELU_LATENCY = 1 + MUL_LATENCY + 1 + MUL_LATENCY + ROUND_SATURATE_LATENCY
#: LayerNormUnit phase-1 pipeline: d·x, then − Σx; c·R; round_shift; n·(gamma·mult), then
#: + beta·mult (= y·mult, the per-feature products beside it); round/shift/saturate (16-bit y);
#: the int8 copy through a RequantUnit.
LAYERNORM_LATENCY = (MUL_LATENCY + 1) + MUL_LATENCY + 1 + (MUL_LATENCY + 1) \
    + ROUND_SATURATE_LATENCY + REQUANT_LATENCY
#: LayerNormUnit cycles loading |Σx| and d into the shift-add registers (Σx is final).
LAYERNORM_LOAD_CYCLES = 1
#: LayerNormUnit cycles for V = d·Σx² − (Σx)² once both products are done.
LAYERNORM_SUB_CYCLES = 1
#: Largest feature count ``d`` (the ``features`` port is 16 bits wide).
LAYERNORM_MAX_FEATURES = (1 << 16) - 1


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_cfg(cfg) -> None:
    for name in ("vec_bits", "ln_recip_frac"):
        if not _is_int(getattr(cfg, name, None)):
            raise TypeError(f"cfg must be a StaConfig (with integer {name}), not "
                            f"{type(cfg).__name__}")


def residual_latency(cfg=None) -> int:
    """Latency of ``ResidualAddLanes`` (independent of the config)."""
    return RESIDUAL_LATENCY


def gelu_latency(cfg=None) -> int:
    """Latency of ``GeluLanes`` (independent of the config)."""
    return GELU_LATENCY


def layernorm_var_bits(cfg) -> int:
    """Width of ``V = d·Σx² − (Σx)²`` (= Σ_{i<j} (x_i − x_j)²), the square root's radicand.

    ``V ≤ (d/2)²·(2**vec_bits − 1)² < 2**(2·vec_bits + 30)`` for ``d < 2**16``; the width is
    even so that the square root takes exactly half as many steps.
    """
    _check_cfg(cfg)
    return 2 * cfg.vec_bits + 30


def layernorm_sum_bits(cfg) -> int:
    """Bits of ``|Σx|`` (``≤ (2**16 − 1)·2**(vec_bits − 1) < 2**(vec_bits + 15)``)."""
    _check_cfg(cfg)
    return cfg.vec_bits + 15


def layernorm_mul_cycles(cfg) -> int:
    """Steps of the shift-add products ``d·Σx²`` and ``(Σx)²`` (run together, MSB first):
    one per bit of ``|Σx|`` (``d`` has 16 ≤ that many bits)."""
    return layernorm_sum_bits(cfg)


def layernorm_sqrt_cycles(cfg) -> int:
    """Steps of the shift-subtract square root: one result bit per cycle."""
    return layernorm_var_bits(cfg) // 2


def layernorm_div_cycles(cfg) -> int:
    """Steps of the restoring divider ``floor(2**ln_recip_frac / σ)``: one quotient bit per
    cycle."""
    _check_cfg(cfg)
    return cfg.ln_recip_frac + 1


def layernorm_stats_cycles(cfg) -> int:
    """Cycles between the phases (``i.ready`` low) while σ and the reciprocal are computed."""
    return (LAYERNORM_LOAD_CYCLES + layernorm_mul_cycles(cfg) + LAYERNORM_SUB_CYCLES
            + layernorm_sqrt_cycles(cfg) + layernorm_div_cycles(cfg))


def _check_features(features) -> None:
    if not _is_int(features) or not 1 <= features <= LAYERNORM_MAX_FEATURES:
        raise ValueError(f"features must be an integer in [1, {LAYERNORM_MAX_FEATURES}], "
                         f"not {features!r}")


def layernorm_block_interval(cfg, features: int) -> int:
    """Cycles from one row block's first phase-0 beat to the next block's first phase-0 beat
    (input always valid, output always ready): ``2·features + layernorm_stats_cycles(cfg)``.
    The next block's phase 0 overlaps the pipeline drain of the previous block."""
    _check_features(features)
    return 2 * features + layernorm_stats_cycles(cfg)


def layernorm_cycles(cfg, features: int, lanes: int) -> int:
    """Cycles of one LayerNorm row block, inclusive: from the cycle the first phase-0 beat is
    accepted to the cycle the last output beat is taken (input always valid, output always
    ready)::

        2·features + 1 + (vec_bits + 15) + 1 + (vec_bits + 15) + (ln_recip_frac + 1)
                   + LAYERNORM_LATENCY

    i.e. ``layernorm_block_interval(cfg, features) + LAYERNORM_LATENCY``. ``lanes`` (tokens
    per block, processed in parallel) does not change it; it is validated only.
    """
    if not _is_int(lanes) or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
    return layernorm_block_interval(cfg, features) + LAYERNORM_LATENCY
