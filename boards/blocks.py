"""The blocks of the STA core and the conv engine, for per-block resource and timing studies.

``benchmarks/sta_resources.py`` (Yosys resources of each STA block) and
``benchmarks/block_fmax.py`` (each block placed and routed alone) read these lists, so both
studies cover the same blocks built the way the core and the engine build them.
"""

from __future__ import annotations

from nmaccel.spec.config import ConvConfig, StaConfig

__all__ = ["conv_blocks", "lean_sta_blocks", "sta_blocks"]


def sta_blocks(cfg: StaConfig) -> list:
    """``(name, count in the core, factory, what it holds)`` per block of ``StaCore(cfg)``."""
    StaConfig.require(cfg, "cfg")
    from nmaccel.hw.sta.array import UnifiedMacArray
    from nmaccel.hw.sta.drain import DrainUnit
    from nmaccel.hw.sta.requant import RequantUnit
    from nmaccel.hw.sta.softmax import StreamingSoftmax
    from nmaccel.hw.sta.vector import GeluLanes, LayerNormUnit, ResidualAddLanes
    C = cfg.cols
    return [
        ("UnifiedMacArray", 1, lambda: UnifiedMacArray(cfg),
         f"{cfg.rows}x{cfg.cols} PEs x {cfg.lanes} int8 multipliers, adder trees, accumulators"),
        ("DrainUnit", 1, lambda: DrainUnit(cfg),
         f"shadow rows, {C} requant units (acc x mult, rounding shift)"),
        ("StreamingSoftmax", 1, lambda: StreamingSoftmax(cfg),
         f"{cfg.softmax_lanes} lanes: exp ROMs, running max/sum, reciprocal, scaling"),
        ("LayerNormUnit", 1, lambda: LayerNormUnit(cfg, C),
         f"{C} lanes: statistics, isqrt, divider, c*R, *gamma, *mult, int8 requant"),
        ("GeluLanes", 1, lambda: GeluLanes(cfg, C), f"{C} lanes of integer GELU"),
        ("ResidualAddLanes", 1, lambda: ResidualAddLanes(cfg, C), f"{C} lanes of a*ma + b*mb"),
        ("RequantUnit", C, lambda: RequantUnit(cfg, out_bits=cfg.act_bits, signed=True),
         "the vector path's requant (one per column)"),
    ]


def lean_sta_blocks(cfg: StaConfig) -> list:
    """``(name, count, factory, what it holds)`` per block of the memory-lean STA
    (:mod:`nmaccel.hw.sta_lean`)."""
    StaConfig.require(cfg, "cfg")
    from nmaccel.hw.sta_lean.vector import SharedVectorUnit
    return [
        ("SharedVectorUnit", 1, lambda: SharedVectorUnit(cfg),
         "requant, GELU, residual add, LayerNorm, softmax on one 16x16 multiplier"),
    ]


def conv_blocks(cfg: ConvConfig) -> list:
    """``(name, count in the engine, factory, what it holds)`` per block of ``ConvEngine(cfg)``."""
    if not isinstance(cfg, ConvConfig):
        raise TypeError(f"cfg must be a ConvConfig, not {type(cfg).__name__}")
    from nmaccel.hw.conv.line_buffer import LineBuffer
    from nmaccel.hw.conv.pe import PEArray
    from nmaccel.hw.conv.postproc import PostProcess
    from nmaccel.hw.conv.window import WindowGenerator
    return [
        ("LineBuffer", 1, lambda: LineBuffer(cfg),
         f"{cfg.line_slots} rows of {cfg.max_width} pixels x {cfg.p_in} channels"),
        ("WindowGenerator", 1, lambda: WindowGenerator(cfg), "k x k window addresses"),
        ("PEArray", 1, lambda: PEArray(cfg),
         f"{cfg.p_out}x{cfg.p_in} adder / binary / int8 PEs, accumulators"),
        ("PostProcess", 1, lambda: PostProcess(cfg, cfg.out_lanes),     # as the engine builds it
         f"{cfg.out_lanes} lanes: counter products, bias, requant / binarize"),
    ]
