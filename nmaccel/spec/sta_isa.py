"""STA instruction set and host memory map, defined once (pure Python, no Amaranth).

The RTL (``nmaccel.hw.sta``) builds its command ``StructLayout`` and address decoder from the
tables here; the compiler and host drivers encode programs and memory images with the same
functions. Everything is sized from a :class:`~nmaccel.spec.config.StaConfig`; the derived
layouts (field tables, widths, address bits) are computed once per config and cached.

Host memory map
    The host sees one space of 32-bit words. A host address is
    ``(space << space_shift) | (entry << sub_bits) | sub``: ``space`` picks a memory (table
    :data:`SPACES`), ``entry`` one of its words and ``sub`` a 32-bit slice of that word (slice
    0 holds bits 0..31). Memory words wider than 32 bits are padded to whole slices.

    ======  =======  ======================================================  =======
    space   name     one entry                                               access
    ======  =======  ======================================================  =======
    0       CSR      control/status registers (:data:`CSR`)                  R/W
    1       CBUF     one command (:func:`command_fields`)                    R/W
    2       WBUF     R weight words of ``lanes`` entries (row ``r`` at       R/W
                     bits ``[r*WW, (r+1)*WW)``, ``WW = lanes*(wb+ib)``)
    3       ABUF     C activation windows of ``acts_per_cycle`` int8         R/W
                     (column ``c`` at bits ``[c*A, (c+1)*A)``)
    4       PBUF     requant parameters of one output feature                R/W
                     (bias ``acc_bits``, mult, shift 6)
    5       OBUF     one array row's outputs: C lanes of ``acc_bits``         R
    6       CYCLOG   cycles taken by command ``i`` of the last run            R
    ======  =======  ======================================================  =======

    WBUF, ABUF, PBUF and CBUF are read back only while the core is idle (reads wait).

GEMM (opcode 1)
    ``Y[t, f] = requant(sum_k W[f, k] * X[t, k] + bias[f])`` for ``m_tiles * R`` output
    features ``f`` and ``n_tiles * C`` tokens ``t``, ``k_steps`` weight words per dot product.
    Weight word of row tile ``rt``, step ``s``: WBUF ``w_base + rt * k_steps + s``.
    Activation window of token tile ``ct``, chunk ``q``: ABUF ``a_base + ct * a_stride + q``
    with ``a_stride = k_steps`` (sparse) or ``ceil(k_steps / r)`` (dense, ``r = m // n``
    slices of ``L`` activations per window; step ``s`` reads chunk ``s // r``, slice
    ``s % r``, i.e. activations ``(s % r) * L ... + L - 1`` of each column's window; when
    ``n`` does not divide ``m`` the last ``acts_per_cycle - r * L`` slots stay unused).
    Output rows of tile (rt, ct): OBUF ``o_base + (ct * m_tiles + rt) * R + r`` (C tokens per
    entry), requant parameters: PBUF ``p_base + rt * R + r``.
    ``osel``: 0 int8, 1 int16 (requantized and saturated), 2 int32 (``acc + bias``, no scaling).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

from nmaccel.spec import uart_protocol
from nmaccel.spec.config import (
    MAX_ARRAY_DIM,
    MAX_MULTIPLIERS,
    ConfigError,
    StaConfig,
    clog2,
)

__all__ = [
    # enums and command word
    "Opcode", "Mode", "Osel", "Dest", "Post", "WSrc", "ASrc", "ENUM_FIELDS", "OP_BITS",
    "DIM_BITS", "SHIFT_BITS", "OPCODES", "OPNAME", "OSEL_NAMES", "DEST_NAMES", "POST_NAMES",
    "command_fields", "command_bits", "encode_command", "decode_command", "command_from_word",
    "GemmCommand", "VectorCommand", "osel_bits", "window", "layout_supported",
    "attention_supported", "dense_ratio", "a_stride",
    # parameters
    "param_fields", "encode_params", "decode_params", "encode_ln_params", "encode_gelu_params",
    "encode_add_params",
    # host memory map and CSRs
    "SPACES", "CSR", "CSR_DEPTH", "COUNTERS", "STATUS_FIELDS", "CONFIG_FIELDS", "Status",
    "decode_status", "encode_status", "config_word", "decode_config", "ERRORS", "ERROR_CODES",
    "error_name", "space_width", "space_depth", "sub_words", "sub_bits", "space_shift",
    "addr_bits", "host_address", "split_entry", "join_entry",
    # external memory
    "FETCH_SPACES", "FetchCommand", "ext_words_per_entry", "fetch_words",
]

OP_BITS = 4


class Opcode(IntEnum):
    """Command opcodes (``op``, :data:`OP_BITS` wide)."""
    NOP = 0
    GEMM = 1
    LAYERNORM = 2
    REQUANT = 3
    FETCH = 4


class Mode(IntEnum):
    """GEMM mode (``mode``): sparse N:M weights through the activation muxes, or dense."""
    SPARSE = 0
    DENSE = 1


class Osel(IntEnum):
    """Output format of a GEMM (``osel``); :func:`osel_bits` gives the saturation width."""
    ACT = 0
    VEC = 1
    ACC = 2
    SCORE = 3


class Dest(IntEnum):
    """Where a GEMM's drained rows go (``dest``)."""
    OBUF = 0
    ABUF = 1
    ABUF_T = 2
    VBUF = 3
    SOFTMAX = 4


class Post(IntEnum):
    """Element-wise op on a GEMM's requantized rows before they are written (``post``)."""
    NONE = 0
    GELU = 1
    ADD = 2


class WSrc(IntEnum):
    """W operand memory (``wsrc``): WBUF, or ABUF (dense × dense only)."""
    WBUF = 0
    ABUF = 1


class ASrc(IntEnum):
    """A operand memory (``asrc``): ABUF, or SBUF (unsigned probabilities, dense only)."""
    ABUF = 0
    SBUF = 1


#: Width of each enum-valued command field (the RTL's enum shapes read these).
ENUM_FIELDS = {"op": (Opcode, OP_BITS), "mode": (Mode, 1), "osel": (Osel, 3),
               "dest": (Dest, 3), "post": (Post, 2), "wsrc": (WSrc, 1), "asrc": (ASrc, 1)}

