"""STA instruction set and host memory map, defined once (pure Python, no Amaranth).

The RTL (``nmaccel.hw.sta``) builds its command ``StructLayout`` and address decoder from the
tables here; the compiler and host drivers encode programs and memory images with the same
functions. Everything is sized from a :class:`~nmaccel.hw.config.StaConfig`.

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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from nmaccel.hw.config import StaConfig, clog2

__all__ = [
    "CSR",
    "DIM_BITS",
    "ERRORS",
    "ERROR_CODES",
    "MODE_DENSE",
    "MODE_SPARSE",
    "OPCODES",
    "OP_BITS",
    "OP_GEMM",
    "OP_NOP",
    "OSEL_BITS",
    "OSEL_NAMES",
    "SHIFT_BITS",
    "SPACES",
    "GemmCommand",
    "a_stride",
    "addr_bits",
    "command_bits",
    "command_fields",
    "decode_command",
    "dense_ratio",
    "encode_command",
    "encode_params",
    "error_name",
    "host_address",
    "join_entry",
    "param_fields",
    "space_depth",
    "space_shift",
    "space_width",
    "split_entry",
    "sub_bits",
    "sub_words",
]

OP_BITS = 4
OP_NOP, OP_GEMM = 0, 1
OPCODES = {"NOP": OP_NOP, "GEMM": OP_GEMM}
MODE_SPARSE, MODE_DENSE = 0, 1
#: Output formats of a GEMM (``osel``): bits of the saturated output.
OSEL_BITS = {0: 8, 1: 16, 2: 32}
OSEL_NAMES = {0: "int8", 1: "int16", 2: "int32"}
SHIFT_BITS = 6
DIM_BITS = 16

SPACES = {"CSR": 0, "CBUF": 1, "WBUF": 2, "ABUF": 3, "PBUF": 4, "OBUF": 5, "CYCLOG": 6}

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
}
CSR_DEPTH = 16

#: Error codes in STATUS[15:8] by short name (the RTL raises them by these names).
ERROR_CODES = {"opcode": 1, "zero": 2, "wbuf": 3, "abuf": 4, "obuf": 5, "pbuf": 6, "meta": 7,
               "count": 8, "osel": 9}

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
}


def error_name(code: int) -> str:
    return ERRORS.get(int(code), f"unknown error code {code}")


# -- field tables ---------------------------------------------------------------------------

def _aw(depth: int) -> int:
    return max(clog2(depth), 1)


def command_fields(cfg: StaConfig) -> list[tuple[str, int]]:
    """(name, width) of the command word, LSB first."""
    return [
        ("op", OP_BITS), ("mode", 1), ("osel", 2),
        ("m_tiles", DIM_BITS), ("n_tiles", DIM_BITS), ("k_steps", DIM_BITS),
        ("w_base", _aw(cfg.wbuf_depth)), ("a_base", _aw(cfg.abuf_depth)),
        ("o_base", _aw(cfg.obuf_depth)), ("p_base", _aw(cfg.pbuf_depth)),
    ]


def command_bits(cfg: StaConfig) -> int:
    return sum(w for _, w in command_fields(cfg))


def param_fields(cfg: StaConfig) -> list[tuple[str, int]]:
    """(name, width) of a PBUF entry, LSB first; ``bias`` is two's complement."""
    return [("bias", cfg.acc_bits), ("mult", cfg.requant_mult_bits), ("shift", SHIFT_BITS)]


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
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
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


def encode_command(cfg: StaConfig, **fields: int) -> int:
    """The command word for ``fields`` (missing fields are 0); range-checked per field."""
    return _pack(command_fields(cfg), fields, "command")


def decode_command(cfg: StaConfig, word: int) -> dict[str, int]:
    out, pos = {}, 0
    for name, width in command_fields(cfg):
        out[name] = (int(word) >> pos) & ((1 << width) - 1)
        pos += width
    return out


def encode_params(cfg: StaConfig, bias: int, mult: int, shift: int) -> int:
    """A PBUF entry (range-checked)."""
    return _pack(param_fields(cfg), {"bias": bias, "mult": mult, "shift": shift},
                 "requant parameter", signed=("bias",))


# -- memory map -------------------------------------------------------------------------------

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
    }
    return widths[_space(space)]


