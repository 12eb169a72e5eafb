"""Bit-exact integer reference of the conv engine, its memory formats and cycle prediction.

One :class:`ConvLayerJob` is one layer run on :class:`nmaccel.hw.conv.engine.ConvEngine`.
Given input codes ``x`` (C_in, H, W) the engine computes, per output channel o and output
position, four counters ``S`` over the k×k×C_in window (padding ``p`` ∈ {0, (k-1)/2}):

``adder``   S0 = Σ |a − 2w| over every tap; a padded tap is the level a = 0 (AdderNet),
            a unsigned n-bit, w signed n-bit, n ∈ {4, 6, 8};  S1 = S2 = S3 = 0
``mul``     S0 = Σ a·w (int8 × int8; padded taps contribute 0);  S1 = S2 = S3 = 0
``binary``  over VALID taps only (padding masked): S0 = X = popcount(XNOR(p, q)),
            S1 = P_a = popcount(p), S2 = N = number of valid taps, S3 = P_w = popcount(q)
            (a, w ∈ {0, 1}; AdaBin's y = A X + B P_a + Cn N + Cp P_w)

then the per-channel affine post-processing and the output rule::

    v_o = Σ_j coef[o, j] · S_j + bias[o]                          (signed, bias_bits wide)
    q_o = requant(v_o, mult[o], shift[o], out_bits, out_signed)   ("requant": model/quant.py)
    q_o = [v_o > 0]                                                ("binarize")

Engine formats (the RTL builds its layouts from these same functions):

* input stream: one beat per (y, x, input tile), row-major, tiles innermost; a beat holds
  ``p_in`` lanes of ``data_bits`` (two's complement), lanes past C_in are 0;
* weight memory: word ``((ot·k + ky)·k + kx)·IT + it`` holds ``p_out × p_in`` weights,
  lane (o, i) at bits ``(o·p_in + i)·data_bits``;
* parameter memory: word ``ot·G + g`` holds the ``L`` lanes ``g·L .. g·L + L − 1`` of
  output tile ``ot`` (fields of :func:`param_fields`), with ``L = cfg.out_lanes`` and
  ``G = cfg.post_cycles = p_out / L`` (``L = p_out``, ``G = 1``: word ``ot`` holds the tile);
* output stream: one beat per (oy, ox, output tile, lane group g) with ``L`` lanes of ``q``
  (8 bits) and ``v`` (``bias_bits``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nmaccel.spec.config import CONV_ADDER_BITS, CONV_KERNELS, CONV_STRIDES, ConvConfig
from nmaccel.spec.conv_format import COUNTERS, Mode, param_fields, settings_fields

__all__ = ["Mode", "ConvLayerJob", "run_job", "param_fields", "pack_inputs", "input_beats",
           "output_beats", "pack_weights", "pack_params", "unpack_outputs", "layer_settings",
           "settings_fields",
           "get_exp_cycles", "check_job_fits", "random_job", "im2col_input", "im2col_job",
           "layer_input", "INPUT_TRANSFORMS", "out_shape", "COUNTERS", "job_macs"]


_MODE_NAMES = {"adder": Mode.ADDER, "binary": Mode.BINARY, "mul": Mode.MUL}
_OUT_MODES = ("requant", "binarize")


def _int_array(x, name):
    a = np.asarray(x)
    if a.dtype == object:
        a = a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.integer) and a.dtype != np.bool_:
        raise ValueError(f"{name} must hold integers, not {a.dtype}")
    return a.astype(np.int64)


def out_shape(height: int, width: int, k: int, stride: int, padding: int) -> tuple[int, int]:
    return ((height + 2 * padding - k) // stride + 1, (width + 2 * padding - k) // stride + 1)


@dataclass(frozen=True, eq=False)
class ConvLayerJob:
    """One engine layer (see the module docstring). ``weight`` is (C_out, C_in, k, k):
    adder n-bit signed, mul int8, binary 0/1; ``coef`` (C_out, 4) and ``bias``, ``mult``,
    ``shift`` (C_out,) are integers. Validated on construction (errors name the field)."""
    mode: str
    weight: np.ndarray
    height: int
    width: int
    coef: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    stride: int = 1
    padding: int = 0
    bits: int = 8
    out: str = "requant"
    out_bits: int = 8
    out_signed: bool = True
    name: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in _MODE_NAMES:
            raise ValueError(f"mode must be one of {tuple(_MODE_NAMES)}, not {self.mode!r}")
        w = _int_array(self.weight, "weight")
        if w.ndim != 4 or w.shape[2] != w.shape[3]:
            raise ValueError(f"weight must be 4-D (C_out, C_in, k, k), not of shape {w.shape}")
        k = w.shape[2]
        if k not in CONV_KERNELS:
            raise ValueError(f"kernel size must be one of {CONV_KERNELS}, not {k}")
        if self.stride not in CONV_STRIDES:
            raise ValueError(f"stride must be one of {CONV_STRIDES}, not {self.stride!r}")
        if self.padding not in (0, (k - 1) // 2):
            raise ValueError(f"padding must be 0 or {(k - 1) // 2} for k={k}, "
                             f"not {self.padding!r}")
        for name in ("height", "width"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if min(out_shape(self.height, self.width, k, self.stride, self.padding)) < 1:
            raise ValueError(f"kernel {k}x{k} larger than the padded {self.height}x{self.width} "
                             "input")
        if self.mode == "adder":
            if self.bits not in CONV_ADDER_BITS:
                raise ValueError(f"bits must be one of {CONV_ADDER_BITS} for adder layers, "
                                 f"not {self.bits!r}")
            lo, hi = -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        elif self.mode == "mul":
            if self.bits != 8:
                raise ValueError(f"bits must be 8 for mul layers, not {self.bits!r}")
            lo, hi = -128, 127
        else:
            if self.bits != 1:
                raise ValueError(f"bits must be 1 for binary layers, not {self.bits!r}")
            lo, hi = 0, 1
        if w.size and (w.min() < lo or w.max() > hi):
            raise ValueError(f"weight values must be in [{lo}, {hi}] for a {self.mode} layer "
                             f"with bits={self.bits}, got {w.min()}..{w.max()}")
        cout = w.shape[0]
        coef = _int_array(self.coef, "coef")
        if coef.shape != (cout, COUNTERS):
            raise ValueError(f"coef must have shape ({cout}, {COUNTERS}), not {coef.shape}")
        arrs = {}
        for name in ("bias", "mult", "shift"):
            a = _int_array(getattr(self, name), name).reshape(-1)
            if a.size == 1:
                a = np.repeat(a, cout)
            if a.shape != (cout,):
                raise ValueError(f"{name} must have {cout} entries (one per output channel), "
                                 f"got {a.size}")
            arrs[name] = a
        if (arrs["mult"] < 0).any() or (arrs["shift"] < 0).any() or (arrs["shift"] > 62).any():
            raise ValueError("mult must be >= 0 and shift in [0, 62]")
        if self.out not in _OUT_MODES:
            raise ValueError(f"out must be one of {_OUT_MODES}, not {self.out!r}")
        if not isinstance(self.out_bits, (int, np.integer)) or not 1 <= self.out_bits <= 8:
            raise ValueError(f"out_bits must be an integer in [1, 8], not {self.out_bits!r}")
        if self.out_signed and self.out_bits < 2:
            raise ValueError("out_bits must be >= 2 for signed outputs")
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "coef", coef)
        for name, a in arrs.items():
            object.__setattr__(self, name, a)

    # -- shape helpers
    @property
    def k(self) -> int:
        return self.weight.shape[2]

    @property
    def cin(self) -> int:
        return self.weight.shape[1]

    @property
    def cout(self) -> int:
        return self.weight.shape[0]

    @property
    def out_hw(self) -> tuple[int, int]:
        return out_shape(self.height, self.width, self.k, self.stride, self.padding)

    def act_range(self) -> tuple[int, int]:
        """Valid input codes of this layer."""
        if self.mode == "adder":
            return 0, (1 << self.bits) - 1
        if self.mode == "mul":
            return -128, 127
        return 0, 1

    def check_input(self, x) -> np.ndarray:
        x = _int_array(x, "activation")
        if x.shape != (self.cin, self.height, self.width):
            raise ValueError(f"activation tensor must have shape (C_in, H, W) = "
                             f"{(self.cin, self.height, self.width)} for layer "
                             f"{self.name or self.mode!r}, not {x.shape}")
        lo, hi = self.act_range()
        if x.size and (x.min() < lo or x.max() > hi):
            raise ValueError(f"activation codes must be in [{lo}, {hi}] for a {self.mode} "
                             f"layer, got {x.min()}..{x.max()}")
        return x


def _windows(x: np.ndarray, k: int, stride: int, padding: int, fill=0):
    """(C, H, W) -> (C, k, k, Ho, Wo) and the validity mask (k, k, Ho, Wo)."""
    c, h, w = x.shape
    xp = np.full((c, h + 2 * padding, w + 2 * padding), fill, dtype=np.int64)
    xp[:, padding:padding + h, padding:padding + w] = x
    vm = np.zeros((h + 2 * padding, w + 2 * padding), dtype=np.int64)
    vm[padding:padding + h, padding:padding + w] = 1
    ho, wo = out_shape(h, w, k, stride, padding)
    win = np.empty((c, k, k, ho, wo), dtype=np.int64)
    val = np.empty((k, k, ho, wo), dtype=np.int64)
    for ky in range(k):
        for kx in range(k):
            win[:, ky, kx] = xp[:, ky:ky + stride * ho:stride, kx:kx + stride * wo:stride]
            val[ky, kx] = vm[ky:ky + stride * ho:stride, kx:kx + stride * wo:stride]
    return win, val


def counters(job: ConvLayerJob, x) -> np.ndarray:
    """S (4, C_out, Ho, Wo) int64 (see the module docstring)."""
    x = job.check_input(x)
    win, val = _windows(x, job.k, job.stride, job.padding)
    w = job.weight
    ho, wo = job.out_hw
    S = np.zeros((COUNTERS, job.cout, ho, wo), dtype=np.int64)
    if job.mode == "adder":
        S[0] = np.abs(win[None] - 2 * w[:, :, :, :, None, None]).sum((1, 2, 3))
    elif job.mode == "mul":
        S[0] = np.einsum("cyxhw,ocyx->ohw", win, w)
    else:
        xnor = (win[None] == w[:, :, :, :, None, None]).astype(np.int64) * val[None, None]
        S[0] = xnor.sum((1, 2, 3))
        S[1] = (win * val[None]).sum((0, 1, 2))[None]
        S[2] = (val.sum((0, 1)) * job.cin)[None]
        S[3] = np.einsum("ocyx,yxhw->ohw", w, val)
    return S


def run_job(job: ConvLayerJob, x, v_bits: int | None = None):
    """Integer reference of one engine layer: ``(v, q)`` each (C_out, Ho, Wo) int64.

    ``v_bits`` (the engine's ``bias_bits``): raise ``ValueError`` if ``v`` would not fit."""
    S = counters(job, x)
    v = np.einsum("oj,johw->ohw", job.coef, S) + job.bias[:, None, None]
    if v_bits is not None and v.size and (v.max() >= 1 << (v_bits - 1) or
                                          v.min() < -(1 << (v_bits - 1))):
        raise ValueError(f"affine value v of layer {job.name or job.mode!r} overflows "
                         f"{v_bits} bits ({v.min()}..{v.max()})")
    from .quant import requant  # imported here: the RTL bench needs no torch
    if job.out == "binarize":
        q = (v > 0).astype(np.int64)
    else:
        vt = np.moveaxis(v, 0, -1)
        q = np.moveaxis(requant(vt, job.mult, job.shift, job.out_bits, job.out_signed,
                                mult_bits=31), -1, 0)
    return v, q


INPUT_TRANSFORMS = ("direct", "flatten", "im2col")


def im2col_input(x, k: int, stride: int, padding: int) -> np.ndarray:
    """(C, H, W) -> (C·k·k, Ho, Wo): the k×k windows as channels (order c, ky, kx), zero
    padding included (host-side input expansion for a layer with few input channels)."""
    x = _int_array(x, "activation")
    if x.ndim != 3:
        raise ValueError(f"activation tensor must be 3-D (C, H, W), not of shape {x.shape}")
    win, _ = _windows(x, k, stride, padding)
    c, _, _, ho, wo = win.shape
    return win.reshape(c * k * k, ho, wo)


def im2col_job(job: ConvLayerJob) -> ConvLayerJob:
    """The equivalent 1×1 layer on :func:`im2col_input` of the input (adder and mul layers;
    a binary layer masks padding, which im2col would turn into real zeros)."""
    if job.mode == "binary":
        raise ValueError("im2col is not exact for binary layers (padded taps are masked)")
    ho, wo = job.out_hw
    w = job.weight.reshape(job.cout, -1, 1, 1)
    return ConvLayerJob(job.mode, w, ho, wo, job.coef, job.bias, job.mult, job.shift,
                        stride=1, padding=0, bits=job.bits, out=job.out,
                        out_bits=job.out_bits, out_signed=job.out_signed,
                        name=job.name + "/im2col",
                        extra={**job.extra, "im2col": (job.k, job.stride, job.padding)})


def layer_input(job: ConvLayerJob, x, how: str) -> np.ndarray:
    """The input codes ``job`` runs on, from the previous layer's output ``x`` (C, H, W):
    ``direct`` (as is), ``flatten`` (to (C·H·W, 1, 1), torch's flatten order) or
    ``im2col`` (:func:`im2col_input` with the geometry recorded by :func:`im2col_job`)."""
    x = np.asarray(x)
    if how == "direct":
        return x
    if how == "flatten":
        return x.reshape(-1, 1, 1)
    if how == "im2col":
        return im2col_input(x, *job.extra["im2col"])
    raise ValueError(f"input transform must be one of {INPUT_TRANSFORMS}, not {how!r}")


def job_macs(job: ConvLayerJob) -> int:
    """Useful PE operations of the layer (C_out · C_in · k² · Ho · Wo)."""
    ho, wo = job.out_hw
    return job.cout * job.cin * job.k * job.k * ho * wo


# ----------------------------------------------------------------------------- engine fit
def check_job_fits(job: ConvLayerJob, cfg: ConvConfig) -> None:
    """Raise ``ValueError`` naming the parameter if ``job`` does not fit engine ``cfg``."""
    if job.mode not in cfg.modes:
        raise ValueError(f"mode {job.mode!r} is not built into this engine (modes "
                         f"{cfg.modes})")
    for name, v, lim in (("C_in", job.cin, cfg.max_in_channels),
                         ("C_out", job.cout, cfg.max_out_channels),
                         ("width", job.width, cfg.max_width),
                         ("height", job.height, cfg.max_height)):
        if v > lim:
            raise ValueError(f"{name} of layer {job.name or job.mode!r} must be <= {lim} "
                             f"for this engine, not {v}")
    for name, a, bits in (("coef", job.coef, cfg.coef_bits), ("bias", job.bias, cfg.bias_bits)):
        if a.size and (a.max() >= 1 << (bits - 1) or a.min() < -(1 << (bits - 1))):
            raise ValueError(f"{name} of layer {job.name or job.mode!r} must fit {bits} signed "
                             f"bits, got {a.min()}..{a.max()}")
    if job.mult.max(initial=0) >= 1 << cfg.mult_bits:
        raise ValueError(f"mult must be below 2**{cfg.mult_bits}, got {job.mult.max()}")


def _pack(values, widths) -> int:
    word, pos = 0, 0
    for v, b in zip(values, widths):
        word |= (int(v) & ((1 << b) - 1)) << pos
        pos += b
    return word


def layer_settings(job: ConvLayerJob, cfg: ConvConfig) -> dict[str, int]:
    check_job_fits(job, cfg)
    return {"mode": int(_MODE_NAMES[job.mode]), "k3": int(job.k == 3),
            "stride2": int(job.stride == 2), "pad": int(job.padding > 0),
            "height": job.height, "width": job.width, "cin": job.cin,
            "in_tiles": -(-job.cin // cfg.p_in), "out_tiles": -(-job.cout // cfg.p_out),
            "binarize": int(job.out == "binarize"), "out_bits": job.out_bits,
            "out_signed": int(job.out_signed)}


def pack_settings(job: ConvLayerJob, cfg: ConvConfig) -> int:
    s = layer_settings(job, cfg)
    f = settings_fields(cfg)
    return _pack([s[n] for n, _ in f], [b for _, b in f])


def pack_inputs(job: ConvLayerJob, cfg: ConvConfig, x) -> list[int]:
    """Input stream beats (see the module docstring)."""
    x = job.check_input(x)
    it_n = -(-job.cin // cfg.p_in)
    xp = np.zeros((it_n * cfg.p_in, job.height, job.width), dtype=np.int64)
    xp[:job.cin] = x
    beats = []
    db = cfg.data_bits
    for y in range(job.height):
        for xx in range(job.width):
            for it in range(it_n):
                beats.append(_pack(xp[it * cfg.p_in:(it + 1) * cfg.p_in, y, xx],
                                   [db] * cfg.p_in))
    return beats


def pack_weights(job: ConvLayerJob, cfg: ConvConfig) -> list[int]:
    """Weight memory words, address order (ot, ky, kx, it)."""
    check_job_fits(job, cfg)
    po, pi, k = cfg.p_out, cfg.p_in, job.k
    ot_n, it_n = -(-job.cout // po), -(-job.cin // pi)
    w = np.zeros((ot_n * po, it_n * pi, k, k), dtype=np.int64)
    w[:job.cout, :job.cin] = job.weight
    words = []
    for ot in range(ot_n):
        for ky in range(k):
            for kx in range(k):
                for it in range(it_n):
                    blk = w[ot * po:(ot + 1) * po, it * pi:(it + 1) * pi, ky, kx]
                    words.append(_pack(blk.reshape(-1), [cfg.data_bits] * (po * pi)))
    return words


def pack_params(job: ConvLayerJob, cfg: ConvConfig) -> list[int]:
    """Parameter memory words: ``cfg.post_cycles`` per output tile, ``cfg.out_lanes`` lanes
    each (see the module docstring)."""
    check_job_fits(job, cfg)
    po, nl = cfg.p_out, cfg.out_lanes
    ot_n = -(-job.cout // po)
    fl = param_fields(cfg)
    words = []
    for ot in range(ot_n):
        for g in range(cfg.post_cycles):
            lanes = []
            for lane in range(nl):
                o = ot * po + g * nl + lane
                if o < job.cout:
                    vals = list(job.coef[o]) + [job.bias[o], job.mult[o], job.shift[o]]
                else:
                    vals = [0] * len(fl)
                lanes.append(_pack(vals, [b for _, b, _ in fl]))
            words.append(_pack(lanes, [sum(b for _, b, _ in fl)] * nl))
    return words


def output_beats(job: ConvLayerJob, cfg: ConvConfig) -> int:
    """Output beats of a layer: ``Ho·Wo·OT·post_cycles``."""
    ho, wo = job.out_hw
    return ho * wo * -(-job.cout // cfg.p_out) * cfg.post_cycles


def input_beats(job: ConvLayerJob, cfg: ConvConfig) -> int:
    """Input beats of a layer: ``H·W·IT``."""
    return job.height * job.width * -(-job.cin // cfg.p_in)


def unpack_outputs(job: ConvLayerJob, cfg: ConvConfig, beats: list[int]):
    """Output beats -> ``(v, q)`` (C_out, Ho, Wo) int64; checks the beat count."""
    ho, wo = job.out_hw
    ot_n = -(-job.cout // cfg.p_out)
    n_beats = output_beats(job, cfg)
    if len(beats) != n_beats:
        raise ValueError(f"expected {n_beats} output beats, got {len(beats)}")
    po, nl, vb = cfg.p_out, cfg.out_lanes, cfg.bias_bits
    v = np.zeros((ot_n * po, ho, wo), dtype=np.int64)
    q = np.zeros_like(v)
    i = 0
    for y in range(ho):
        for x in range(wo):
            for ot in range(ot_n):
                for g in range(cfg.post_cycles):
                    word = int(beats[i])
                    i += 1
                    for lane in range(nl):
                        qq = (word >> (8 * lane)) & 0xFF
                        vv = (word >> (8 * nl + vb * lane)) & ((1 << vb) - 1)
                        if vv >> (vb - 1):
                            vv -= 1 << vb
                        if job.out_signed and job.out == "requant" and qq >> 7:
                            qq -= 256
                        q[ot * po + g * nl + lane, y, x] = qq
                        v[ot * po + g * nl + lane, y, x] = vv
    return v[:job.cout], q[:job.cout]


# ----------------------------------------------------------------------------- cycles
def _load_targets(job: ConvLayerJob) -> list[int]:
    """Input rows loaded before output row ``oy`` is computed (``min(oy·s − p + k, H)``)."""
    ho, _ = job.out_hw
    return [min(oy * job.stride - job.padding + job.k, job.height) for oy in range(ho)]


def get_exp_cycles(job: ConvLayerJob, cfg: ConvConfig) -> dict[str, int]:
    """Predicted engine cycles of one layer with an always-valid input stream and an
    always-ready output (the engine's ``cyc_*`` counters measure the same quantities).

    ``compute`` (FINN-style, cycles = (MH/PE)·(MW/SIMD)·vectors with MH = C_out, PE = p_out,
    MW = C_in·k², SIMD = p_in per tap, vectors = Ho·Wo) = Ho·Wo·OT·IT·k² issue cycles;
    ``stall``: with post-processing shared over the lanes (``cfg.post_cycles`` = R > 1) an
    accumulation group (G = IT·k² beats) starts at most R cycles after the previous one, so
    a row's later groups wait R − G cycles each when G < R, and a row's first group waits
    R − G − P cycles for the P cycles of the load phase before it (0 when R = 1);
    ``load`` = H·W·IT input beats (the line buffer is filled between output rows, not
    overlapped with compute); ``overhead`` = one check cycle per load phase (Ho + 1 phases)
    plus the drain: the last output beat leaves ``cfg.pipeline_latency`` + 3 cycles (FIFO
    write-to-read 2, credit counter 1) after the last issue, partly hidden behind the final
    load phase (rows no output needs). ``total`` = compute + stall + load + overhead;
    ``pe_slots`` = p_out·p_in·compute, ``macs`` the useful PE operations
    (utilization = macs / (p_out·p_in·total)).

    The model assumes the output credit never binds: with an always-ready output a group's
    R beats leave about ``pipeline_latency`` + G + 3 cycles after its first beat, and groups
    start at least max(G, R) cycles apart, so about R·(pipeline_latency + G + 3) / max(G, R)
    beats are in flight; an ``out_fifo_depth`` below that stalls issue beyond the model
    (e.g. 1-beat groups, R = 2, depth 8). The presets' FIFOs hold the digits nets' and the
    tests' layers (``icebreaker``: 64 beats, about 25 in flight for 1-beat groups).
    """
    ho, wo = job.out_hw
    it_n = -(-job.cin // cfg.p_in)
    ot_n = -(-job.cout // cfg.p_out)
    group = it_n * job.k * job.k
    compute = ho * wo * ot_n * group
    load = job.height * job.width * it_n
    targets = _load_targets(job)
    r = cfg.post_cycles
    stall = ho * (wo * ot_n - 1) * max(0, r - group)
    for oy in range(1, ho):
        phase = (targets[oy] - targets[oy - 1]) * job.width * it_n + 1
        stall += max(0, r - group - phase)
    final_phase = (job.height - targets[-1]) * job.width * it_n + 1
    drain = max(1, cfg.pipeline_latency + 3 - final_phase)
    overhead = (ho + 1) + drain
    total = compute + stall + load + overhead
    return {"compute": compute, "stall": stall, "load": load, "overhead": overhead,
            "total": total, "macs": job_macs(job),
            "pe_slots": compute * cfg.p_out * cfg.p_in}


def random_job(rng, mode, bits, k, stride, cin, cout, h, w, out="requant", padding=None):
    """A random layer and input for tests and benchmarks: ``(job, x)``; ``rng`` is a
    ``numpy.random.Generator``. Post-processing parameters are drawn so that requantized
    outputs spread over the output range (and saturate sometimes)."""
    if padding is None:
        padding = (k - 1) // 2
    if mode == "adder":
        wt = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (cout, cin, k, k))
        x = rng.integers(0, 1 << bits, (cin, h, w))
    elif mode == "mul":
        wt = rng.integers(-128, 128, (cout, cin, k, k))
        x = rng.integers(-128, 128, (cin, h, w))
        bits = 8
    else:
        wt = rng.integers(0, 2, (cout, cin, k, k))
        x = rng.integers(0, 2, (cin, h, w))
        bits = 1
    coef = rng.integers(-50, 50, (cout, 4))
    if mode != "binary":
        coef[:, 1:] = 0
    bias = rng.integers(-2000, 2000, cout)
    mult = rng.integers(1, 1 << 15, cout)
    shift = rng.integers(10, 22, cout)
    out_bits, signed = (int(rng.integers(2, 9)), bool(rng.integers(0, 2)))
    job = ConvLayerJob(mode, wt, h, w, coef, bias, mult, shift, stride=stride, padding=padding,
                       bits=bits, out=out, out_bits=out_bits, out_signed=signed)
    return job, x