OPCODES = {op.name: op for op in Opcode}
OSEL_NAMES = {Osel.ACT: "act", Osel.VEC: "vec", Osel.ACC: "acc", Osel.SCORE: "score"}
DEST_NAMES = {Dest.OBUF: "OBUF", Dest.ABUF: "ABUF", Dest.ABUF_T: "ABUF transposed",
              Dest.VBUF: "VBUF", Dest.SOFTMAX: "softmax"}
POST_NAMES = {Post.NONE: "none", Post.GELU: "GELU", Post.ADD: "residual add"}
SHIFT_BITS = 6
DIM_BITS = 16

SPACES = {"CSR": 0, "CBUF": 1, "WBUF": 2, "ABUF": 3, "PBUF": 4, "OBUF": 5, "CYCLOG": 6,
          "VBUF": 7}

#: CSR entries (space 0, one 32-bit word each). Writing START with a command count runs
#: CBUF[0 .. count-1] and clears the counters.
CSR = {
    "START": 0,          # W: number of commands to run; R: same
    "STATUS": 1,         # R: bit0 busy, bit1 done, bit2 error, [15:8] error code, [31:16] cmd index
    "CYCLES": 2,         # R: total cycles of the last run (start to done)
    "MAC_ACTIVE": 3,     # R: cycles in which a beat entered the MAC array
    "STALLS": 4,         # R: cycles the issue stage waited for the drain unit
    "SPARSE_CYCLES": 5,  # R: cycles spent in sparse-mode GEMM commands
    "DENSE_CYCLES": 6,   # R: cycles spent in dense-mode GEMM commands
    "COMMANDS": 7,       # R: commands completed
    "CONFIG": 8,         # R: rows | cols << 8 | lanes << 16 | n << 24 | m << 28 (sanity check)
    "SOFTMAX_BUSY": 9,   # R: cycles the softmax path (score reader, unit, writer) was busy
    "SOFTMAX_WAIT": 10,  # R: cycles the controller waited for a score bank or a softmax block
    "VECTOR_CYCLES": 11, # R: cycles spent in vector commands (LAYERNORM, REQUANT)
    "BARRIER_WAIT": 12,  # R: cycles commands waited for the drain (barriers, post-op setup)
    "FETCH_BUSY": 13,    # R: cycles the weight-fetch engine was busy (external memory)
    "FETCH_WAIT": 14,    # R: cycles a FETCH waited for the engine (the previous fetch)
    # External memory (cores with an SDRAM; elsewhere writes are ignored and reads give 0).
    # Writes wait while the core runs and while the previous EXT write's words are issued.
    "EXT_ADDR": 16,      # W: SDRAM word address of the next EXT_DATA/EXT_WORD; R: same
    "EXT_DATA": 17,      # W: 32 / data_bits SDRAM words at EXT_ADDR (lowest bits first), +=
    "EXT_WORD": 18,      # W: one SDRAM word (the lowest data_bits) at EXT_ADDR, EXT_ADDR += 1
}
CSR_DEPTH = 32

#: The run counters (CSRs cleared by START), in the order hosts read them.
COUNTERS = ("CYCLES", "MAC_ACTIVE", "STALLS", "SPARSE_CYCLES", "DENSE_CYCLES", "COMMANDS",
            "SOFTMAX_BUSY", "SOFTMAX_WAIT", "VECTOR_CYCLES", "BARRIER_WAIT", "FETCH_BUSY",
            "FETCH_WAIT")

#: CSR STATUS, (name, width) LSB first: run state, ``ext_ready`` (the external memory's
#: power-up sequence is done; always 1 without external memory: a host waits for it before
#: the first START of a program that fetches), error code (:data:`ERRORS`) and the index of
#: the command that raised it. ``reserved`` bits read 0.
STATUS_FIELDS = (("busy", 1), ("done", 1), ("error", 1), ("ext_ready", 1), ("reserved", 4),
                 ("code", 8), ("command", 16))
#: CSR CONFIG, (name, width) LSB first: the array the design was built for (``m`` mod 16).
CONFIG_FIELDS = (("rows", 8), ("cols", 8), ("lanes", 8), ("n", 4), ("m", 4))


def _unpack(fields, word: int) -> dict[str, int]:
    out, pos = {}, 0
    for name, width in fields:
        out[name] = (int(word) >> pos) & ((1 << width) - 1)
        pos += width
    return out


@dataclass(frozen=True)
class Status:
    """A decoded STATUS word."""
    busy: bool
    done: bool
    error: bool
    code: int
    command: int
    ext_ready: bool = False

    @property
    def message(self) -> str:
        return error_name(self.code)


def decode_status(word: int) -> Status:
    """The fields of a STATUS read (:data:`STATUS_FIELDS`)."""
    f = _unpack(STATUS_FIELDS, word)
    return Status(busy=bool(f["busy"]), done=bool(f["done"]), error=bool(f["error"]),
                  code=f["code"], command=f["command"], ext_ready=bool(f["ext_ready"]))


def encode_status(busy: int = 0, done: int = 0, error: int = 0, code: int = 0,
                  command: int = 0, ext_ready: int = 0) -> int:
    """The STATUS word for these fields (for models and tests of the decoders)."""
    return _pack(STATUS_FIELDS, {"busy": busy, "done": done, "error": error, "code": code,
                                 "command": command, "ext_ready": ext_ready}, "STATUS")


def config_word(cfg: StaConfig) -> int:
    """CSR CONFIG of a design built for ``cfg`` (:data:`CONFIG_FIELDS`)."""
    return _pack(CONFIG_FIELDS, {"rows": cfg.rows & 0xFF, "cols": cfg.cols & 0xFF,
                                 "lanes": cfg.lanes & 0xFF, "n": cfg.n & 0xF,
                                 "m": cfg.m & 0xF}, "CONFIG")


def decode_config(word: int) -> dict[str, int]:
    return _unpack(CONFIG_FIELDS, word)