def space_depth(cfg: StaConfig, space: str) -> int:
    depths = {"CSR": CSR_DEPTH, "CBUF": cfg.cbuf_depth, "WBUF": cfg.wbuf_depth,
              "ABUF": cfg.abuf_depth, "PBUF": cfg.pbuf_depth, "OBUF": cfg.obuf_depth,
              "CYCLOG": cfg.cbuf_depth}
    return depths[_space(space)]


def _space(space: str) -> str:
    if space not in SPACES:
        raise ValueError(f"unknown memory space {space!r}; expected one of: {', '.join(SPACES)}")
    return space


def sub_words(cfg: StaConfig, space: str) -> int:
    """32-bit slices per entry of ``space``."""
    return -(-space_width(cfg, space) // 32)


def sub_bits(cfg: StaConfig, space: str) -> int:
    return clog2(sub_words(cfg, space))


def space_shift(cfg: StaConfig) -> int:
    """Position of the space number in a host address."""
    return max(clog2(space_depth(cfg, s)) + sub_bits(cfg, s) for s in SPACES)


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
    return [(word >> (32 * i)) & 0xFFFFFFFF for i in range(sub_words(cfg, space))]


def join_entry(slices: Sequence[int]) -> int:
    word = 0
    for i, s in enumerate(slices):
        word |= (int(s) & 0xFFFFFFFF) << (32 * i)
    return word


# -- GEMM geometry ----------------------------------------------------------------------------

def dense_ratio(cfg: StaConfig) -> int:
    """Dense-mode steps per activation window (``m // n``, rounded down)."""
    return cfg.m // cfg.n


def a_stride(cfg: StaConfig, mode: int, k_steps: int) -> int:
    """ABUF entries per token tile of a GEMM."""
    if mode == MODE_SPARSE:
        return k_steps
    r = dense_ratio(cfg)
    return -(-k_steps // r)


@dataclass(frozen=True)
class GemmCommand:
    """A GEMM command (see the module docstring for the addressing)."""
    mode: int
    m_tiles: int
    n_tiles: int
    k_steps: int
    w_base: int = 0
    a_base: int = 0
    o_base: int = 0
    p_base: int = 0
    osel: int = 0

    def fields(self) -> dict[str, int]:
        return {"op": OP_GEMM, "mode": self.mode, "osel": self.osel, "m_tiles": self.m_tiles,
                "n_tiles": self.n_tiles, "k_steps": self.k_steps, "w_base": self.w_base,
                "a_base": self.a_base, "o_base": self.o_base, "p_base": self.p_base}

    def encode(self, cfg: StaConfig) -> int:
        return encode_command(cfg, **self.fields())

    def extents(self, cfg: StaConfig) -> dict[str, tuple[int, int]]:
        """(first entry, entries) used in each memory."""
        return {
            "WBUF": (self.w_base, self.m_tiles * self.k_steps),
            "ABUF": (self.a_base, self.n_tiles * a_stride(cfg, self.mode, self.k_steps)),
            "OBUF": (self.o_base, self.n_tiles * self.m_tiles * cfg.rows),
            "PBUF": (self.p_base, self.m_tiles * cfg.rows),
        }

    def check(self, cfg: StaConfig) -> GemmCommand:
        """Host-side check of everything the hardware checks (clear errors, same rules)."""
        if self.mode not in (MODE_SPARSE, MODE_DENSE):
            raise ValueError(f"mode must be 0 (sparse) or 1 (dense), not {self.mode!r}")
        if self.osel not in OSEL_BITS:
            raise ValueError(f"osel must be one of {sorted(OSEL_BITS)}, not {self.osel!r}")
        for name in ("m_tiles", "n_tiles", "k_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 1 <= v < (1 << DIM_BITS):
                raise ValueError(f"{name} must be an integer in [1, {(1 << DIM_BITS) - 1}], not {v!r}")
        for space, (base, count) in self.extents(cfg).items():
            depth = space_depth(cfg, space)
            if base < 0 or base + count > depth:
                raise ValueError(f"GEMM uses {space} entries [{base}, {base + count}) but "
                                 f"{space} has {depth} entries (StaConfig {space.lower()}_depth)")
        return self

