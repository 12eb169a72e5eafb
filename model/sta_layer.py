"""Compiler: one integer encoder layer → STA programs that run it entirely on chip.

:func:`compile_layer` lowers an :class:`~nmaccel.model.encoder_int.IntEncoderLayer` and its
``vec_bits`` input ``x (seq, d)`` into a :class:`LayerProgram`: a list of
:class:`~nmaccel.model.sta_program.StaProgram` *segments* run one after another on the same
core. Intermediates (x8, Q, K, Vᵀ, scores, probabilities, context, residuals, LayerNorm and
GELU outputs) never leave the chip: ABUF, VBUF, SCBUF and SBUF keep their contents between
segments. The host only loads the input once, streams each segment's weights and parameters
(the whole layer's weights do not fit WBUF: 2:4 MiniLM needs ~28k words) and reads the output.

Command stream (the order of :class:`~nmaccel.model.encoder_int.IntEncoderLayer.forward`)::

    REQUANT   x (VBUF) → x8 (ABUF)
    GEMM ×3   Q, K → ABUF (dense windows);  V → ABUF transposed (Vᵀ: dims × keys)
    per head h, query tile i (pipelined: QK(i+1) is issued before PV(i)):
      GEMM    QK: W = Q rows of tile i (from ABUF), A = K_h  → softmax → SBUF block i % 2
      GEMM    PV: W = Vᵀ_h (ABUF), A = P (SBUF, unsigned)    → ctx (ABUF)   wait_sm
    GEMM      O  + residual add with x (VBUF, in place)       → r1 (VBUF)
    LAYERNORM r1 → h1 (VBUF, in place) + h8 (ABUF)
    GEMM      FFN1 + GELU                                     → g (ABUF)
    GEMM      FFN2 + residual add with h1                     → r2 (VBUF, in place)
    LAYERNORM r2 → out (VBUF, in place)

Linear GEMMs are split into feature chunks that fit WBUF/PBUF; a new segment starts whenever
the next command's weights or parameters do not fit, or CBUF is full. The same program
runs on the golden model (:meth:`LayerProgram.expected`) and on RTL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from nmaccel.model import nm as nmfmt
from nmaccel.model.encoder_int import IntEncoderLayer
from nmaccel.model.quant import as_int64
from nmaccel.model.sta_program import (
    StaProgram,
    VectorRegion,
    pack_vector_entries,
    pack_weight_entries,
)
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig
from nmaccel.spec.sta_isa import (
    ASrc,
    Dest,
    FetchCommand,
    GemmCommand,
    Mode,
    Opcode,
    Osel,
    Post,
    VectorCommand,
    WSrc,
)

__all__ = ["LayerProgram", "compile_layer", "layer_fit_problem", "command_class",
           "COMMAND_CLASSES"]

#: The classes the reports break a layer's per-command cycles into (:func:`command_class`).
COMMAND_CLASSES = ("linear_gemm", "attention_gemm", "vector_cmd", "fetch_cmd")


def command_class(cmd) -> str | None:
    """``linear_gemm`` (W from WBUF: the Q/K/V/O/FFN projections, sparse or dense mode),
    ``attention_gemm`` (W from ABUF: Q·Kᵀ and P·V), ``vector_cmd`` (LAYERNORM/REQUANT),
    ``fetch_cmd`` (FETCH: the controller's own cycles, not the transfer), or ``None`` for a
    NOP."""
    if cmd is None:
        return None
    if isinstance(cmd, VectorCommand):
        return "vector_cmd"
    if isinstance(cmd, FetchCommand):
        return "fetch_cmd"
    return "attention_gemm" if cmd.wsrc == WSrc.ABUF else "linear_gemm"


@dataclass
class _Op:
    cmd: object
    w_entries: list
    p_entries: list
    name: str
    shared: str = ""          # parameters identical across commands: placed once per segment
    macs: int = 0             # useful dense-equivalent MACs (padding excluded)


@dataclass
class LayerProgram:
    """Segments of one encoder layer, where its output lies and what it must equal."""
    cfg: StaConfig
    seq: int
    segments: list
    out_region: VectorRegion
    expected: np.ndarray
    trace: dict
    names: list = field(default_factory=list)       # per segment: command names
    regions: dict = field(default_factory=dict)      # ABUF plan {name: (base, stride)}
    #: external-memory words ``[ext_base, ext_end)`` that hold the layer's weights and
    #: parameters (empty range without external memory)
    ext_base: int = 0
    ext_end: int = 0

    def commands(self) -> list:
        return [sta_isa.command_from_word(self.cfg, w) for p in self.segments for w in p.commands]

    @property
    def useful_macs(self) -> int:
        return sum(p.useful_macs for p in self.segments)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def layer_fit_problem(model_cfg, cfg: StaConfig, seq: int, nm=None) -> Optional[str]:
    """Why an encoder layer of ``model_cfg`` (``nm``-pruned or dense) with ``seq`` tokens cannot
    be compiled for ``cfg``, or ``None`` when it can as far as shapes go (buffer capacity is
    checked while compiling). Used by :func:`compile_layer` and by sweeps to skip points."""
    if not 1 <= seq <= cfg.max_seq:
        return (f"sequence length {seq} exceeds the configured maximum max_seq="
                f"{cfg.max_seq} (StaConfig max_seq)" if seq > cfg.max_seq else
                "sequence length must be at least 1")
    why = sta_isa.attention_supported(cfg)
    if why:
        return why
    hd = model_cfg.head_dim
    for what, unit in (("rows", cfg.rows), ("dense window", cfg.dense_window),
                       ("lanes", cfg.lanes)):
        if hd % unit:
            return (f"head dim {hd} does not fit this array: it must be a multiple of "
                    f"the {what} ({unit})")
    w = sta_isa.window(cfg, Mode.SPARSE if nm else Mode.DENSE)
    for name, dim in (("d_model", model_cfg.d_model), ("ffn_dim", model_cfg.d_ff)):
        if dim % w or dim % cfg.rows:
            return (f"{name}={dim} must be a multiple of the activation window ({w}) "
                    f"and of rows ({cfg.rows})")
    if nm and tuple(nm) != (cfg.n, cfg.m):
        return (f"layer is pruned {nm[0]}:{nm[1]} but the STA config is {cfg.n}:{cfg.m} "
                "(StaConfig n, m)")
    return None


def _check_layer(layer: IntEncoderLayer, x: np.ndarray, cfg: StaConfig) -> None:
    mc = layer.model_cfg
    if x.ndim != 2 or x.shape[1] != mc.d_model:
        raise ValueError(f"layer input must be (tokens, {mc.d_model}), not {x.shape}")
    why = layer_fit_problem(mc, cfg, x.shape[0], layer.linears["q"].nm)
    if why:
        raise ValueError(why)


def compile_layer(layer: IntEncoderLayer, x, cfg: Optional[StaConfig] = None,
                  ext_base: int = 0) -> LayerProgram:
    """Lower ``layer`` with input ``x`` (``vec_bits`` integers, ``(seq, d)``) to STA segments.

    With external memory (``cfg.sdram_mhz``) the weights and parameters are laid out in the
    SDRAM from word ``ext_base`` and fetched by the program itself (:func:`_ext_segments`);
    otherwise the host loads them per segment."""
    cfg = cfg or layer.cfg
    x = as_int64(x, "x")
    _check_layer(layer, x, cfg)
    mc = layer.model_cfg
    seq, d, hd, heads, ffn = x.shape[0], mc.d_model, mc.head_dim, mc.heads, mc.d_ff
    R, C, L = cfg.rows, cfg.cols, cfg.lanes
    lin_mode = Mode.SPARSE if layer.linears["q"].nm else Mode.DENSE
    Wl, Wd = sta_isa.window(cfg, lin_mode), cfg.dense_window
    NT = _ceil(seq, C)

    # -- ABUF plan --------------------------------------------------------------------------
    regions, top = {}, 0

    def alloc(name, stride, tiles):
        nonlocal top
        regions[name] = (top, stride)
        top += stride * tiles
        if top > cfg.abuf_depth:
            raise ValueError(f"sequence length {seq} needs more than abuf_depth={cfg.abuf_depth} "
                             f"ABUF words for the layer's activations (StaConfig abuf_depth)")

    alloc("x8", d // Wl, NT)
    alloc("q", d // Wd, NT)
    alloc("k", d // Wd, NT)
    alloc("vt", _ceil(NT * C, Wd), d // C)
    alloc("ctx", d // Wl, NT)
    # The FFN half reuses the attention half's words: x8 is dead once V is projected, q, k, vᵀ
    # and ctx once the O projection has run (LayerNorm 1, which writes h8, waits for its drain).
    top = 0
    alloc("h8", d // Wl, NT)            # over x8 (same shape)
    alloc("g", ffn // Wl, NT)           # over q, k, vᵀ, ctx and beyond if it needs more
    if NT * d > cfg.vbuf_depth:
        raise ValueError(f"sequence length {seq} needs {NT * d} VBUF words but vbuf_depth="
                         f"{cfg.vbuf_depth} (StaConfig vbuf_depth)")
    sblock = cfg.sbuf_depth // 2
    # WBUF/PBUF room of one segment: with external memory, half of each (double-buffered)
    ext = cfg.sdram_timing is not None
    wcap, pcap = (cfg.wbuf_depth // 2, cfg.pbuf_depth // 2) if ext else \
        (cfg.wbuf_depth, cfg.pbuf_depth)

    ops: list[_Op] = []

    def params(bias, mult, shift, rows):
        out = [sta_isa.encode_params(cfg, int(bias[i]), int(mult[i]), int(shift[i]))
               for i in range(len(bias))]
        return out + [0] * (rows - len(out))

    def linear(name, ql, a_region, dest, out_region=None, post=Post.NONE, post_words=(),
               osel=Osel.ACT, barrier=0, olay=0):
        F, K = ql.w.shape
        weight = ql.compressed if ql.compressed is not None else ql.w
        _, _, k_steps = pack_weight_entries(_rows(weight, 0, R), cfg, lin_mode)
        unit = math.lcm(R, Wl if dest == Dest.ABUF else C if dest == Dest.ABUF_T else 1)
        max_rows = min(wcap // k_steps * R, pcap - len(post_words))
        chunk = max(unit, max_rows // unit * unit)
        if chunk > max_rows:
            raise ValueError(f"one {unit}-feature chunk of {name} does not fit WBUF/PBUF")
        a_base, a_stride = regions[a_region]
        for f0 in range(0, F, chunk):
            f1 = min(F, f0 + chunk)
            w_entries, m_tiles, ks = pack_weight_entries(_rows(weight, f0, f1), cfg, lin_mode)
            if dest == Dest.VBUF:
                o_base, o_stride = f0, d
            elif dest == Dest.ABUF_T:           # feature (dim) tile f0 // C is the "token" tile
                base, o_stride = regions[out_region]
                o_base = base + (f0 // C) * o_stride
            else:
                base, o_stride = regions[out_region]
                o_base = base + f0 // Wl
            cmd = GemmCommand(mode=lin_mode, m_tiles=m_tiles, n_tiles=NT, k_steps=ks,
                              a_base=a_base, a_stride=a_stride, o_base=o_base, o_stride=o_stride,
                              osel=osel, dest=dest, post=post, olay=olay,
                              barrier=barrier if f0 == 0 else 0)
            p = params(ql.bias[f0:f1], ql.mult[f0:f1], ql.shift[f0:f1], m_tiles * R)
            ops.append(_Op(cmd, list(w_entries), p + list(post_words), f"{name}[{f0}:{f1}]",
                           macs=seq * (f1 - f0) * K))

    # 1. x8
    ops.append(_Op(VectorCommand(op=Opcode.REQUANT, n_tiles=NT, length=d, a_base=0, a_stride=d,
                                 o_base=regions["x8"][0], o_stride=regions["x8"][1],
                                 dest=Dest.ABUF, olay=lin_mode),
                   [], [sta_isa.encode_params(cfg, 0, layer.x8_mult, layer.x8_shift)], "x8"))
    # 2. Q, K, Vᵀ
    lin = layer.linears
    linear("q", lin["q"], "x8", Dest.ABUF, "q", olay=Mode.DENSE)
    linear("k", lin["k"], "x8", Dest.ABUF, "k", olay=Mode.DENSE)
    linear("v", lin["v"], "x8", Dest.ABUF_T, "vt", olay=Mode.DENSE)
    # 3. attention, software-pipelined over (head, query tile)
    score_p = [sta_isa.encode_params(cfg, 0, layer.score_mult, layer.score_shift)] * R
    pv_p = [sta_isa.encode_params(cfg, 0, layer.pv_mult, layer.pv_shift)] * hd
    q_base, q_stride = regions["q"]
    k_base, k_stride = regions["k"]
    ctx_base, ctx_stride = regions["ctx"]
    vt_base, vt_stride = regions["vt"]
    blocks = [(h, i) for h in range(heads) for i in range(NT)]

    def qk(j):
        h, i = blocks[j]
        cmd = GemmCommand(mode=Mode.DENSE, m_tiles=1, n_tiles=NT, k_steps=hd // L,
                          wsrc=WSrc.ABUF, w_base=q_base + i * q_stride + h * hd // Wd, w_stride=0,
                          a_base=k_base + h * hd // Wd, a_stride=k_stride,
                          o_base=(j % 2) * sblock, dest=Dest.SOFTMAX, length=seq,
                          osel=Osel.SCORE, barrier=1 if j == 0 else 0)
        return _Op(cmd, [], list(score_p), f"qk h{h} t{i}", shared="score",
                   macs=min(C, seq - i * C) * seq * hd)

    def pv(j):
        h, i = blocks[j]
        cmd = GemmCommand(mode=Mode.DENSE, m_tiles=hd // R, n_tiles=1, k_steps=_ceil(seq, L),
                          wsrc=WSrc.ABUF, w_base=vt_base + (h * hd // C) * vt_stride,
                          w_stride=vt_stride, asrc=ASrc.SBUF, a_base=(j % 2) * sblock, a_stride=0,
                          o_base=ctx_base + i * ctx_stride + h * hd // Wl, o_stride=ctx_stride,
                          dest=Dest.ABUF, olay=lin_mode, osel=Osel.ACT,
                          wait_sm=2 if j + 1 < len(blocks) else 1)
        return _Op(cmd, [], list(pv_p), f"pv h{h} t{i}", shared="pv",
                   macs=min(C, seq - i * C) * seq * hd)

    ops.append(qk(0))
    for j in range(len(blocks)):
        if j + 1 < len(blocks):
            ops.append(qk(j + 1))
        ops.append(pv(j))
    # 4. O + residual, LayerNorm 1
    add1 = layer.add1
    linear("o", lin["o"], "ctx", Dest.VBUF, post=Post.ADD, osel=Osel.VEC, barrier=1,
           post_words=[sta_isa.encode_add_params(cfg, add1.mult_a, add1.mult_b, add1.shift)])
    ops.append(_layernorm(cfg, layer.ln1, NT, d, regions["h8"], lin_mode,
                          (layer.h8_mult, layer.h8_shift), "ln1"))
    # 5. FFN1 + GELU, FFN2 + residual, LayerNorm 2
    g = layer.gelu
    linear("ffn1", lin["ffn1"], "h8", Dest.ABUF, "g", post=Post.GELU, osel=Osel.VEC,
           olay=lin_mode, post_words=sta_isa.encode_gelu_params(cfg, g.clip, g.cp, g.mult, g.shift,
                                                                 g.zero))
    add2 = layer.add2
    linear("ffn2", lin["ffn2"], "g", Dest.VBUF, post=Post.ADD, osel=Osel.VEC, barrier=1,
           post_words=[sta_isa.encode_add_params(cfg, add2.mult_a, add2.mult_b, add2.shift)])
    ops.append(_layernorm(cfg, layer.ln2, NT, d, None, lin_mode, None, "ln2"))

    trace: dict = {}
    expected = layer.forward(x, trace=trace)
    out_region = VectorRegion("out", 0, NT, d, d, seq)
    if ext:
        segments, names, ext_end = _ext_segments(cfg, ops, ext_base)
        segments[0].images["VBUF"] = pack_vector_entries(x, cfg, 0, d)
        segments[-1].outputs.append(out_region)
        segments[-1].expected["out"] = expected
        return LayerProgram(cfg, seq, segments, out_region, expected, trace, names, regions,
                            ext_base, ext_end)

    # -- segments ----------------------------------------------------------------------------
    segments, names = [], []
    cur, cur_names, wtop, ptop, placed = None, None, 0, 0, {}
    for op in ops:
        nw, np_ = len(op.w_entries), len(op.p_entries)
        if op.shared and cur is not None and op.shared in placed:
            np_ = 0
        if nw > cfg.wbuf_depth or np_ > cfg.pbuf_depth:
            raise ValueError(f"command {op.name} alone does not fit WBUF/PBUF")
        if cur is None or wtop + nw > cfg.wbuf_depth or ptop + np_ > cfg.pbuf_depth \
                or len(cur.commands) >= cfg.cbuf_depth:
            cur, cur_names, wtop, ptop, placed = StaProgram(cfg), [], 0, 0, {}
            segments.append(cur)
            names.append(cur_names)
            np_ = len(op.p_entries)
        cmd = op.cmd
        p_base = placed[op.shared] if op.shared and op.shared in placed else ptop
        if op.shared and op.shared not in placed:
            placed[op.shared] = ptop
        if isinstance(cmd, GemmCommand):
            cmd = replace(cmd, p_base=p_base, w_base=cmd.w_base if cmd.wsrc == WSrc.ABUF else wtop)
            cur.useful_macs += op.macs
            cur.executed_macs += op.macs * cfg.n // cfg.m if cmd.mode == Mode.SPARSE else op.macs
        else:
            cmd = replace(cmd, p_base=ptop)
        cmd.check(cfg)
        for i, e in enumerate(op.w_entries):
            cur.images["WBUF"][wtop + i] = int(e)
        for i, e in enumerate(op.p_entries[:np_]):
            cur.images["PBUF"][ptop + i] = int(e)
        wtop += nw
        ptop += np_
        cur.commands.append(cmd.encode(cfg))
        cur_names.append(op.name)
    segments[0].images["VBUF"] = pack_vector_entries(x, cfg, 0, d)
    segments[-1].outputs.append(out_region)
    segments[-1].expected["out"] = expected
    return LayerProgram(cfg, seq, segments, out_region, expected, trace, names, regions)


def _ext_segments(cfg: StaConfig, ops: list, ext_base: int) -> tuple[list, list, int]:
    """Segments of ``ops`` with weights and parameters fetched from external memory.

    WBUF and PBUF are split into two halves. The ops are grouped into *fills* whose weight
    and parameter entries fit one half (parameters shared by attention commands placed once
    per fill); fill ``i`` lives in half ``i % 2`` and at its own place in the SDRAM (its
    WBUF entries, then its PBUF entries, :func:`~nmaccel.spec.sta_isa.ext_words_per_entry`
    words each, from ``ext_base`` on). The command stream::

        FETCH f0;  FETCH f1;  commands of f0;  FETCH f2 (barrier);  commands of f1;  ...
        FETCH (nothing: waits for the last fill);  commands of the last fill

    A FETCH waits until the engine has brought the fill before it, so the commands after it
    find their fill complete; fill ``i + 2`` is fetched while fill ``i + 1`` computes, with a
    barrier so that it overwrites fill ``i``'s half only when its GEMMs have drained (their
    parameters are read in the drain). The stream is cut into runs of at most ``cbuf_depth``
    commands; a run ends when its fetch is complete, so the next run finds it in place.
    Returns ``(segments, names, ext_end)``."""
    from nmaccel.spec.sdram import pack_entries
    t = cfg.sdram_timing
    half = {"WBUF": cfg.wbuf_depth // 2, "PBUF": cfg.pbuf_depth // 2}
    # 1. fills: (ops with their offsets in the half, WBUF entries, PBUF entries)
    fills = []
    cur = None
    for op in ops:
        nw, np_ = len(op.w_entries), len(op.p_entries)
        if nw > half["WBUF"] or np_ > half["PBUF"]:
            raise ValueError(f"command {op.name} alone does not fit half of WBUF/PBUF "
                             f"({half['WBUF']}/{half['PBUF']} entries: the fetch double-buffers)")
        shared = cur is not None and op.shared and op.shared in cur["placed"]
        if cur is None or len(cur["w"]) + nw > half["WBUF"] \
                or len(cur["p"]) + (0 if shared else np_) > half["PBUF"]:
            cur = {"ops": [], "w": [], "p": [], "placed": {}}
            fills.append(cur)
            shared = False
        p_off = cur["placed"][op.shared] if shared else len(cur["p"])
        if op.shared and not shared:
            cur["placed"][op.shared] = p_off
        cur["ops"].append((op, len(cur["w"]), p_off))
        cur["w"] += [int(e) for e in op.w_entries]
        if not shared:
            cur["p"] += [int(e) for e in op.p_entries]
    # 2. the SDRAM image and one FETCH per fill
    image, addr, fetches = {}, ext_base, []
    for i, fill in enumerate(fills):
        words = pack_entries(t, sta_isa.space_width(cfg, "WBUF"), fill["w"]) \
            + pack_entries(t, sta_isa.space_width(cfg, "PBUF"), fill["p"])
        image.update(zip(range(addr, addr + len(words)), words))
        h = i % 2
        fetches.append(FetchCommand(ext_addr=addr, w_base=h * half["WBUF"], wlen=len(fill["w"]),
                                    p_base=h * half["PBUF"], plen=len(fill["p"]),
                                    barrier=int(i >= 2)))
        addr += len(words)
    # 3. the command stream: (command, name, op or None)
    stream = [(fetches[0], "fetch 0", None)]
    for i, fill in enumerate(fills):
        if i + 1 < len(fills):
            stream.append((fetches[i + 1], f"fetch {i + 1}", None))
        else:
            stream.append((FetchCommand(ext_addr=0), "fetch wait", None))
        h = i % 2
        for op, w_off, p_off in fill["ops"]:
            cmd = op.cmd
            p_base = h * half["PBUF"] + p_off
            if isinstance(cmd, GemmCommand):
                w_base = cmd.w_base if cmd.wsrc == WSrc.ABUF else h * half["WBUF"] + w_off
                cmd = replace(cmd, p_base=p_base, w_base=w_base)
            else:
                cmd = replace(cmd, p_base=p_base)
            stream.append((cmd, op.name, op))
    # 4. runs of at most cbuf_depth commands
    segments, names = [], []
    for start in range(0, len(stream), cfg.cbuf_depth):
        seg, seg_names = StaProgram(cfg), []
        for cmd, name, op in stream[start:start + cfg.cbuf_depth]:
            cmd.check(cfg)
            seg.commands.append(cmd.encode(cfg))
            seg_names.append(name)
            if op is not None and isinstance(cmd, GemmCommand):
                seg.useful_macs += op.macs
                seg.executed_macs += op.macs * cfg.n // cfg.m if cmd.mode == Mode.SPARSE \
                    else op.macs
        segments.append(seg)
        names.append(seg_names)
    segments[0].ext_image = image
    return segments, names, addr



def _rows(weight, f0: int, f1: int):
    if isinstance(weight, nmfmt.NMCompressed):
        return nmfmt.NMCompressed(values=weight.values[f0:f1], indices=weight.indices[f0:f1],
                                  n=weight.n, m=weight.m, cols=weight.cols)
    return np.asarray(weight)[f0:f1]


def _layernorm(cfg, p, NT, d, h8_region, olay, copy, name) -> _Op:
    words = [sta_isa.encode_ln_params(cfg, p.gamma[i], p.beta[i]) for i in range(d)]
    words.append(sta_isa.encode_params(cfg, 0, p.mult, p.shift))
    m8, s8 = copy if copy else (0, 0)
    words.append(sta_isa.encode_params(cfg, 0, m8, s8))
    o_base, o_stride = h8_region if h8_region else (0, 0)
    cmd = VectorCommand(op=Opcode.LAYERNORM, n_tiles=NT, length=d, a_base=0, a_stride=d,
                        o_base=o_base, o_stride=o_stride,
                        dest=Dest.ABUF if h8_region else Dest.OBUF, olay=olay)
    return _Op(cmd, [], words, name)
