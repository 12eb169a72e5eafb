"""The one source of truth for every hardware parameter of nmaccel.

RTL (``nmaccel.hw``), golden models (``nmaccel.model``), the cycle model, the compiler and
the host driver all read their sizes and number formats from the frozen dataclasses here;
no other module keeps a second copy of a constant.

This module is deliberately free of Amaranth and PyTorch imports so that ``nmaccel.model``
can read it without pulling in the HDL.

Configs are validated eagerly: a bad value raises :class:`ConfigError` (a ``ValueError``)
naming the parameter and what was expected, e.g. ``"rows must be a positive integer, not 0"``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from typing import Any, ClassVar

__all__ = ["BUFFER_FIELDS", "ConfigError", "StaConfig", "STA_PRESETS", "clog2", "sta_preset",
           "MUL_CHUNK_BITS",
           "carry_product_latency", "carry_product_pairs",
           "MUL_LATENCY", "ROUND_SATURATE_LATENCY", "REQUANT_LATENCY"]


class ConfigError(ValueError):
    """A hardware configuration value is invalid."""


def clog2(value: int) -> int:
    """Number of bits needed to index ``value`` distinct items (``ceil(log2(value))``; 0 for 1)."""
    if value < 1:
        raise ValueError(f"clog2 needs a positive integer, not {value!r}")
    return (value - 1).bit_length()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(name: str, value: Any) -> None:
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, not {value!r}")


def _power_of_two(name: str, value: Any, minimum: int = 1) -> None:
    if not _is_int(value) or value < minimum or value & (value - 1):
        raise ConfigError(f"{name} must be a power of two >= {minimum}, not {value!r}")


def _in_range(name: str, value: Any, lo: int, hi: int) -> None:
    if not _is_int(value) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], not {value!r}")


#: Largest ``rows``, ``cols``, ``lanes``, ``softmax_lanes`` of an STA config.
MAX_ARRAY_DIM = 64
#: Largest ``rows * cols * lanes``.
MAX_MULTIPLIERS = 1 << 14
#: Largest ``max_seq``.
MAX_SEQ = 4096
#: Largest buffer depth, in words (``cbuf_depth``: 2**16, the command index of STATUS).
MAX_DEPTH = 1 << 20
#: The StaConfig fields that size buffers and nothing else: configs that differ only in these
#: compute the same numbers (same array, formats and pipelines).
BUFFER_FIELDS = ("max_seq", "wbuf_depth", "abuf_depth", "obuf_depth", "pbuf_depth",
                 "cbuf_depth", "vbuf_depth")


class _ConfigBase:
    """JSON round trip and validated ``replace`` shared by the config dataclasses."""

    kind: ClassVar[str] = ""

    @classmethod
    def require(cls, value: Any, name: str = "config") -> _ConfigBase:
        """``value`` if it is one of these configs; a ``TypeError`` naming ``name`` otherwise
        (the check every component constructor starts with)."""
        if not isinstance(value, cls):
            raise TypeError(f"{name} must be a {cls.__name__}, not {type(value).__name__}")
        return value

    # -- serialisation --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _ConfigBase:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__} needs a JSON object, not {type(data).__name__}")
        data = dict(data)
        kind = data.pop("kind", cls.kind)
        if kind != cls.kind:
            raise ConfigError(f"kind must be {cls.kind!r} for {cls.__name__}, not {kind!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} parameter(s): {', '.join(unknown)}; "
                              f"expected some of: {', '.join(sorted(known))}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> _ConfigBase:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{cls.__name__} JSON is not valid: {exc}") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> _ConfigBase:
        """A copy with ``changes`` applied (and validated)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown {type(self).__name__} parameter(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class StaConfig(_ConfigBase):
    """Parameters of the STA N:M sparse Transformer accelerator.

    Array
        ``rows`` (R) output features × ``cols`` (C) tokens of PEs, output-stationary.
        Each PE has ``lanes`` (L) int8 × int8 multipliers. In sparse mode every
        multiplier sits behind an ``m``:1 activation mux, so with an N:M weight pattern a
        PE consumes ``lanes * m // n`` activations per cycle. ``n``:``m`` is the design's
        sparsity pattern; ``m`` is the mux width.
    Numbers
        ``act_bits``/``weight_bits`` signed operands, ``acc_bits`` accumulators,
        requantization by an unsigned ``requant_mult_bits`` multiplier and a right shift
        (rule in :mod:`nmaccel.model.quant`).
    Softmax (rule in :mod:`nmaccel.model.softmax`)
        ``softmax_lanes`` (P) elements per cycle; inputs are signed ``softmax_in_bits``
        integers in base-2 log units with ``softmax_in_frac`` fractional bits; the
        exponent table holds ``softmax_exp_bits``-bit fractions; the reciprocal has
        ``softmax_recip_frac`` fractional bits; outputs are ``softmax_out_bits`` unsigned
        probabilities with scale 1/(2**softmax_out_bits - 1).
    Vector unit
        LayerNorm normalises to ``ln_frac`` fractional bits with a reciprocal of
        ``ln_recip_frac`` bits and scales it by a signed ``ln_gamma_bits`` gamma (beta is
        ``acc_bits`` wide); residual sums and GELU inputs are ``vec_bits`` wide.
    Memories (in words)
        ``wbuf_depth`` weight words, ``abuf_depth`` activation words, ``obuf_depth`` output
        words, ``vbuf_depth`` vector words (``cols`` lanes of ``vec_bits``: the residual stream,
        one feature of a token tile per word); ``max_seq`` is the longest sequence (softmax row)
        supported. The on-chip score and probability buffers are sized from ``max_seq``
        (:attr:`scbuf_depth`, :attr:`sbuf_depth`).
    """

    rows: int = 8
    cols: int = 8
    lanes: int = 4
    n: int = 2
    m: int = 4
    act_bits: int = 8
    weight_bits: int = 8
    acc_bits: int = 32
    requant_mult_bits: int = 16
    softmax_lanes: int = 8
    softmax_in_bits: int = 16
    softmax_in_frac: int = 10
    softmax_exp_bits: int = 15
    softmax_recip_frac: int = 32
    softmax_out_bits: int = 8
    ln_frac: int = 12
    ln_recip_frac: int = 30
    ln_gamma_bits: int = 16
    vec_bits: int = 16
    max_seq: int = 256
    wbuf_depth: int = 16384
    abuf_depth: int = 8192
    obuf_depth: int = 8192
    pbuf_depth: int = 2048
    cbuf_depth: int = 256
    vbuf_depth: int = 8192
    #: 1: the array's products are built in LUTs and carry chains
    #: (:class:`~nmaccel.hw.common.lutmul.CarryProduct`), which leaves the FPGA's DSP blocks
    #: to the post-ops' wide products (an array with more products than the device has DSPs);
    #: 0: ``*`` (DSP blocks where synthesis maps them). Same results, longer PE pipeline.
    array_lut: int = 0
    #: 0: no external memory (the host loads WBUF and PBUF; FETCH is an unknown opcode);
    #: otherwise the ULX3S's SDRAM (:data:`~nmaccel.spec.sdram.ULX3S_SDRAM`) on the core's
    #: clock at this many MHz: its timing in clocks (:attr:`sdram_timing`) sizes the
    #: controller, the FETCH command and the fetch cycle model.
    sdram_mhz: int = 0
    #: 0: the array core (:class:`~nmaccel.hw.sta.core.StaCore`); 1: the memory-lean core
    #: (:class:`~nmaccel.hw.sta_lean.core.LeanCore`: one PE, every vector operation on one
    #: time-shared datapath, for small FPGAs; needs ``rows == cols == 1``). Same programs,
    #: same results, another cycle model (:mod:`nmaccel.spec.lean_timing`).
    lean: int = 0

    kind: ClassVar[str] = "sta"

    def __post_init__(self) -> None:
        for f in fields(self):
            if not _is_int(getattr(self, f.name)):
                raise ConfigError(f"{f.name} must be a positive integer, not "
                                  f"{getattr(self, f.name)!r}")
        for name in ("rows", "cols", "lanes", "softmax_lanes", *BUFFER_FIELDS, "n"):
            _positive(name, getattr(self, name))
        if self.sdram_mhz < 0:
            raise ConfigError(f"sdram_mhz must be 0 (no external memory) or the SDRAM's clock "
                              f"in MHz, not {self.sdram_mhz}")
        if self.sdram_mhz:
            try:
                _ = self.sdram_timing             # the chip runs at this clock
            except ValueError as exc:
                raise ConfigError(f"sdram_mhz: {exc}") from None
        if self.lean not in (0, 1):
            raise ConfigError(f"lean must be 0 (the array core) or 1 (the memory-lean core), not "
                              f"{self.lean!r}")
        if self.lean and (self.rows, self.cols, self.softmax_lanes) != (1, 1, 1):
            raise ConfigError(f"lean=1 (the memory-lean core, one PE) needs rows, cols and "
                              f"softmax_lanes 1, not {self.rows}, {self.cols}, "
                              f"{self.softmax_lanes}")
        if self.lean and self.sdram_mhz:
            raise ConfigError("lean=1 has no external memory: sdram_mhz must be 0")
        if self.array_lut not in (0, 1):
            raise ConfigError(f"array_lut must be 0 (DSP products) or 1 (LUT products), not "
                              f"{self.array_lut!r}")
        # Upper bounds: the CONFIG CSR holds rows, cols, lanes in 8 bits each, and anything
        # far beyond an FPGA's size only makes Verilog generation run for hours.
        for name in ("rows", "cols", "lanes", "softmax_lanes"):
            _in_range(name, getattr(self, name), 1, MAX_ARRAY_DIM)
        if self.multipliers > MAX_MULTIPLIERS:
            raise ConfigError(f"rows x cols x lanes must be at most {MAX_MULTIPLIERS} "
                              f"multipliers, not {self.multipliers}")
        _in_range("max_seq", self.max_seq, 1, MAX_SEQ)
        for name in ("wbuf_depth", "abuf_depth", "obuf_depth", "pbuf_depth", "vbuf_depth"):
            _in_range(name, getattr(self, name), 1, MAX_DEPTH)
        _in_range("cbuf_depth", self.cbuf_depth, 1, 1 << 16)
        _power_of_two("m", self.m, minimum=2)
        _in_range("m", self.m, 2, 16)
        if self.n > self.m:
            raise ConfigError(f"n must be <= m ({self.m}), not {self.n}")
        if self.lanes % self.n:
            raise ConfigError(
                f"lanes must be a multiple of n ({self.n}) so that whole N:M groups map onto "
                f"the multipliers, not {self.lanes}")
        _in_range("act_bits", self.act_bits, 2, 16)
        _in_range("weight_bits", self.weight_bits, 2, 16)
        _in_range("acc_bits", self.acc_bits, self.act_bits + self.weight_bits, 64)
        _in_range("requant_mult_bits", self.requant_mult_bits, 2, 31)
        _in_range("softmax_in_bits", self.softmax_in_bits, 4, 24)
        _in_range("softmax_in_frac", self.softmax_in_frac, 0, self.softmax_in_bits - 2)
        _in_range("softmax_exp_bits", self.softmax_exp_bits, 4, 24)
        _in_range("softmax_out_bits", self.softmax_out_bits, 2, 16)
        _in_range("softmax_recip_frac", self.softmax_recip_frac,
                  self.softmax_exp_bits + clog2(self.max_seq + 1), 62)
        _in_range("ln_frac", self.ln_frac, 4, 20)
        _in_range("ln_recip_frac", self.ln_recip_frac, self.ln_frac + 4, 48)
        _in_range("ln_gamma_bits", self.ln_gamma_bits, 4, 24)
        _in_range("vec_bits", self.vec_bits, self.act_bits, 24)

    # -- derived quantities (read these, never recompute them elsewhere) -----------------

    @property
    def index_bits(self) -> int:
        """Bits of one N:M index (``ceil(log2 m)``)."""
        return clog2(self.m)

    @property
    def acts_per_cycle(self) -> int:
        """Activations a PE consumes per cycle in sparse mode (``lanes * m / n``)."""
        return self.lanes * self.m // self.n

    @property
    def dense_window(self) -> int:
        """Activations of one ABUF window a dense-mode GEMM uses (``(m // n) * lanes``)."""
        return (self.m // self.n) * self.lanes

    @property
    def scbuf_depth(self) -> int:
        """Entries of the on-chip score buffer: two banks of ``rows`` rows of ``max_seq`` scores."""
        return 2 * self.rows * -(-self.max_seq // self.cols)

    @property
    def sbuf_depth(self) -> int:
        """Entries of the on-chip probability buffer: two blocks of ``max_seq`` keys."""
        return 2 * -(-self.max_seq // self.dense_window)

    @property
    def multipliers(self) -> int:
        return self.rows * self.cols * self.lanes

    @property
    def sdram_timing(self):
        """The external SDRAM's :class:`~nmaccel.spec.sdram.SdramTiming` at ``sdram_mhz``, or
        ``None`` without external memory."""
        if not self.sdram_mhz:
            return None
        from nmaccel.spec.sdram import ULX3S_SDRAM
        return ULX3S_SDRAM.at(self.sdram_mhz)

    @property
    def softmax_max_shift(self) -> int:
        """Largest integer exponent difference a row can produce (``2**(in_bits - in_frac)``)."""
        return 1 << (self.softmax_in_bits - self.softmax_in_frac)

    @property
    def softmax_sum_bits(self) -> int:
        """Width of the exact running-sum accumulator of the streaming softmax."""
        return self.softmax_exp_bits + 1 + self.softmax_max_shift + clog2(self.max_seq + 1)


#: Named configurations. ``tiny`` was meant for an iCE40UP5K (iCEBreaker) and ``ulx3s`` for an
#: ECP5-85F, but measured builds (``reports/boards.md``) show neither fits its device:
#: ``tiny`` needs 5.7x the UP5K's logic cells and 7x its EBR (wide memories, two read ports),
#: ``ulx3s`` has 12.7 Mbit of buffers against the 85F's 3.8 Mbit of block RAM. ``ulx3s`` is
#: the simulation configuration of the reports. ``ulx3s_board`` is the same 8x8x4 array with
#: buffers sized for the 85F's 208 DP16KD (about 2 Mbit: 1024-word WBUF/ABUF, enough for a
#: MiniLM-L6 layer of up to 32 tokens; a longer one is refused by the compiler).
#: ``large`` is for simulation studies.
STA_PRESETS: dict[str, StaConfig] = {
    "tiny": StaConfig(rows=2, cols=2, lanes=4, n=2, m=4, softmax_lanes=2,
                      softmax_in_bits=12, softmax_in_frac=6, softmax_exp_bits=10,
                      softmax_recip_frac=24, max_seq=64, ln_recip_frac=28,
                      wbuf_depth=2048, abuf_depth=1024, obuf_depth=1024, vbuf_depth=1024),
    "ulx3s": StaConfig(rows=8, cols=8, lanes=4, n=2, m=4, softmax_lanes=8, max_seq=256),
    # Buffers sized like ulx3s in bits (the compiler splits bigger GEMMs): deeper memories
    # only slow down Verilog generation (every word gets a zero initialiser).
    "large": StaConfig(rows=16, cols=16, lanes=8, n=2, m=4, softmax_lanes=16, max_seq=512,
                       wbuf_depth=4096, abuf_depth=2048, obuf_depth=4096, vbuf_depth=4096),
    "ulx3s_board": StaConfig(rows=8, cols=8, lanes=4, n=2, m=4, softmax_lanes=8, max_seq=128,
                             wbuf_depth=1024, abuf_depth=1024, obuf_depth=512, pbuf_depth=1024,
                             vbuf_depth=2048),
    # 4x4x2: 32 array multipliers, so the array and the post-ops' wide multipliers can all
    # use the 85F's 156 MULT18X18D (the ECP5 build drops -nodsp); 8x fewer MACs per cycle.
    "ulx3s_lite": StaConfig(rows=4, cols=4, lanes=2, n=2, m=4, softmax_lanes=4, max_seq=128,
                            wbuf_depth=2048, abuf_depth=4096, obuf_depth=512, pbuf_depth=1024,
                            vbuf_depth=4096),
    # 4x4x16: 256 array multipliers in LUTs (array_lut: CarryProduct, ~86 LUT4 each), so the
    # 85F's DSPs are left to the post-ops of 4 columns (as ulx3s_lite); buffers for a
    # MiniLM-L6 layer of up to 32 tokens, in 208 DP16KD: WBUF 512 deep (640-bit words as
    # 512 x 36 blocks: 18 DP16KD, 1024 deep took 36).
    "ulx3s_lut": StaConfig(rows=4, cols=4, lanes=16, n=2, m=4, softmax_lanes=4, max_seq=128,
                           wbuf_depth=512, abuf_depth=1024, obuf_depth=512, pbuf_depth=1024,
                           vbuf_depth=4096, array_lut=1),
    # The memory-lean STA for the iCE40UP5K (hw/sta_lean): one PE of 2 lanes, every vector
    # operation on one time-shared datapath; tiny's number formats; buffers sized for the
    # digits Transformer (a layer in one segment: 2,048 weight words, ~300 parameters, 41
    # commands, 8 tokens x 32 features in VBUF, ~320 ABUF windows).
    "icebreaker": StaConfig(rows=1, cols=1, lanes=2, n=2, m=4, softmax_lanes=1,
                            softmax_in_bits=12, softmax_in_frac=6, softmax_exp_bits=10,
                            softmax_recip_frac=24, max_seq=64, ln_recip_frac=28,
                            wbuf_depth=2048, abuf_depth=512, obuf_depth=256, pbuf_depth=512,
                            cbuf_depth=64, vbuf_depth=256, lean=1),
}


def sta_preset(name: str) -> StaConfig:
    """The preset called ``name``; a clear error lists the valid names otherwise."""
    return _lookup_preset(STA_PRESETS, "STA", name)


def _lookup_preset(table: dict, what: str, name: str):
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown {what} preset {name!r}; expected one of: "
                          f"{', '.join(table)}") from None


# ============================================================================== arithmetic
#: Operand chunk of :class:`nmaccel.hw.common.arith.PipelinedMultiplier`: a wide product is
#: split into partial products of at most 17-bit unsigned (or 18-bit signed top) chunks,
#: each one ECP5 MULT18X18D (a 16×16 SB_MAC16 on the iCE40 takes two for full chunks).
MUL_CHUNK_BITS: int = 17
#: Register stages of a :class:`~nmaccel.hw.common.arith.PipelinedMultiplier`: each partial
#: product's operands, the partial products, then two adder-tree levels.
MUL_LATENCY: int = 4
#: Register stages of :class:`~nmaccel.hw.common.arith.RoundShiftSaturate`: the barrel
#: shift in two steps (by the multiple of 8, then by the rest), the rounding add (with the
#: zero point), the saturation.
ROUND_SATURATE_LATENCY: int = 4
#: Register stages of :class:`nmaccel.hw.sta.requant.RequantUnit`: product, then rounding.
REQUANT_LATENCY: int = MUL_LATENCY + ROUND_SATURATE_LATENCY


def carry_product_pairs(a_bits: int) -> int:
    """Row pairs of a :class:`~nmaccel.hw.common.lutmul.CarryProduct` with an ``a_bits``-bit
    signed ``a`` (an odd width is sign-extended by one bit)."""
    return -(-a_bits // 2)


def carry_product_latency(a_bits: int) -> int:
    """Register stages of :class:`~nmaccel.hw.common.lutmul.CarryProduct`: the row pairs'
    sums, then ``clog2`` of the pair count adder levels (3 for an 8-bit ``a``)."""
    return 1 + clog2(carry_product_pairs(a_bits))


# ==================================================================================== conv
#: Per-layer PE modes of the conv engine (``ConvConfig.modes`` lists the built ones).
CONV_MODES: tuple[str, ...] = ("adder", "binary", "mul")
#: Kernel sizes, strides and adder bit widths the conv engine supports.
CONV_KERNELS: tuple[int, ...] = (1, 3)
CONV_STRIDES: tuple[int, ...] = (1, 2)
CONV_ADDER_BITS: tuple[int, ...] = (4, 6, 8)
#: Depths of the conv engine's post-processing (``ConvConfig.post_pipeline``, register stages
#: of :class:`nmaccel.hw.conv.postproc.PostProcess`): ``full`` (9 + MUL_LATENCY = 13, for
#: 100 MHz and more on the ECP5: registered inputs, the partial products registered off the
#: DSP rows, two adder levels, a 4-stage v·mult) or ``short``
#: (8, for slow devices such as the iCE40UP5K at 24-40 MHz: no input registers, one adder
#: level for v, v·mult over its operand and partial-product registers only; fewer delay
#: registers beside them). The one source of the post-processing latency.
CONV_POST_LATENCY: dict[str, int] = {"full": 9 + MUL_LATENCY, "short": 8}
CONV_POST_PIPELINES: tuple[str, ...] = tuple(CONV_POST_LATENCY)
#: Register stages of the conv engine from issuing a beat to writing its output beat into
#: the output FIFO (memory read 1, PE array 5, accumulate 1, post-processing 9 +
#: MUL_LATENCY = 13); the engine asserts it is built with exactly this depth, and the cycle
#: prediction reads it. An engine whose post-processing is shared over its output lanes
#: (``ConvConfig.post_lanes`` < ``p_out``) adds the serialisation
#: (:attr:`ConvConfig.pipeline_latency`).
CONV_ENGINE_LATENCY: int = 1 + 5 + 1 + CONV_POST_LATENCY["full"]
#: Where the conv engine's weight memory lives: ``block`` (inferred block RAM, one read and
#: one write port) or ``spram`` (single-port 16K x 16-bit SB_SPRAM256KA of the iCE40UP5K,
#: side by side; a behavioural model off the iCE40).
CONV_WEIGHT_MEMORIES: tuple[str, ...] = ("block", "spram")
#: Register stages of the conv engine's memory reads (the weight word and the line buffer's
#: window, issue to PE array input), by ``weight_memory``: a ``block`` weight memory's word is
#: registered once more after its read (on the ECP5 a DP16KD read without its output register
#: is 5.8 ns clock-to-out and the word fans out across the PE array: the 76.24 MHz ULX3S
#: build's critical path, 13.1 ns; with ``weight_bank_depth`` that register is each bank's,
#: before the bank mux); the iCE40's ``spram`` weights keep one stage.
#: :data:`CONV_ENGINE_LATENCY` counts one; :attr:`ConvConfig.pipeline_latency` adds the rest.
CONV_READ_LATENCY: dict[str, int] = {"block": 2, "spram": 1}
#: Where the PE array's int8 products go: ``dsp`` (``*``: a hard multiplier where the flow
#: maps one) or ``lut`` (shift-and-add in logic, never a DSP).
CONV_PE_MULTIPLIERS: tuple[str, ...] = ("dsp", "lut")
#: The SB_SPRAM256KA: words and bits of one block, and blocks on an iCE40UP5K.
SPRAM_DEPTH, SPRAM_WIDTH, SPRAM_BLOCKS = 16384, 16, 4


@dataclass(frozen=True)
class ConvConfig(_ConfigBase):
    """Parameters of the adder / binary convolution engine (``nmaccel.hw.conv``).

    Array
        ``p_out`` × ``p_in`` PEs: ``p_in`` input channels of one kernel tap against
        ``p_out`` output channels per cycle. ``modes`` lists the PE modes built into the
        array (a subset of ``"adder"``, ``"binary"``, ``"mul"``; the mode is chosen per
        layer at run time).
    Numbers
        Activations and weights travel in ``data_bits``-wide lanes (adder layers use
        n ∈ {4, 6, 8} ≤ ``data_bits`` of them, int8 layers all 8, binary layers bit 0).
        Accumulators are ``acc_bits`` wide; post-processing multiplies the counters by
        signed ``coef_bits`` coefficients, adds a signed ``bias_bits`` bias (the affine value
        ``v`` is ``bias_bits`` wide) and requantizes with an unsigned ``mult_bits``
        multiplier and a 6-bit right shift (rule in :mod:`nmaccel.model.quant`).
    Sizes
        Feature maps up to ``max_height`` × ``max_width`` pixels with up to
        ``max_in_channels`` / ``max_out_channels`` channels; the line buffer keeps
        ``line_slots`` rows (next power of two ≥ 3) of ``max_width`` pixels; the output
        FIFO holds ``out_fifo_depth`` beats.
    Sharing (for small FPGAs)
        ``post_lanes`` output lanes go through post-processing per cycle (0: all ``p_out``,
        one post-processing lane per output channel). With fewer, a finished accumulation
        group is copied into shadow registers and post-processed ``post_lanes`` lanes a
        cycle over ``p_out / post_lanes`` cycles (:attr:`post_cycles`); accumulation groups
        then start at most once per ``post_cycles`` cycles, the parameter memory holds one
        word per ``post_lanes`` lanes and each output beat carries ``post_lanes`` lanes.
        ``weight_memory`` (:data:`CONV_WEIGHT_MEMORIES`) and ``pe_multipliers``
        (:data:`CONV_PE_MULTIPLIERS`) say where the weights and the PE products go;
        ``post_pipeline`` (:data:`CONV_POST_PIPELINES`) how deep the post-processing is
        pipelined (``short`` for slow devices: :attr:`post_latency` 8 instead of 13).
        ``weight_bank_depth`` (0, or a power of two) splits a ``block`` weight memory into
        banks of that many words (:attr:`weight_banks`): each bank's word is registered right
        after its read and the bank mux comes after those registers, so no block RAM output
        goes through a mux in the cycle it is read (512: the ECP5 DP16KD's depth at its
        widest, 512 × 36, where ``boards/bram_outreg.py`` turns each bank's register into
        the block RAM's own output register). 0 keeps one memory, its word registered once
        after the read; the read latency is the same either way.
    """

    p_out: int = 4
    p_in: int = 4
    data_bits: int = 8
    acc_bits: int = 26
    coef_bits: int = 16
    bias_bits: int = 32
    mult_bits: int = 16
    max_width: int = 16
    max_height: int = 64
    max_in_channels: int = 128
    max_out_channels: int = 64
    out_fifo_depth: int = 16
    modes: tuple = CONV_MODES
    post_lanes: int = 0
    weight_memory: str = "block"
    pe_multipliers: str = "dsp"
    post_pipeline: str = "full"
    weight_bank_depth: int = 0

    kind: ClassVar[str] = "conv"

    _NOT_POSITIVE: ClassVar[tuple] = ("modes", "post_lanes", "weight_memory", "pe_multipliers",
                                         "post_pipeline", "weight_bank_depth")

    def __post_init__(self) -> None:
        if isinstance(self.modes, list):
            object.__setattr__(self, "modes", tuple(self.modes))
        for f in fields(self):
            if f.name not in self._NOT_POSITIVE:
                _positive(f.name, getattr(self, f.name))
        if not isinstance(self.modes, tuple) or not self.modes or \
                any(m not in CONV_MODES for m in self.modes) or \
                len(set(self.modes)) != len(self.modes):
            raise ConfigError(f"modes must be a non-empty tuple of distinct names from "
                              f"{CONV_MODES}, not {self.modes!r}")
        _in_range("p_out", self.p_out, 1, 64)
        _in_range("p_in", self.p_in, 1, 64)
        _in_range("data_bits", self.data_bits, 8, 8)
        _in_range("coef_bits", self.coef_bits, 2, 24)
        _in_range("mult_bits", self.mult_bits, 2, 31)
        _in_range("bias_bits", self.bias_bits, 16, 48)
        _in_range("max_width", self.max_width, 1, 4096)
        _in_range("max_height", self.max_height, 1, 4096)
        _in_range("max_in_channels", self.max_in_channels, 1, 4096)
        _in_range("max_out_channels", self.max_out_channels, 1, 4096)
        _in_range("out_fifo_depth", self.out_fifo_depth, 2, 1024)
        need = clog2(self.max_term * self.max_taps + 1) + 1
        _in_range("acc_bits", self.acc_bits, need, 48)
        if not _is_int(self.post_lanes) or self.post_lanes < 0 or \
                (self.post_lanes and self.p_out % self.post_lanes):
            raise ConfigError(f"post_lanes must be 0 (one per output lane) or a divisor of "
                              f"p_out={self.p_out}, not {self.post_lanes!r}")
        if self.out_fifo_depth < self.post_cycles:
            raise ConfigError(f"out_fifo_depth must be >= p_out / post_lanes = "
                              f"{self.post_cycles} (one accumulation group's beats), not "
                              f"{self.out_fifo_depth}")
        if self.weight_memory not in CONV_WEIGHT_MEMORIES:
            raise ConfigError(f"weight_memory must be one of {CONV_WEIGHT_MEMORIES}, not "
                              f"{self.weight_memory!r}")
        if self.pe_multipliers not in CONV_PE_MULTIPLIERS:
            raise ConfigError(f"pe_multipliers must be one of {CONV_PE_MULTIPLIERS}, not "
                              f"{self.pe_multipliers!r}")
        if self.post_pipeline not in CONV_POST_PIPELINES:
            raise ConfigError(f"post_pipeline must be one of {CONV_POST_PIPELINES}, not "
                              f"{self.post_pipeline!r}")
        wbd = self.weight_bank_depth
        if not _is_int(wbd) or wbd < 0 or (wbd and (wbd < 16 or wbd & (wbd - 1))):
            raise ConfigError(f"weight_bank_depth must be 0 (one memory) or a power of two "
                              f">= 16, not {wbd!r}")
        if wbd and self.weight_memory != "block":
            raise ConfigError(f"weight_bank_depth must be 0 with weight_memory "
                              f"{self.weight_memory!r} (banks are block RAM), not {wbd}")
        if self.weight_memory == "spram":
            bits = self.p_out * self.p_in * self.data_bits
            if bits > SPRAM_WIDTH * SPRAM_BLOCKS:
                raise ConfigError(f"weight_memory 'spram' needs p_out * p_in * data_bits <= "
                                  f"{SPRAM_WIDTH * SPRAM_BLOCKS} (a weight word across "
                                  f"{SPRAM_BLOCKS} {SPRAM_WIDTH}-bit SPRAMs), not {bits}")
            if self.weight_depth > SPRAM_DEPTH:
                raise ConfigError(f"weight_memory 'spram' needs weight_depth <= {SPRAM_DEPTH} "
                                  f"words (one SPRAM's), not {self.weight_depth}")

    # -- derived quantities (read these, never recompute them elsewhere) -----------------

    @property
    def max_taps(self) -> int:
        """Largest number of accumulated taps (``max_in_channels`` × 3 × 3)."""
        return self.max_in_channels * max(CONV_KERNELS) ** 2

    @property
    def max_term(self) -> int:
        """Largest |term| of one PE: ``|aq - 2 wq|`` (adder) or ``wq * aq`` (int8)."""
        half = 1 << (self.data_bits - 1)
        return max((1 << self.data_bits) - 1 + 2 * half, half * half)

    @property
    def count_bits(self) -> int:
        """Width of the binary-mode popcount accumulators (X, P_a, N, P_w)."""
        return clog2(self.max_taps + 1)

    @property
    def max_in_tiles(self) -> int:
        return -(-self.max_in_channels // self.p_in)

    @property
    def max_out_tiles(self) -> int:
        return -(-self.max_out_channels // self.p_out)

    @property
    def line_slots(self) -> int:
        """Rows held by the line buffer (power of two ≥ the largest kernel)."""
        return 1 << clog2(max(CONV_KERNELS))

    @property
    def line_depth(self) -> int:
        """Words of the line buffer (``line_slots`` × ``max_width`` × ``max_in_tiles``)."""
        return self.line_slots * self.max_width * self.max_in_tiles

    @property
    def weight_depth(self) -> int:
        """Words of the weight memory (one word = ``p_out`` × ``p_in`` weights)."""
        return self.max_out_tiles * self.max_in_tiles * max(CONV_KERNELS) ** 2

    @property
    def weight_banks(self) -> int:
        """Banks of the weight memory: ``weight_depth / weight_bank_depth`` rounded up (the
        last one may be shorter), 1 when ``weight_bank_depth`` is 0."""
        if not self.weight_bank_depth:
            return 1
        return -(-self.weight_depth // self.weight_bank_depth)

    @property
    def shift_bits(self) -> int:
        return 6

    @property
    def out_lanes(self) -> int:
        """Output lanes post-processed per cycle (and carried by one output beat and one
        parameter memory word): ``post_lanes``, or ``p_out`` when it is 0."""
        return self.post_lanes or self.p_out

    @property
    def post_cycles(self) -> int:
        """Cycles the post-processing spends on one accumulation group (``p_out /
        out_lanes``): the shortest spacing of two groups and the output beats per group."""
        return self.p_out // self.out_lanes

    @property
    def param_depth(self) -> int:
        """Words of the parameter memory (``max_out_tiles × post_cycles``)."""
        return self.max_out_tiles * self.post_cycles

    @property
    def post_latency(self) -> int:
        """Register stages of the post-processing (:data:`CONV_POST_LATENCY` of
        ``post_pipeline``)."""
        return CONV_POST_LATENCY[self.post_pipeline]

    @property
    def read_latency(self) -> int:
        """Register stages of the engine's memory reads (:data:`CONV_READ_LATENCY` of
        ``weight_memory``)."""
        return CONV_READ_LATENCY[self.weight_memory]

    @property
    def pipeline_latency(self) -> int:
        """Cycles from issuing a group's last beat to writing its last output beat into the
        FIFO: :data:`CONV_ENGINE_LATENCY` (with ``post_pipeline = "short"`` the shorter
        post-processing: :attr:`post_latency`; with a block weight memory one more read stage:
        :attr:`read_latency`), plus with shared post-processing one cycle for the shadow
        registers and one per further lane group."""
        return (CONV_ENGINE_LATENCY - CONV_POST_LATENCY["full"] + self.post_latency +
                self.read_latency - 1 + (self.post_cycles if self.post_cycles > 1 else 0))

    @property
    def spram_blocks(self) -> int:
        """SB_SPRAM256KA blocks of the weight memory (0 unless ``weight_memory`` is spram)."""
        if self.weight_memory != "spram":
            return 0
        return -(-self.p_out * self.p_in * self.data_bits // SPRAM_WIDTH)

    # -- serialisation --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["modes"] = list(self.modes)
        return {"kind": self.kind, **d}



#: Named conv-engine configurations: ``small`` for quick simulations, ``digits`` for the
#: digits workloads, ``ulx3s`` for an ECP5-85F, ``icebreaker`` for an iCE40UP5K (the digits
#: nets on 2×2 PEs, their products in logic; the weights in two SPRAMs; one post-processing
#: lane, on the UP5K's 8 SB_MAC16, shared by the two output lanes; 4×2 PEs need 6,136 of
#: the 5,280 logic cells).
CONV_PRESETS: dict[str, ConvConfig] = {
    "small": ConvConfig(p_out=2, p_in=2, max_width=8, max_in_channels=32,
                        max_out_channels=32),
    "digits": ConvConfig(p_out=8, p_in=8, max_width=8, max_height=8, max_in_channels=128,
                         max_out_channels=32),
    "ulx3s": ConvConfig(p_out=8, p_in=8, max_width=32, max_in_channels=128,
                        max_out_channels=128, weight_bank_depth=512),
    "icebreaker": ConvConfig(p_out=2, p_in=2, max_width=8, max_height=8, max_in_channels=128,
                             max_out_channels=32, out_fifo_depth=64, post_lanes=1,
                             weight_memory="spram", pe_multipliers="lut",
                             post_pipeline="short"),
}


def conv_preset(name: str) -> ConvConfig:
    """The conv preset called ``name``; a clear error lists the valid names otherwise."""
    return _lookup_preset(CONV_PRESETS, "conv", name)


__all__ += ["ConvConfig", "CONV_PRESETS", "conv_preset", "CONV_MODES", "CONV_KERNELS",
            "CONV_STRIDES", "CONV_ADDER_BITS", "CONV_ENGINE_LATENCY", "CONV_POST_LATENCY",
            "CONV_READ_LATENCY",
            "CONV_POST_PIPELINES", "CONV_WEIGHT_MEMORIES",
            "CONV_PE_MULTIPLIERS", "SPRAM_DEPTH", "SPRAM_WIDTH", "SPRAM_BLOCKS"]
