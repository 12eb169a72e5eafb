"""STA programs: memory images + command list, and the GEMM compiler.

A :class:`StaProgram` is what a host driver loads into the accelerator: per memory space a
dict ``entry -> word`` (:mod:`nmaccel.spec.sta_isa` formats), the encoded commands, and
:class:`OutputRegion` descriptors that say how to read results back. The same program runs on
the golden model (:meth:`StaProgram.golden`), on RTL (``nmaccel.sim``) and on a board.

Tiling: the controller tiles a GEMM over the ``R × C`` array; :func:`compile_gemm` places one
GEMM in the buffers and :func:`plan_gemm` splits a GEMM that does not fit the buffers into
several programs (chunks of output features and/or tokens), each loaded and run in turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nmaccel.model import nm as nmfmt
from nmaccel.model.intops import gemm_dense, gemm_sparse
from nmaccel.model.quant import as_int64, requant
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig
from nmaccel.spec.sta_isa import GemmCommand, Mode, osel_bits

__all__ = [
    "GemmSpec",
    "OutputRegion",
    "StaProgram",
    "compile_gemm",
    "pack_activation_entries",
    "pack_vector_entries",
    "VectorRegion",
    "pack_weight_entries",
    "plan_gemm",
    "run_gemm_golden",
]


@dataclass(frozen=True)
class OutputRegion:
    """Where a GEMM's ``(tokens, features)`` result lies in OBUF."""
    name: str
    o_base: int
    m_tiles: int
    n_tiles: int
    features: int
    tokens: int
    osel: int
    space = "OBUF"

    def entries(self, cfg: StaConfig) -> range:
        return range(self.o_base, self.o_base + self.m_tiles * self.n_tiles * cfg.rows)

    def unpack(self, cfg: StaConfig, words: dict) -> np.ndarray:
        """``(tokens, features)`` int64 from OBUF words ``{entry: int}``."""
        R, C, AB = cfg.rows, cfg.cols, cfg.acc_bits
        out = np.zeros((self.n_tiles * C, self.m_tiles * R), dtype=np.int64)
        mask = (1 << AB) - 1
        for ct in range(self.n_tiles):
            for rt in range(self.m_tiles):
                for r in range(R):
                    word = int(words[self.o_base + (ct * self.m_tiles + rt) * R + r])
                    for c in range(C):
                        v = (word >> (c * AB)) & mask
                        out[ct * C + c, rt * R + r] = v - (1 << AB) if v >> (AB - 1) else v
        return out[:self.tokens, :self.features]


@dataclass(frozen=True)
class VectorRegion:
    """A ``(tokens, features)`` ``vec_bits`` result in VBUF: token tile ``ct``, feature ``f`` at
    entry ``v_base + ct * stride + f`` (``cols`` tokens per entry)."""
    name: str
    v_base: int
    n_tiles: int
    stride: int
    features: int
    tokens: int
    space = "VBUF"

    def entries(self, cfg: StaConfig) -> list:
        return [self.v_base + ct * self.stride + f for ct in range(self.n_tiles)
                for f in range(self.features)]

    def unpack(self, cfg: StaConfig, words: dict) -> np.ndarray:
        C, VB = cfg.cols, cfg.vec_bits
        out = np.zeros((self.n_tiles * C, self.features), dtype=np.int64)
        mask = (1 << VB) - 1
        for ct in range(self.n_tiles):
            for f in range(self.features):
                word = int(words[self.v_base + ct * self.stride + f])
                for c in range(C):
                    v = (word >> (c * VB)) & mask
                    out[ct * C + c, f] = v - (1 << VB) if v >> (VB - 1) else v
        return out[:self.tokens]