#: Error codes in STATUS[15:8] by short name (the RTL raises them by these names).
ERROR_CODES = {"opcode": 1, "zero": 2, "wbuf": 3, "abuf": 4, "obuf": 5, "pbuf": 6, "meta": 7,
               "count": 8, "osel": 9, "dest": 10, "vbuf": 11, "seq": 12, "shape": 13,
               "ext": 14}

#: Error codes in STATUS[15:8] and what they mean.
ERRORS = {
    0: "none",
    1: "unknown opcode",
    2: "zero size (m_tiles, n_tiles or k_steps is 0)",
    3: "weight range beyond WBUF",
    4: "activation range beyond ABUF",
    5: "output range beyond OBUF",
    6: "parameter range beyond PBUF",
    7: "N:M metadata not strictly ascending within a group",
    8: "command count is 0 or beyond CBUF",
    9: "output format (osel) unknown",
    10: "unknown destination / post-op, or an output layout this array cannot write",
    11: "vector range beyond VBUF",
    12: "softmax block: row length 0 or beyond max_seq or the key tiles, or m_tiles != 1",
    13: "operand source or output layout needs rows == cols (and windows a multiple of cols)",
    14: "FETCH: external memory range beyond the SDRAM",
}


def error_name(code: int) -> str:
    return ERRORS.get(int(code), f"unknown error code {code}")


# -- field tables ---------------------------------------------------------------------------

def _aw(depth: int) -> int:
    return max(clog2(depth), 1)


def _ew(name: str) -> int:
    return ENUM_FIELDS[name][1]


@functools.cache
def command_fields(cfg: StaConfig) -> tuple[tuple[str, int], ...]:
    """(name, width) of the command word, LSB first (computed once per config)."""
    wbase = max(_aw(cfg.wbuf_depth), _aw(cfg.abuf_depth))
    abase = max(_aw(cfg.abuf_depth), _aw(cfg.vbuf_depth), _aw(cfg.sbuf_depth))
    obase = max(_aw(cfg.obuf_depth), _aw(cfg.abuf_depth), _aw(cfg.vbuf_depth),
                _aw(cfg.sbuf_depth))
    return (
        ("op", _ew("op")), ("mode", _ew("mode")), ("osel", _ew("osel")), ("dest", _ew("dest")),
        ("post", _ew("post")), ("olay", 1), ("wsrc", _ew("wsrc")), ("asrc", _ew("asrc")),
        ("barrier", 1), ("wait_sm", 2),
        ("m_tiles", DIM_BITS), ("n_tiles", DIM_BITS), ("k_steps", DIM_BITS),
        ("w_base", wbase), ("a_base", abase), ("o_base", obase), ("p_base", _aw(cfg.pbuf_depth)),
        ("a_stride", DIM_BITS), ("w_stride", DIM_BITS), ("o_stride", DIM_BITS),
        ("length", DIM_BITS),
    ) + _fetch_fields(cfg)


def _fetch_fields(cfg: StaConfig) -> tuple[tuple[str, int], ...]:
    """The FETCH command's own fields, in the word only with external memory."""
    t = cfg.sdram_timing
    if t is None:
        return ()
    return (("ext_addr", t.addr_bits), ("ext_wlen", DIM_BITS), ("ext_plen", DIM_BITS))


def ext_words_per_entry(cfg: StaConfig, space: str) -> int:
    """External-memory words that hold one entry of ``space`` (WBUF or PBUF): the entry's
    bits in consecutive SDRAM words, the first word holding the lowest bits."""
    t = cfg.sdram_timing
    if t is None:
        raise ValueError("this StaConfig has no external memory (sdram_mhz=0)")
    if space not in FETCH_SPACES:
        raise ValueError(f"FETCH fills {' and '.join(FETCH_SPACES)}, not {space!r}")
    from nmaccel.spec.sdram import words_per_entry
    return words_per_entry(t, space_width(cfg, space))


#: The buffers a FETCH fills, in the order of its stream (WBUF entries, then PBUF entries).
FETCH_SPACES = ("WBUF", "PBUF")


def fetch_words(cfg: StaConfig, wlen, plen):
    """External-memory words a FETCH of ``wlen`` WBUF and ``plen`` PBUF entries reads
    (integers, or Amaranth values: the RTL's range check builds the same sum)."""
    return (wlen * ext_words_per_entry(cfg, "WBUF")
            + plen * ext_words_per_entry(cfg, "PBUF"))


def osel_bits(cfg: StaConfig, osel: int) -> int:
    """Saturation width of output format ``osel`` (act, vec, acc or softmax-input bits)."""
    table = {Osel.ACT: cfg.act_bits, Osel.VEC: cfg.vec_bits, Osel.ACC: cfg.acc_bits,
             Osel.SCORE: cfg.softmax_in_bits}
    if osel not in table:
        raise ValueError(f"osel must be one of {sorted(table)} ({', '.join(OSEL_NAMES.values())}), "
                         f"not {osel!r}")
    return table[osel]


def window(cfg: StaConfig, olay: int) -> int:
    """Activations per ABUF window in the layout a consumer of ``olay`` (0 sparse, 1 dense)
    reads."""
    return cfg.acts_per_cycle if olay == Mode.SPARSE else cfg.dense_window


def layout_supported(cfg: StaConfig, olay: int) -> bool:
    """Can the drain scatter array rows into ``olay`` windows (one divides the other)?"""
    w = window(cfg, olay)
    return w % cfg.rows == 0 or cfg.rows % w == 0


def attention_supported(cfg: StaConfig) -> str | None:
    """``None`` if on-chip attention works on ``cfg``, else why not (for error messages)."""
    if cfg.rows != cfg.cols:
        return f"on-chip attention needs a square array (rows == cols), not {cfg.rows}x{cfg.cols}"
    if cfg.softmax_lanes != cfg.cols:
        return (f"on-chip attention needs softmax_lanes == cols ({cfg.cols}), not "
                f"{cfg.softmax_lanes}")
    if cfg.softmax_out_bits > cfg.act_bits:
        return (f"on-chip attention needs softmax_out_bits ({cfg.softmax_out_bits}) <= act_bits "
                f"({cfg.act_bits}): probabilities are P·V activations")
    if cfg.dense_window % cfg.cols:
        return (f"on-chip attention needs the dense window ({cfg.dense_window} activations) "
                f"to be a multiple of cols ({cfg.cols})")
    if not layout_supported(cfg, Mode.DENSE):
        return (f"rows ({cfg.rows}) and the dense window ({cfg.dense_window}) must divide one "
                "another")
    return None