def pack_vector_entries(x, cfg: StaConfig, v_base: int, stride: int) -> dict:
    """VBUF entries ``{entry: word}`` of ``vec_bits`` values ``x (tokens, features)`` (the
    layout of :class:`VectorRegion`; missing tokens of the last tile are 0)."""
    x = as_int64(x, "x")
    C, VB = cfg.cols, cfg.vec_bits
    lo, hi = -(1 << (VB - 1)), (1 << (VB - 1)) - 1
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"VBUF values must be signed {VB}-bit (vec_bits), got "
                         f"{x.min()}..{x.max()}")
    tokens, F = x.shape
    out = {}
    for ct in range(-(-tokens // C)):
        for f in range(F):
            word = 0
            for c in range(C):
                t = ct * C + c
                if t < tokens:
                    word |= (int(x[t, f]) & ((1 << VB) - 1)) << (c * VB)
            out[v_base + ct * stride + f] = word
    return out


@dataclass
class StaProgram:
    """Memory images and commands for one STA run."""
    cfg: StaConfig
    images: dict = field(default_factory=lambda: {s: {} for s in ("WBUF", "ABUF", "PBUF", "VBUF")})
    commands: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    #: golden results per output region name (filled by the compiler)
    expected: dict = field(default_factory=dict)
    #: useful work in dense-equivalent multiply-accumulates (tokens · features · K per GEMM;
    #: the utilization numerator, see :func:`nmaccel.model.sta_cycles.utilization`)
    useful_macs: int = 0
    #: multiplications actually needed (pruned weights skipped: N/M of the dense work)
    executed_macs: int = 0
    #: external-memory words ``{word address: value}`` the program's FETCH commands read
    #: (loaded into the SDRAM before the program runs; empty without external memory)
    ext_image: dict = field(default_factory=dict)

    def host_writes(self) -> list[tuple[int, int]]:
        """``(address, data)`` 32-bit host writes that load the program (without START): the
        external-memory image first (:meth:`ext_writes`), then the buffers and commands."""
        cfg = self.cfg
        writes = self.ext_writes()
        for space, entries in self.images.items():
            for entry in sorted(entries):
                for sub, word in enumerate(sta_isa.split_entry(cfg, space, entries[entry])):
                    writes.append((sta_isa.host_address(cfg, space, entry, sub), word))
        for i, word in enumerate(self.commands):
            for sub, part in enumerate(sta_isa.split_entry(cfg, "CBUF", word)):
                writes.append((sta_isa.host_address(cfg, "CBUF", i, sub), part))
        return writes

    def ext_runs(self) -> list[tuple[int, list[int]]]:
        """:attr:`ext_image` as ``(first address, words)`` runs of consecutive addresses, in
        address order (empty without an image; ``ValueError`` for an image on a config
        without external memory)."""
        if not self.ext_image:
            return []
        if self.cfg.sdram_timing is None:
            raise ValueError("the program has an external-memory image but its StaConfig has "
                             "no external memory (sdram_mhz=0)")
        runs: list[tuple[int, list[int]]] = []
        for a in sorted(self.ext_image):
            if runs and a == runs[-1][0] + len(runs[-1][1]):
                runs[-1][1].append(int(self.ext_image[a]))
            else:
                runs.append((a, [int(self.ext_image[a])]))
        return runs

    def ext_writes(self) -> list[tuple[int, int]]:
        """Host writes that put :attr:`ext_image` into the SDRAM: per run of consecutive
        words (:meth:`ext_runs`) CSR EXT_ADDR, then EXT_DATA with two (``32 / data_bits``)
        words each, the lower address in the lower bits, and EXT_WORD for a last odd word. A
        host waits for STATUS ``ext_ready`` before them."""
        runs = self.ext_runs()
        if not runs:
            return []
        cfg, w = self.cfg, self.cfg.sdram_timing.data_bits
        csr = {name: sta_isa.host_address(cfg, "CSR", sta_isa.CSR[name])
               for name in ("EXT_ADDR", "EXT_DATA", "EXT_WORD")}
        per = 32 // w
        writes = []
        for base, words in runs:
            writes.append((csr["EXT_ADDR"], base))
            whole = len(words) - len(words) % per
            for k in range(0, whole, per):
                writes.append((csr["EXT_DATA"], sum(words[k + j] << (j * w)
                                                    for j in range(per))))
            writes += [(csr["EXT_WORD"], word) for word in words[whole:]]
        return writes

    def output_entries(self) -> list[tuple[str, int]]:
        """``(space, entry)`` of every memory entry that holds an output word, sorted."""
        return sorted({(region.space, entry) for region in self.outputs
                       for entry in region.entries(self.cfg)})

    def output_reads(self) -> list[tuple[int, str, int, int]]:
        """``(address, space, entry, slice)`` host reads that fetch every output word."""
        cfg = self.cfg
        reads = []
        for region in self.outputs:
            for entry in region.entries(cfg):
                for sub in range(sta_isa.sub_words(cfg, region.space)):
                    reads.append((sta_isa.host_address(cfg, region.space, entry, sub),
                                  region.space, entry, sub))
        return reads

    def unpack_outputs(self, slices: dict) -> dict:
        """Results per region from ``{(space, entry, slice): data}`` of :meth:`output_reads`."""
        cfg = self.cfg
        out = {}
        for region in self.outputs:
            nsub = sta_isa.sub_words(cfg, region.space)
            words = {entry: sta_isa.join_entry([slices[(region.space, entry, k)]
                                                for k in range(nsub)])
                     for entry in region.entries(cfg)}
            out[region.name] = region.unpack(cfg, words)
        return out

    def gemm_commands(self) -> list[GemmCommand]:
        out = []
        for word in self.commands:
            f = sta_isa.decode_command(self.cfg, word)
            if f["op"] == sta_isa.Opcode.GEMM:
                out.append(sta_isa.command_from_word(self.cfg, word))
        return out


# -- operand packing -----------------------------------------------------------------------------

def pack_weight_entries(weight, cfg: StaConfig, mode: int) -> tuple[np.ndarray, int, int]:
    """WBUF entries for a weight matrix: ``(entries[m_tiles * k_steps], m_tiles, k_steps)``.

    ``weight`` is an :class:`~nmaccel.model.nm.NMCompressed` (sparse mode) or a dense integer
    ``(features, K)`` matrix (dense mode). Row ``rt*R + r`` of the weight goes to bits
    ``[r*WW, (r+1)*WW)`` of entry ``rt*k_steps + s``; missing rows of the last tile are
    padding (sparse: value 0 with indices ``0..n-1``; dense: 0).
    """
    R = cfg.rows
    WW = cfg.lanes * (cfg.weight_bits + cfg.index_bits)
    if mode == Mode.SPARSE:
        if not isinstance(weight, nmfmt.NMCompressed):
            raise ValueError("a sparse GEMM needs an NMCompressed weight (nm.compress)")
        if (weight.n, weight.m) != (cfg.n, cfg.m):
            raise ValueError(f"weight is {weight.n}:{weight.m} but the STA config is "
                             f"{cfg.n}:{cfg.m} (StaConfig n, m)")
        rows_words = nmfmt.pack_words(weight, cfg)
        features = weight.rows
        pad_row = nmfmt.pack_words(nmfmt.compress(np.zeros((1, weight.cols), np.int64),
                                                  cfg.n, cfg.m), cfg)[0]
    else:
        w = as_int64(weight, "weight")
        if w.ndim != 2:
            raise ValueError(f"a dense weight must be 2-D (features, K), not shape {w.shape}")
        rows_words = nmfmt.pack_dense_words(w, cfg)
        features = w.shape[0]
        pad_row = np.zeros(rows_words.shape[1], dtype=object)
    k_steps = rows_words.shape[1]
    m_tiles = -(-features // R)
    if rows_words.dtype == np.uint64:
        return _join_rows(rows_words, pad_row, R, WW, m_tiles), m_tiles, k_steps
    entries = []
    for rt in range(m_tiles):
        for s in range(k_steps):
            word = 0
            for r in range(R):
                f = rt * R + r
                part = int(rows_words[f, s]) if f < features else int(pad_row[s])
                word |= part << (r * WW)
            entries.append(word)
    return np.array(entries, dtype=object), m_tiles, k_steps


def _join_rows(rows_words: np.ndarray, pad_row: np.ndarray, R: int, WW: int,
               m_tiles: int) -> np.ndarray:
    """:func:`pack_weight_entries` for row words that fit uint64 (``WW <= 64``): row ``r`` of
    tile ``rt`` at bits ``[r*WW, (r+1)*WW)`` of entry ``rt*k_steps + s``, through bit
    arrays (one Python int per entry instead of one per row)."""
    features, k_steps = rows_words.shape
    rows = np.empty((m_tiles * R, k_steps), dtype=np.uint64)
    rows[:features] = rows_words
    rows[features:] = np.asarray(pad_row, dtype=np.uint64)
    # (m_tiles, k_steps, R) words -> their low WW bits, little-endian, row after row
    words = rows.reshape(m_tiles, R, k_steps).transpose(0, 2, 1).astype("<u8")
    bits = np.unpackbits(np.ascontiguousarray(words).view(np.uint8)
                         .reshape(m_tiles, k_steps, R, 8), axis=-1, bitorder="little")
    bits = bits[..., :WW].reshape(m_tiles * k_steps, R * WW)
    packed = np.packbits(bits, axis=-1, bitorder="little")
    return np.array([int.from_bytes(b, "little") for b in packed], dtype=object)


def pack_activation_entries(x, cfg: StaConfig, mode: int, k_steps: int
                            ) -> tuple[np.ndarray, int, int]:
    """ABUF entries for activations ``x (tokens, K)``: ``(entries, n_tiles, a_stride)``.

    Column ``c`` of entry ``ct*a_stride + q`` holds token ``ct*C + c``'s window ``q``:
    sparse: activations ``[q*W, (q+1)*W)``; dense: ``m//n`` slices of ``L`` activations,
    slice ``j`` = activations ``[(q*r + j)*L, ... + L)``. Missing tokens/activations are 0.
    """
    x = as_int64(x, "x")
    if x.ndim != 2:
        raise ValueError(f"activations must be 2-D (tokens, K), not shape {x.shape}")
    C, L, W, ab = cfg.cols, cfg.lanes, cfg.acts_per_cycle, cfg.act_bits
    ratio = sta_isa.dense_ratio(cfg)
    stride = sta_isa.a_stride(cfg, mode, k_steps)
    tokens, K = x.shape
    n_tiles = -(-tokens // C)
    if mode == Mode.SPARSE:
        span = stride * W
        xp = np.zeros((n_tiles * C, span), dtype=np.int64)
        xp[:tokens, :min(K, span)] = x[:, :span]
        windows = xp.reshape(n_tiles * C, stride, W)
    else:
        span = stride * ratio * L
        xp = np.zeros((n_tiles * C, span), dtype=np.int64)
        xp[:tokens, :min(K, span)] = x[:, :span]
        windows = np.zeros((n_tiles * C, stride, W), dtype=np.int64)
        windows[:, :, :ratio * L] = xp.reshape(n_tiles * C, stride, ratio * L)
    mask = (1 << ab) - 1
    entries = []
    for ct in range(n_tiles):
        for q in range(stride):
            word = 0
            for c in range(C):
                for j, v in enumerate(windows[ct * C + c, q]):
                    word |= (int(v) & mask) << ((c * W + j) * ab)
            entries.append(word)
    return np.array(entries, dtype=object), n_tiles, stride


# -- GEMM ------------------------------------------------------------------------------------------

@dataclass
class GemmSpec:
    """One integer GEMM ``Y = requant(X · Wᵀ + bias)`` in STA terms."""
    x: np.ndarray                      # (tokens, K) int8
    weight: np.ndarray | nmfmt.NMCompressed
    bias: np.ndarray | None = None  # (features,) int32
    mult: np.ndarray | None = None  # (features,) or scalar; default 1
    shift: np.ndarray | None = None
    osel: int = 0
    name: str = "Y"

    @property
    def mode(self) -> int:
        return Mode.SPARSE if isinstance(self.weight, nmfmt.NMCompressed) else Mode.DENSE

    @property
    def features(self) -> int:
        return self.weight.rows if self.mode == Mode.SPARSE else np.asarray(self.weight).shape[0]

    def params(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        F = self.features
        bias = np.zeros(F, np.int64) if self.bias is None else as_int64(self.bias, "bias")
        mult = np.broadcast_to(np.ones(F, np.int64) if self.mult is None
                               else as_int64(self.mult, "mult"), (F,))
        shift = np.broadcast_to(np.zeros(F, np.int64) if self.shift is None
                                else as_int64(self.shift, "shift"), (F,))
        if bias.shape != (F,):
            raise ValueError(f"bias must have shape ({F},), not {bias.shape}")
        return bias, mult, shift


def run_gemm_golden(spec: GemmSpec, cfg: StaConfig) -> np.ndarray:
    """The golden result of ``spec`` (exactly what the RTL must produce)."""
    bits = osel_bits(cfg, spec.osel)
    bias, mult, shift = spec.params()
    if spec.mode == Mode.SPARSE:
        acc = gemm_sparse(spec.x, spec.weight, bias, cfg)
    else:
        acc = gemm_dense(spec.x, spec.weight, bias, cfg)
    if spec.osel == 2:
        return acc
    return requant(acc, mult, shift, bits, mult_bits=cfg.requant_mult_bits)


def compile_gemm(spec: GemmSpec, cfg: StaConfig, program: StaProgram | None = None,
                 w_base: int = 0, a_base: int = 0, o_base: int = 0, p_base: int = 0,
                 golden: bool = True) -> StaProgram:
    """Add ``spec`` as one GEMM command (operands at the given buffer bases) to ``program``.

    Raises ``ValueError`` naming the buffer if the GEMM does not fit (use :func:`plan_gemm`).
    """
    program = program or StaProgram(cfg)
    x = as_int64(spec.x, "x")
    K = x.shape[1] if x.ndim == 2 else -1
    kw = spec.weight.cols if spec.mode == Mode.SPARSE else as_int64(spec.weight, "weight").shape[-1]
    if x.ndim != 2 or K != kw:
        raise ValueError(f"x must be (tokens, {kw}) for this weight, not shape {x.shape}")
    w_entries, m_tiles, k_steps = pack_weight_entries(spec.weight, cfg, spec.mode)
    a_entries, n_tiles, _ = pack_activation_entries(x, cfg, spec.mode, k_steps)
    bias, mult, shift = spec.params()
    cmd = GemmCommand(mode=spec.mode, m_tiles=m_tiles, n_tiles=n_tiles, k_steps=k_steps,
                      w_base=w_base, a_base=a_base, o_base=o_base, p_base=p_base, osel=spec.osel)
    cmd.check(cfg)
    if len(program.commands) >= cfg.cbuf_depth:
        raise ValueError(f"program has more than cbuf_depth={cfg.cbuf_depth} commands")
    for i, e in enumerate(w_entries):
        program.images["WBUF"][w_base + i] = int(e)
    for i, e in enumerate(a_entries):
        program.images["ABUF"][a_base + i] = int(e)
    F = spec.features
    for i in range(m_tiles * cfg.rows):
        if i < F:
            word = sta_isa.encode_params(cfg, int(bias[i]), int(mult[i]), int(shift[i]))
        else:
            word = 0
        program.images["PBUF"][p_base + i] = word
    program.commands.append(cmd.encode(cfg))
    program.outputs.append(OutputRegion(spec.name, o_base, m_tiles, n_tiles, F, x.shape[0],
                                        spec.osel))
    if golden:
        program.expected[spec.name] = run_gemm_golden(spec, cfg)
    dense_macs = x.shape[0] * F * K
    program.useful_macs += dense_macs
    program.executed_macs += dense_macs * cfg.n // cfg.m if spec.mode == Mode.SPARSE else dense_macs
    return program


def _slice_spec(spec: GemmSpec, f0: int, f1: int, t0: int, t1: int, name: str) -> GemmSpec:
    bias, mult, shift = spec.params()
    if spec.mode == Mode.SPARSE:
        w = spec.weight
        weight = nmfmt.NMCompressed(values=w.values[f0:f1], indices=w.indices[f0:f1],
                                    n=w.n, m=w.m, cols=w.cols)
    else:
        weight = as_int64(spec.weight, "weight")[f0:f1]
    return GemmSpec(as_int64(spec.x, "x")[t0:t1], weight, bias[f0:f1], mult[f0:f1],
                    shift[f0:f1], spec.osel, name)


def plan_gemm(spec: GemmSpec, cfg: StaConfig) -> tuple[list[StaProgram], callable]:
    """Split ``spec`` into programs that each fit the buffers.

    Returns ``(programs, combine)``: run each program, then ``combine(results)`` (a list of
    the per-program result dicts) gives the full ``(tokens, features)`` result.
    """
    x = as_int64(spec.x, "x")
    tokens, F = x.shape[0], spec.features
    R, C = cfg.rows, cfg.cols
    _, m_tiles, k_steps = pack_weight_entries(
        _slice_spec(spec, 0, min(F, R), 0, 1, "probe").weight, cfg, spec.mode)
    stride = sta_isa.a_stride(cfg, spec.mode, k_steps)
    max_mt = min(cfg.wbuf_depth // k_steps, cfg.pbuf_depth // R)
    max_nt = cfg.abuf_depth // stride
    if max_mt < 1 or max_nt < 1:
        raise ValueError(f"one tile of this GEMM (k_steps={k_steps}) does not fit the buffers "
                         f"(wbuf_depth={cfg.wbuf_depth}, abuf_depth={cfg.abuf_depth})")
    mt_total, nt_total = -(-F // R), -(-tokens // C)
    # OBUF holds m_tiles * n_tiles * R entries.
    mt = min(max_mt, mt_total)
    nt = min(max_nt, nt_total, max(1, cfg.obuf_depth // (mt * R)))
    if mt * nt * R > cfg.obuf_depth:
        mt = max(1, cfg.obuf_depth // (nt * R))
    programs, pieces = [], []
    for f0 in range(0, F, mt * R):
        f1 = min(F, f0 + mt * R)
        for t0 in range(0, tokens, nt * C):
            t1 = min(tokens, t0 + nt * C)
            name = f"{spec.name}[{t0}:{t1},{f0}:{f1}]"
            programs.append(compile_gemm(_slice_spec(spec, f0, f1, t0, t1, name), cfg))
            pieces.append((name, t0, t1, f0, f1))

    def combine(results: list[dict]) -> np.ndarray:
        out = np.zeros((tokens, F), dtype=np.int64)
        for (name, t0, t1, f0, f1), res in zip(pieces, results):
            out[t0:t1, f0:f1] = res[name]
        return out

    return programs, combine