@functools.cache
def command_bits(cfg: StaConfig) -> int:
    return sum(w for _, w in command_fields(cfg))


@functools.cache
def param_fields(cfg: StaConfig) -> tuple[tuple[str, int], ...]:
    """(name, width) of a PBUF entry, LSB first; ``bias`` is two's complement."""
    return (("bias", cfg.acc_bits), ("mult", cfg.requant_mult_bits), ("shift", SHIFT_BITS))


def _pack(fields: Sequence[tuple[str, int]], values: Mapping[str, int], what: str,
          signed: Iterable[str] = ()) -> int:
    known = {name for name, _ in fields}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} field(s): {', '.join(unknown)}; expected some of: "
                         f"{', '.join(name for name, _ in fields)}")
    signed = set(signed)
    word, pos = 0, 0
    for name, width in fields:
        v = values.get(name, 0)
        if not _is_integer(v):
            raise ValueError(f"{what} field {name} must be an integer, not {v!r}")
        v = int(v)
        if name in signed:
            lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        else:
            lo, hi = 0, (1 << width) - 1
        if not lo <= v <= hi:
            raise ValueError(f"{what} field {name} must be in [{lo}, {hi}] ({width} bits), not {v}")
        word |= (v & ((1 << width) - 1)) << pos
        pos += width
    return word


def _is_integer(v) -> bool:
    """``v`` is a Python or NumPy integer, not a bool. NumPy is not imported here (the
    cocotb benches import this module inside the simulator, where importing NumPy took most
    of a second); if it is not loaded, ``v`` cannot be one of its types."""
    np = sys.modules.get("numpy")
    if isinstance(v, bool) or (np is not None and isinstance(v, np.bool_)):
        return False
    return isinstance(v, int) or (np is not None and isinstance(v, np.integer))


def encode_command(cfg: StaConfig, **fields: int) -> int:
    """The command word for ``fields`` (missing fields are 0); range-checked per field."""
    return _pack(command_fields(cfg), fields, "command")


def decode_command(cfg: StaConfig, word: int) -> dict[str, int]:
    """The fields of a command word (inverse of :func:`encode_command`)."""
    return _unpack(command_fields(cfg), word)


def encode_params(cfg: StaConfig, bias: int, mult: int, shift: int) -> int:
    """A PBUF entry (range-checked)."""
    return _pack(param_fields(cfg), {"bias": bias, "mult": mult, "shift": shift},
                 "requant parameter", signed=("bias",))


def decode_params(cfg: StaConfig, word: int) -> dict[str, int]:
    """The fields of a PBUF entry (inverse of :func:`encode_params`; ``bias`` as its unsigned
    field)."""
    return _unpack(param_fields(cfg), word)


def encode_ln_params(cfg: StaConfig, gamma: int, beta: int) -> int:
    """PBUF entry of one LayerNorm feature: ``beta`` in the bias field, ``gamma`` (signed
    ``ln_gamma_bits``) two's complement in the mult field."""
    if cfg.ln_gamma_bits > cfg.requant_mult_bits:
        raise ValueError(f"LayerNorm gamma (ln_gamma_bits={cfg.ln_gamma_bits}) must fit the "
                         f"PBUF mult field (requant_mult_bits={cfg.requant_mult_bits})")
    lo, hi = -(1 << (cfg.ln_gamma_bits - 1)), (1 << (cfg.ln_gamma_bits - 1)) - 1
    if not lo <= int(gamma) <= hi:
        raise ValueError(f"LayerNorm gamma must be in [{lo}, {hi}] (ln_gamma_bits), not {gamma}")
    return encode_params(cfg, int(beta), int(gamma) & ((1 << cfg.requant_mult_bits) - 1), 0)


def encode_gelu_params(cfg: StaConfig, clip: int, cp: int, mult: int, shift: int,
                       zero: int) -> list[int]:
    """The two PBUF entries of a GELU post-op: ``(cp, mult, shift)``, ``(clip, zero, 0)``
    (``zero`` two's complement in the mult field)."""
    alo, ahi = -(1 << (cfg.act_bits - 1)), (1 << (cfg.act_bits - 1)) - 1
    if not alo <= int(zero) <= ahi:
        raise ValueError(f"GELU zero point must be in [{alo}, {ahi}], not {zero}")
    if not 0 <= int(clip) < (1 << cfg.vec_bits):
        raise ValueError(f"GELU clip must be in [0, 2**{cfg.vec_bits}), not {clip}")
    return [encode_params(cfg, int(cp), int(mult), int(shift)),
            encode_params(cfg, int(clip), int(zero) & ((1 << cfg.requant_mult_bits) - 1), 0)]


def encode_add_params(cfg: StaConfig, mult_a: int, mult_b: int, shift: int) -> int:
    """The PBUF entry of a residual-add post-op: ``(mult_b, mult_a, shift)``."""
    if not 0 <= int(mult_b) < (1 << cfg.requant_mult_bits):
        raise ValueError(f"residual mult_b must be in [0, 2**{cfg.requant_mult_bits}), not "
                         f"{mult_b}")
    return encode_params(cfg, int(mult_b), int(mult_a), int(shift))


# -- memory map -------------------------------------------------------------------------------

@functools.cache
def space_width(cfg: StaConfig, space: str) -> int:
    """Data bits of one entry of ``space`` (before padding to 32-bit slices)."""
    ib = clog2(cfg.m)
    widths = {
        "CSR": 32,
        "CBUF": command_bits(cfg),
        "WBUF": cfg.rows * cfg.lanes * (cfg.weight_bits + ib),
        "ABUF": cfg.cols * cfg.acts_per_cycle * cfg.act_bits,
        "PBUF": sum(w for _, w in param_fields(cfg)),
        "OBUF": cfg.cols * cfg.acc_bits,
        "CYCLOG": 32,
        "VBUF": cfg.cols * cfg.vec_bits,
    }
    return widths[_space(space)]


@functools.cache
def space_depth(cfg: StaConfig, space: str) -> int:
    depths = {"CSR": CSR_DEPTH, "CBUF": cfg.cbuf_depth, "WBUF": cfg.wbuf_depth,
              "ABUF": cfg.abuf_depth, "PBUF": cfg.pbuf_depth, "OBUF": cfg.obuf_depth,
              "CYCLOG": cfg.cbuf_depth, "VBUF": cfg.vbuf_depth}
    return depths[_space(space)]


def _space(space: str) -> str:
    if space not in SPACES:
        raise ValueError(f"unknown memory space {space!r}; expected one of: {', '.join(SPACES)}")
    return space


@functools.cache
def sub_words(cfg: StaConfig, space: str) -> int:
    """32-bit slices per entry of ``space``."""
    return -(-space_width(cfg, space) // 32)


@functools.cache
def sub_bits(cfg: StaConfig, space: str) -> int:
    return clog2(sub_words(cfg, space))


@functools.cache
def space_shift(cfg: StaConfig) -> int:
    """Position of the space number in a host address."""
    return max(clog2(space_depth(cfg, s)) + sub_bits(cfg, s) for s in SPACES)


@functools.cache
def addr_bits(cfg: StaConfig) -> int:
    return space_shift(cfg) + clog2(len(SPACES))


def host_address(cfg: StaConfig, space: str, entry: int, sub: int = 0) -> int:
    depth = space_depth(cfg, space)
    if not 0 <= entry < depth:
        raise ValueError(f"{space} entry must be in [0, {depth}), not {entry}")
    if not 0 <= sub < sub_words(cfg, space):
        raise ValueError(f"{space} slice must be in [0, {sub_words(cfg, space)}), not {sub}")
    return (SPACES[space] << space_shift(cfg)) | (entry << sub_bits(cfg, space)) | sub


def split_entry(cfg: StaConfig, space: str, word: int) -> list[int]:
    """An entry of ``space`` as its 32-bit slices, slice 0 first."""
    word = int(word)
    width = space_width(cfg, space)
    if word < 0 or word >> width:
        raise ValueError(f"{space} entry must be a {width}-bit unsigned integer")
    return uart_protocol.split_words(word, width)


def join_entry(slices: Sequence[int]) -> int:
    """An entry from its 32-bit slices (:func:`nmaccel.spec.uart_protocol.join_words`)."""
    return uart_protocol.join_words(slices)


# -- GEMM geometry ----------------------------------------------------------------------------

def dense_ratio(cfg: StaConfig) -> int:
    """Dense-mode steps per activation window (``m // n``, rounded down)."""
    return cfg.m // cfg.n


def a_stride(cfg: StaConfig, mode: int, k_steps: int) -> int:
    """ABUF entries per token tile of a GEMM."""
    if mode == Mode.SPARSE:
        return k_steps
    r = dense_ratio(cfg)
    return -(-k_steps // r)


@dataclass(frozen=True)
class GemmCommand:
    """A GEMM command (see the module docstring for the addressing).

    ``dest`` picks where drained rows go (OBUF, ABUF scattered into ``olay`` windows, ABUF
    transposed, VBUF, or the softmax path), ``post`` an element-wise op on the requantized
    rows (GELU, residual add with the VBUF word at the output address), ``wsrc``/``asrc``
    the operand memories. ``a_stride`` defaults to the packed stride of :func:`a_stride`.
    """
    mode: int
    m_tiles: int
    n_tiles: int
    k_steps: int
    w_base: int = 0
    a_base: int = 0
    o_base: int = 0
    p_base: int = 0
    osel: int = 0
    dest: int = Dest.OBUF
    post: int = Post.NONE
    olay: int = 0
    wsrc: int = WSrc.WBUF
    asrc: int = 0
    barrier: int = 0
    wait_sm: int = 0
    a_stride: int | None = None
    w_stride: int = 0
    o_stride: int = 0
    length: int = 0

    def fields(self, cfg: StaConfig | None = None) -> dict[str, int]:
        stride = self.a_stride
        if stride is None:
            if cfg is None:
                raise ValueError("a_stride is derived from the config: pass cfg")
            stride = a_stride(cfg, self.mode, self.k_steps)
        out = {"op": Opcode.GEMM, "a_stride": stride}
        for name in ("mode", "osel", "dest", "post", "olay", "wsrc", "asrc", "barrier", "wait_sm",
                     "m_tiles", "n_tiles", "k_steps", "w_base", "a_base", "o_base", "p_base",
                     "w_stride", "o_stride", "length"):
            out[name] = getattr(self, name)
        return out

    def encode(self, cfg: StaConfig) -> int:
        return encode_command(cfg, **self.fields(cfg))

    def post_params(self) -> int:
        """PBUF entries after the per-feature ones that the post-op reads."""
        return {Post.NONE: 0, Post.GELU: 2, Post.ADD: 1}.get(self.post, 0)

    def extents(self, cfg: StaConfig) -> dict[str, tuple[int, int]]:
        """(first entry, entries) used in each memory (output extents are upper bounds of the
        addresses written)."""
        f = self.fields(cfg)
        R, C = cfg.rows, cfg.cols
        ratio = dense_ratio(cfg)
        steps = -(-self.k_steps // ratio) if self.mode == Mode.DENSE else self.k_steps
        out = {}
        wspace = "ABUF" if self.wsrc == WSrc.ABUF else "WBUF"
        if self.wsrc == WSrc.ABUF:
            out[wspace] = (self.w_base, (self.m_tiles - 1) * self.w_stride + steps)
        else:
            out[wspace] = (self.w_base, self.m_tiles * self.k_steps)
        aspace = "SBUF" if self.asrc == ASrc.SBUF else "ABUF"
        a_ext = (self.a_base, (self.n_tiles - 1) * f["a_stride"] + steps)
        if aspace == "ABUF" and "ABUF" in out:
            out["ABUF2"] = a_ext
        else:
            out[aspace] = a_ext
        feats = self.m_tiles * R
        if self.dest == Dest.OBUF:
            out["OBUF"] = (self.o_base, self.n_tiles * self.m_tiles * R)
        elif self.dest == Dest.VBUF:
            out["VBUF"] = (self.o_base, (self.n_tiles - 1) * self.o_stride + feats)
        elif self.dest == Dest.ABUF:
            w = window(cfg, self.olay)
            out["ABUF3"] = (self.o_base, (self.n_tiles - 1) * self.o_stride + -(-feats // w))
        elif self.dest == Dest.ABUF_T:
            w = window(cfg, self.olay)
            out["ABUF3"] = (self.o_base, (self.m_tiles - 1) * self.o_stride
                            + -(-(self.n_tiles * C) // w))
        elif self.dest == Dest.SOFTMAX:
            out["SBUF"] = (self.o_base, -(-max(self.length, 1) // cfg.dense_window))
        out["PBUF"] = (self.p_base, feats + self.post_params())
        return out

    def check(self, cfg: StaConfig) -> GemmCommand:
        """Host-side check of everything the hardware checks (clear errors, same rules)."""
        if self.mode not in (Mode.SPARSE, Mode.DENSE):
            raise ValueError(f"mode must be 0 (sparse) or 1 (dense), not {self.mode!r}")
        osel_bits(cfg, self.osel)
        if self.dest not in DEST_NAMES:
            raise ValueError(f"dest must be one of {DEST_NAMES}, not {self.dest!r}")
        if self.post not in POST_NAMES:
            raise ValueError(f"post must be one of {POST_NAMES}, not {self.post!r}")
        for name in ("m_tiles", "n_tiles", "k_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 1 <= v < (1 << DIM_BITS):
                raise ValueError(f"{name} must be an integer in [1, {(1 << DIM_BITS) - 1}], "
                                 f"not {v!r}")
        if self.wsrc == WSrc.ABUF or self.dest == Dest.ABUF_T:
            if cfg.rows != cfg.cols:
                raise ValueError(f"an ABUF weight operand or a transposed output needs rows == "
                                 f"cols, not {cfg.rows}x{cfg.cols}")
        if self.wsrc == WSrc.ABUF and self.mode != Mode.DENSE:
            raise ValueError("an ABUF weight operand (wsrc=1) needs a dense-mode GEMM")
        if self.asrc == ASrc.SBUF and self.mode != Mode.DENSE:
            raise ValueError("an SBUF activation operand (asrc=1) needs a dense-mode GEMM")
        if self.dest == Dest.ABUF and not layout_supported(cfg, self.olay):
            raise ValueError(f"rows ({cfg.rows}) and the output window ({window(cfg, self.olay)}) "
                             f"must divide one another")
        if self.dest == Dest.ABUF_T and window(cfg, self.olay) % cfg.cols:
            raise ValueError(f"a transposed output needs windows ({window(cfg, self.olay)}) that "
                             f"are a multiple of cols ({cfg.cols})")
        if self.dest == Dest.SOFTMAX:
            why = attention_supported(cfg)
            if why:
                raise ValueError(why)
            if self.m_tiles != 1:
                raise ValueError(f"a softmax GEMM computes one row tile (m_tiles=1), not "
                                 f"{self.m_tiles}")
            if not 1 <= self.length <= min(cfg.max_seq, self.n_tiles * cfg.cols):
                raise ValueError(f"softmax row length must be in "
                                 f"[1, {min(cfg.max_seq, self.n_tiles * cfg.cols)}] "
                                 f"(max_seq={cfg.max_seq}, key tiles x cols), not {self.length}")
        _check_extents(cfg, "GEMM uses", self.extents(cfg))
        return self


def _check_extents(cfg: StaConfig, what: str, extents: Mapping[str, tuple[int, int]]) -> None:
    """Raise a clear ``ValueError`` for the first ``(base, count)`` extent beyond its memory
    (``ABUF2``/``ABUF3``: a command's second and third ABUF ranges; SBUF: the probabilities)."""
    for space, (base, count) in extents.items():
        space = space.rstrip("23")
        depth = cfg.sbuf_depth if space == "SBUF" else space_depth(cfg, space)
        if base < 0 or base + count > depth:
            raise ValueError(f"{what} {space} entries [{base}, {base + count}) but {space} has "
                             f"{depth} entries (StaConfig {space.lower()}_depth)")


@dataclass(frozen=True)
class VectorCommand:
    """A vector command: ``LAYERNORM`` or ``REQUANT`` over ``n_tiles`` token tiles.

    Input word of token tile ``ct``, feature ``f``: VBUF ``a_base + ct * a_stride + f`` (``length``
    features). LAYERNORM writes its ``vec_bits`` result back in place and, with
    ``dest = Dest.ABUF``, an ``act_bits`` copy scattered into ABUF windows (``olay`` layout) at
    ``o_base + ct * o_stride``; REQUANT writes only that ABUF copy. Parameters: LAYERNORM
    PBUF ``p_base + f`` = (gamma, beta) per feature (:func:`encode_ln_params`), then
    ``(mult, shift)`` of the output and ``(mult8, shift8)`` of the ABUF copy; REQUANT one
    ``(mult, shift)`` entry.
    """
    op: int
    n_tiles: int
    length: int
    a_base: int = 0
    a_stride: int = 0
    o_base: int = 0
    o_stride: int = 0
    p_base: int = 0
    dest: int = Dest.ABUF
    olay: int = 0
    barrier: int = 1

    def fields(self, cfg: StaConfig | None = None) -> dict[str, int]:
        return {"op": self.op, "n_tiles": self.n_tiles, "length": self.length,
                "a_base": self.a_base, "a_stride": self.a_stride, "o_base": self.o_base,
                "o_stride": self.o_stride, "p_base": self.p_base, "dest": self.dest,
                "olay": self.olay, "barrier": self.barrier}

    def encode(self, cfg: StaConfig) -> int:
        return encode_command(cfg, **self.fields(cfg))

    def params(self) -> int:
        return self.length + 2 if self.op == Opcode.LAYERNORM else 1

    def extents(self, cfg: StaConfig) -> dict[str, tuple[int, int]]:
        out = {"VBUF": (self.a_base, (self.n_tiles - 1) * self.a_stride + self.length),
               "PBUF": (self.p_base, self.params())}
        if self.dest == Dest.ABUF or self.op == Opcode.REQUANT:
            w = window(cfg, self.olay)
            out["ABUF"] = (self.o_base, (self.n_tiles - 1) * self.o_stride + -(-self.length // w))
        return out

    def check(self, cfg: StaConfig) -> VectorCommand:
        if self.op not in (Opcode.LAYERNORM, Opcode.REQUANT):
            raise ValueError(f"vector op must be LAYERNORM ({Opcode.LAYERNORM}) or REQUANT "
                             f"({Opcode.REQUANT}), not {self.op!r}")
        for name in ("n_tiles", "length"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 1 <= v < (1 << DIM_BITS):
                raise ValueError(f"{name} must be an integer in [1, {(1 << DIM_BITS) - 1}], "
                                 f"not {v!r}")
        if self.dest not in (Dest.OBUF, Dest.ABUF):
            raise ValueError(f"a vector command writes VBUF (dest 0) and optionally ABUF (dest 1), "
                             f"not dest {self.dest!r}")
        if (self.dest == Dest.ABUF or self.op == Opcode.REQUANT) and window(cfg, self.olay) < 1:
            raise ValueError("bad output layout")
        _check_extents(cfg, f"{OPNAME[self.op]} uses", self.extents(cfg))
        return self


@dataclass(frozen=True)
class FetchCommand:
    """FETCH: copy ``wlen`` WBUF entries to ``w_base`` and then ``plen`` PBUF entries to
    ``p_base`` from the external memory's consecutive words at ``ext_addr``
    (:func:`ext_words_per_entry` words per entry, WBUF's block first).

    The controller hands the FETCH to the weight-fetch engine and goes on: the data arrives
    while later commands run. A FETCH first waits until the engine has finished the previous
    one (so the command after a FETCH may use what the FETCH before it brought; a FETCH with
    ``wlen = plen = 0`` only waits), and with ``barrier`` also until the array and drain are
    empty (so it may overwrite the parameters of GEMMs before it). A run ends when the engine
    is idle. Only on a core with external memory (``StaConfig.sdram_mhz``); elsewhere its
    opcode is unknown.
    """
    ext_addr: int
    w_base: int = 0
    wlen: int = 0
    p_base: int = 0
    plen: int = 0
    barrier: int = 0
    op = Opcode.FETCH

    def fields(self, cfg: StaConfig | None = None) -> dict[str, int]:
        return {"op": Opcode.FETCH, "ext_addr": self.ext_addr, "w_base": self.w_base,
                "ext_wlen": self.wlen, "p_base": self.p_base, "ext_plen": self.plen,
                "barrier": self.barrier}

    def encode(self, cfg: StaConfig) -> int:
        if cfg.sdram_timing is None:
            raise ValueError("FETCH needs a core with external memory (StaConfig sdram_mhz)")
        return encode_command(cfg, **self.fields(cfg))

    def ext_words(self, cfg: StaConfig) -> int:
        """External-memory words the FETCH reads."""
        return fetch_words(cfg, self.wlen, self.plen)

    def extents(self, cfg: StaConfig) -> dict[str, tuple[int, int]]:
        return {"WBUF": (self.w_base, self.wlen), "PBUF": (self.p_base, self.plen)}

    def check(self, cfg: StaConfig) -> FetchCommand:
        t = cfg.sdram_timing
        if t is None:
            raise ValueError("FETCH needs a core with external memory (StaConfig sdram_mhz)")
        for name in ("wlen", "plen"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v < (1 << DIM_BITS):
                raise ValueError(f"FETCH {name} must be an integer in [0, {(1 << DIM_BITS) - 1}],"
                                 f" not {v!r}")
        _check_extents(cfg, "FETCH fills", self.extents(cfg))
        top = self.ext_addr + self.ext_words(cfg)
        if self.ext_addr < 0 or top > 1 << t.addr_bits:
            raise ValueError(f"FETCH reads external words [{self.ext_addr}, {top}) but the "
                             f"SDRAM has {1 << t.addr_bits} words")
        return self


OPNAME = {v: k for k, v in OPCODES.items()}
_GEMM_FIELDS = tuple(f.name for f in dataclasses.fields(GemmCommand))


def command_from_word(cfg: StaConfig, word: int):
    """The :class:`GemmCommand` / :class:`VectorCommand` (or ``None`` for NOP) of a word."""
    f = decode_command(cfg, word)
    op = f.pop("op")
    if op == Opcode.GEMM:
        return GemmCommand(**{k: f[k] for k in _GEMM_FIELDS})
    if op in (Opcode.LAYERNORM, Opcode.REQUANT):
        return VectorCommand(op=op, **{k: f[k] for k in ("n_tiles", "length", "a_base", "a_stride",
                                                           "o_base", "o_stride", "p_base", "dest",
                                                           "olay", "barrier")})
    if op == Opcode.FETCH and "ext_addr" in f:
        return FetchCommand(ext_addr=f["ext_addr"], w_base=f["w_base"], wlen=f["ext_wlen"],
                            p_base=f["p_base"], plen=f["ext_plen"], barrier=f["barrier"])
    if op == Opcode.NOP:
        return None
    raise ValueError(f"unknown opcode {op} (known: {OPCODES})")


# ============================================================ coupled parameters, one step
#: The StaConfig fields that the coupled rules of :func:`config_problems` involve.
COUPLED_FIELDS = ("rows", "cols", "lanes", "n", "m", "softmax_lanes", "softmax_out_bits",
                  "act_bits")


def config_problems(values: Mapping[str, int], layer: bool = True) -> list[str]:
    """Every coupled rule that the StaConfig fields ``values`` (a dict, which need not make a
    valid config) break, as readable lines; empty if none.

    Always: ``n <= m``, ``lanes`` a multiple of ``n``, at most
    :data:`~nmaccel.spec.config.MAX_MULTIPLIERS` multipliers. With ``layer`` also the rules
    of a whole encoder layer on chip (:func:`attention_supported` and the scattered outputs
    of :func:`layout_supported`): a square array, ``softmax_lanes == cols``,
    ``softmax_out_bits <= act_bits``, a dense window that is a multiple of ``cols`` and
    that ``rows`` divides or is divided by, and likewise for the sparse window. Then any
    single-field error of the config itself."""
    v = {f.name: getattr(StaConfig(), f.name) for f in dataclasses.fields(StaConfig)}
    v.update(values)
    out = []
    for name in ("rows", "cols", "lanes", "softmax_lanes", "n", "m"):
        if not isinstance(v[name], int) or not 1 <= v[name] <= MAX_ARRAY_DIM:
            out.append(f"{name} must be an integer in [1, {MAX_ARRAY_DIM}], not {v[name]!r}")
    if out:
        return out
    rows, cols, lanes, n, m = v["rows"], v["cols"], v["lanes"], v["n"], v["m"]
    if n > m:
        out.append(f"n ({n}) must be <= m ({m})")
    if n >= 1 and lanes % n:
        out.append(f"lanes ({lanes}) must be a multiple of n ({n}): whole N:M groups per PE")
    if rows * cols * lanes > MAX_MULTIPLIERS:
        out.append(f"rows x cols x lanes ({rows * cols * lanes}) must be at most "
                   f"{MAX_MULTIPLIERS}")
    if layer and n >= 1:
        dense, sparse = (m // n) * lanes, lanes * m // n
        if rows != cols:
            out.append(f"on-chip attention needs a square array: rows ({rows}) == cols ({cols})")
        if v["softmax_lanes"] != cols:
            out.append(f"softmax_lanes ({v['softmax_lanes']}) must equal cols ({cols})")
        if v["softmax_out_bits"] > v["act_bits"]:
            out.append(f"softmax_out_bits ({v['softmax_out_bits']}) must be <= act_bits "
                       f"({v['act_bits']})")
        if dense % cols:
            out.append(f"the dense window ((m // n) x lanes = {dense}) must be a multiple of "
                       f"cols ({cols})")
        for what, w in (("dense", dense), ("sparse", sparse)):
            if w % rows and rows % w:
                out.append(f"rows ({rows}) and the {what} window ({w}) must divide one another")
    if not out:
        try:
            StaConfig(**v)
        except ConfigError as exc:
            out.append(str(exc))
    return out


def fit_pattern(cfg: StaConfig | Mapping[str, int], n: int, m: int, fixed: Iterable[str] = (),
                layer: bool = True, extra=None) -> tuple[StaConfig, list[str]]:
    """``cfg`` made consistent for the N:M pattern ``n:m`` in one step: returns the config
    and the changes made (``"lanes 4 -> 6"``; none if ``cfg`` with ``n:m`` is consistent).

    First the smallest ``lanes`` >= ``cfg.lanes`` that is a multiple of ``n``; if (with
    ``layer``) the rules of :func:`config_problems` still fail, the square array
    ``rows = cols = softmax_lanes`` and the ``lanes`` (a multiple of ``n``, at least that)
    that meet them closest to ``cfg``'s shape (the sum of the log ratios of side and lanes;
    then the multiplier count closest to ``cfg``'s, then fewer lanes).
    Fields named in ``fixed`` (set explicitly by the user) are not changed; if the rules
    cannot be met without changing them, or at all, :class:`~nmaccel.spec.config.ConfigError`
    lists every rule broken. ``cfg`` may be a dict of fields (a config with overrides that
    is not valid yet). ``extra(config)``: a further rule of the caller's (e.g. that a
    workload's shapes fit the array), the reason a config breaks it or None."""
    fixed = set(fixed)
    base = dataclasses.asdict(cfg) if isinstance(cfg, StaConfig) else dict(cfg)
    v = dict(base, n=n, m=m)
    cols0, lanes0 = base["cols"], base["lanes"]

    def problems(vals):
        out = config_problems(vals, layer)
        if not out and extra is not None:
            why = extra(StaConfig(**vals))
            out = [why] if why else []
        return out

    if problems(v) and "lanes" not in fixed and n >= 1:
        v["lanes"] = -(-v["lanes"] // n) * n
    array = ("rows", "cols", "softmax_lanes")
    if layer and problems(v):
        chosen = {v[k] for k in array if k in fixed}
        sides = list(chosen) if len(chosen) == 1 else [] if chosen else \
            range(1, MAX_ARRAY_DIM + 1)
        lane_options = [v["lanes"]] if "lanes" in fixed else \
            range(v["lanes"], MAX_ARRAY_DIM + 1, max(n, 1))
        target = base["rows"] * cols0 * lanes0

        def distance(t):                 # shape closest to cfg's, then multipliers, lanes
            mult = t["rows"] * t["cols"] * t["lanes"]
            shape = abs(math.log(t["cols"] / cols0)) + abs(math.log(t["lanes"] / lanes0))
            return (round(shape, 9), max(mult / target, target / mult), t["lanes"])
        consistent = [trial for lanes in lane_options for side in sides
                      if not config_problems(trial := dict(v, lanes=lanes,
                                                           **{k: side for k in array}), layer)]
        candidates = [t for t in consistent if not problems(t)]
        if candidates:
            v = min(candidates, key=distance)
        elif consistent:
            near = min(consistent, key=distance)
            raise ConfigError(f"{n}:{m}: the STA's rules allow {len(consistent)} square arrays "
                              f"here, and none passes the further rule; the nearest, "
                              f"{near['rows']}x{near['cols']}x{near['lanes']}: "
                              + "; ".join(problems(near)))
    why = problems(v)
    if why:
        raise ConfigError(f"{n}:{m} cannot be built this way; every rule broken: "
                          + "; ".join(why))
    changes = [f"{k} {base[k]} -> {v[k]}" for k in base if k not in ("n", "m")
               and v[k] != base[k]]
    return StaConfig(**v), changes


__all__ += ["COUPLED_FIELDS", "config_problems", "fit_pattern"]
