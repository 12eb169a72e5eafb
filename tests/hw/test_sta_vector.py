# amaranth: UnusedElaboratable=no
"""STA vector unit RTL (ResidualAddLanes, GeluLanes, LayerNormUnit) vs. the golden integer
ops of nmaccel.model.intops (bit exact), and LayerNorm cycles vs. model/vector_cycles.py."""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from nmaccel.hw.sta.vector import GeluLanes, LayerNormUnit, ResidualAddLanes
from nmaccel.model.intops import (
    AddParams,
    GeluParams,
    LayerNormParams,
    gelu_int,
    isqrt,
    layernorm_int,
    residual_add,
)
from nmaccel.model.quant import quantize_multiplier, requant
from nmaccel.spec import vector_timing as vc
from nmaccel.spec.config import StaConfig, sta_preset

CFG = StaConfig()


def _simulate(dut, tb) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


# -- lane-wise units (fixed latency, no back-pressure) ----------------------------------------

def _run_lanes(dut, beats: list, rng: random.Random, idle: float = 0.2) -> list:
    """Present ``beats`` (dicts port → value; data and parameters) one per cycle with random
    idle cycles; return the outputs as lists, checking that each appears exactly ``latency``
    cycles after its input."""
    schedule: list = []
    for beat in beats:
        while rng.random() < idle:
            schedule.append(None)
        schedule.append(beat)
    schedule += [None] * dut.latency
    lat, lanes = dut.latency, dut.lanes
    got: list = []

    async def tb(ctx):
        for cyc, beat in enumerate(schedule):
            if beat is None:
                ctx.set(dut.valid, 0)
            else:
                for name, value in beat.items():
                    ctx.set(getattr(dut, name), value)
                ctx.set(dut.valid, 1)
            src = schedule[cyc - lat] if cyc >= lat else None
            assert ctx.get(dut.o_valid) == (src is not None), f"o_valid wrong in cycle {cyc}"
            if src is not None:
                o = ctx.get(dut.o)
                got.append([o[i] for i in range(lanes)])
            await ctx.tick()

    _simulate(dut, tb)
    assert len(got) == len(beats)
    return got


def _check_rows(got, want, what: str, context) -> None:
    got = np.asarray(got, dtype=np.int64)
    want = np.asarray(want, dtype=np.int64)
    assert got.shape == want.shape
    bad = np.argwhere(got != want)
    assert not bad.size, (f"{what}: first mismatch at beat {bad[0][0]} lane {bad[0][1]}: got "
                          f"{got[tuple(bad[0])]}, want {want[tuple(bad[0])]}; {context(bad[0][0])}")


def test_residual_random_bit_exact():
    lanes, n = 3, 90
    rng = np.random.default_rng(11)
    lo, hi = -(1 << (CFG.vec_bits - 1)), (1 << (CFG.vec_bits - 1)) - 1
    params = [AddParams.from_scales(sa, sb, so, CFG.vec_bits, CFG.requant_mult_bits)
              for sa, sb, so in [(0.01, 0.004, 0.012), (0.002, 0.003, 0.0021), (1e-3, 1e-3, 4e-3)]]
    mb = 1 << CFG.requant_mult_bits
    params += [AddParams(mb - 1, mb - 1, 0, CFG.vec_bits), AddParams(mb - 1, 1, 62, CFG.vec_bits),
               AddParams(int(rng.integers(mb)), int(rng.integers(mb)), 1, CFG.vec_bits),
               AddParams(0, 0, 5, CFG.vec_bits)]
    params += [AddParams(int(rng.integers(mb)), int(rng.integers(mb)), int(rng.integers(0, 63)),
                         CFG.vec_bits) for _ in range(8)]
    a = rng.integers(lo, hi, (n, lanes), endpoint=True)
    b = rng.integers(lo, hi, (n, lanes), endpoint=True)
    a[:6] = [[lo, hi, 0]] * 6
    b[:6] = [[lo, hi, 1]] * 6
    a[6:12], b[6:12] = rng.integers(-3, 4, (6, lanes)), rng.integers(-3, 4, (6, lanes))  # ties
    which = np.repeat(np.arange(len(params)), -(-n // len(params)))[:n]
    rng.shuffle(which)                                   # parameters change from beat to beat
    beats, want = [], []
    for k in range(n):
        p = params[which[k]]
        beats.append({"a": a[k].tolist(), "b": b[k].tolist(), "mult_a": p.mult_a,
                      "mult_b": p.mult_b, "shift": p.shift})
        want.append(residual_add(a[k], b[k], p))
    got = _run_lanes(ResidualAddLanes(CFG, lanes), beats, random.Random(1))
    _check_rows(got, want, "residual", lambda k: beats[k])
    w = np.asarray(want)
    assert (w == lo).any() and (w == hi).any()           # both saturation ends exercised


def _gelu_params(cfg, scale_in, max_out):
    scale_out, zero = GeluParams.output_scale(max_out, cfg.act_bits)
    return GeluParams.from_scales(scale_in, scale_out, cfg, zero=zero, out_bits=cfg.act_bits)


@pytest.mark.parametrize("cfg", [CFG, StaConfig(vec_bits=12, act_bits=6, weight_bits=6,
                                                acc_bits=20, requant_mult_bits=12,
                                                ln_gamma_bits=10)],
                         ids=["default", "narrow"])
def test_gelu_random_bit_exact(cfg):
    lanes, n = 3, 80
    rng = np.random.default_rng(cfg.vec_bits)
    vb = cfg.vec_bits
    lo, hi = -(1 << (vb - 1)), (1 << (vb - 1)) - 1
    params = [_gelu_params(cfg, xmax / hi, xmax) for xmax in (4.0, 8.0, 12.0, 30.0)]
    params.append(GeluParams(0, 5, 7, 3, 0, cfg.act_bits))                     # clip 0
    params.append(GeluParams((1 << vb) - 1, (1 << 31) - 1, (1 << (cfg.requant_mult_bits - 2)) - 1,
                             62, -(1 << (cfg.act_bits - 1)), cfg.act_bits))   # widest operands
    params.append(GeluParams(hi + 1, 3, 1, 0, 3, cfg.act_bits))                 # shift 0
    x = rng.integers(lo, hi, (n, lanes), endpoint=True)
    x[: n // 2] //= 8                                      # the interesting region near 0
    x[:4] = [[lo, hi, 0], [0, 0, 0], [-1, 1, lo + 1], [hi, lo, -2]]
    which = rng.integers(0, len(params), n)
    beats, want = [], []
    for k in range(n):
        p = params[which[k]]
        row = x[k].copy()
        if k % 5 == 4:                                     # around ±clip
            row[:] = [p.clip, -p.clip, min(p.clip + 1, hi)][:lanes]
            row = np.clip(row, lo, hi)
        beats.append({"x": row.tolist(), "clip": p.clip, "cp": p.cp, "mult": p.mult,
                      "shift": p.shift, "zero": p.zero})
        want.append(gelu_int(row, p, cfg))
    got = _run_lanes(GeluLanes(cfg, lanes), beats, random.Random(2))
    _check_rows(got, want, "gelu", lambda k: (beats[k], params[which[k]]))
    w = np.asarray(want)
    assert (w == (1 << (cfg.act_bits - 1)) - 1).any()    # saturates at the top


# -- LayerNorm ----------------------------------------------------------------------------------

class _Block:
    """One LayerNorm row block: ``x`` (lanes, d) and its parameters, with the golden outputs.

    With ``vary`` (a NumPy generator) ``mult``/``shift``/``mult8``/``shift8`` change from
    feature to feature (the golden requant broadcasts them along the features), which checks
    that the unit samples them with each phase-1 beat and keeps them aligned with its data.
    """

    def __init__(self, cfg, x, gamma, beta, scale_out, scale8, vary=None):
        self.x = np.asarray(x, dtype=np.int64)
        self.d = self.x.shape[1]
        p = LayerNormParams.from_float(gamma, beta, scale_out, cfg, out_bits=cfg.vec_bits)
        mult8, shift8 = quantize_multiplier(scale_out / scale8, cfg.requant_mult_bits)
        self.mult, self.shift = np.full(self.d, p.mult), np.full(self.d, p.shift)
        self.mult8, self.shift8 = np.full(self.d, mult8), np.full(self.d, shift8)
        if vary is not None:
            top = 1 << cfg.requant_mult_bits
            self.mult = vary.integers(top // 2, top, self.d)
            self.shift = p.shift + vary.integers(-1, 2, self.d)
            self.mult8 = vary.integers(top // 2, top, self.d)
            self.shift8 = shift8 + vary.integers(-1, 2, self.d)
        self.p = dataclasses.replace(p, mult=self.mult, shift=self.shift)
        self.y = layernorm_int(self.x, self.p, cfg)
        self.y8 = requant(self.y, self.mult8, self.shift8, cfg.act_bits,
                          mult_bits=cfg.requant_mult_bits)

    def beats(self):
        for phase in (0, 1):
            for f in range(self.d):
                ctl = {"features": self.d, "mult": int(self.mult[f]), "shift": int(self.shift[f]),
                       "mult8": int(self.mult8[f]), "shift8": int(self.shift8[f])}
                yield ctl, {"x": self.x[:, f].tolist(), "gamma": self.p.gamma[f] if phase else 0,
                            "beta": self.p.beta[f] if phase else 0, "phase": phase,
                            "last": int(f == self.d - 1)}


def _run_layernorm(cfg, blocks, lanes, rng=None, idle=0.0, backpressure=0.0, hold=None,
                   max_cycles=100000):
    """Feed the blocks' beats (random idle on the input, random back-pressure on the output,
    ``hold = (beats, cycles)``: output not ready for ``cycles`` cycles once ``beats`` input
    beats were accepted); check every output beat against the golden model and the stream
    rules. Returns the cycle of each accepted input beat and of each taken output beat."""
    dut = LayerNormUnit(cfg, lanes)
    beats = [b for blk in blocks for b in blk.beats()]
    want = [(blk.y[:, f], blk.y8[:, f], f == blk.d - 1) for blk in blocks for f in range(blk.d)]
    rng = rng or random.Random(0)
    acc_cycles: list[int] = []
    out_cycles: list[int] = []
    got: list = []

    async def tb(ctx):
        idx, holding, prev, hold_until = 0, False, None, -1
        for cyc in range(max_cycles):
            if len(got) == len(want):
                break
            if not holding and idx < len(beats) and not (idle and rng.random() < idle):
                ctl, payload = beats[idx]
                for name, value in ctl.items():
                    ctx.set(getattr(dut, name), value)
                ctx.set(dut.i.payload, payload)
                holding = True
            ctx.set(dut.i.valid, holding)
            if hold and hold_until < 0 and idx == hold[0]:
                hold_until = cyc + hold[1]
            ready = not (backpressure and rng.random() < backpressure) and cyc >= hold_until
            ctx.set(dut.o.ready, ready)
            o_valid = ctx.get(dut.o.valid)
            if prev is not None:                            # stalled beat must stay put
                assert o_valid and ctx.get(dut.o.payload.as_value()) == prev, \
                    f"stall broken in cycle {cyc}"
            prev = None
            if o_valid:
                pay = ctx.get(dut.o.payload)
                if ready:
                    got.append(([pay.y[i] for i in range(lanes)],
                                [pay.y8[i] for i in range(lanes)], pay.last))
                    out_cycles.append(cyc)
                else:
                    prev = ctx.get(dut.o.payload.as_value())
            if holding and ctx.get(dut.i.ready):
                acc_cycles.append(cyc)
                idx += 1
                holding = False
            await ctx.tick()
        else:
            raise AssertionError(f"no finish in {max_cycles} cycles: "
                                 f"{len(got)}/{len(want)} outputs")

    _simulate(dut, tb)
    for k, ((y, y8, last), (wy, wy8, wlast)) in enumerate(zip(got, want)):
        assert y == wy.tolist(), f"y of output beat {k}: got {y}, want {wy.tolist()}"
        assert y8 == wy8.tolist(), f"y8 of output beat {k}: got {y8}, want {wy8.tolist()}"
        assert bool(last) == bool(wlast), f"last of output beat {k}"
    return acc_cycles, out_cycles


def _float_block(cfg, rng, lanes, d, spread=3.0, xmax=8.0, pad=0, vary=False):
    """A realistic block: activations of scale ``xmax / 2**(vb-1)``, MiniLM-like gamma/beta."""
    hi = (1 << (cfg.vec_bits - 1)) - 1
    s_in = xmax / hi
    x = np.clip(np.round(rng.normal(rng.normal(0, 0.5, (lanes, 1)), spread, (lanes, d)) / s_in /
                         3), -hi - 1, hi).astype(np.int64)
    if pad:
        x[-pad:] = 0                                        # padding tokens
    gamma = rng.normal(1.0, 0.2, d)
    beta = rng.normal(0.0, 0.3, d)
    return _Block(cfg, x, gamma, beta, scale_out=6.0 / hi, scale8=6.0 / 127,
                  vary=rng if vary else None)


def test_layernorm_random_bit_exact_with_stalls():
    """Several blocks back to back, random idle input and random output back-pressure."""
    lanes = 3
    rng = np.random.default_rng(5)
    blocks = [_float_block(CFG, rng, lanes, d, pad=pad, vary=vary)
              for d, pad, vary in ((7, 1, False), (16, 0, True), (5, 0, False))]
    lo, hi = -(1 << 15), (1 << 15) - 1
    edge = np.array([[5, 5, 5, 5, 5, 5],                    # all equal: σ → 1
                     [lo, lo, lo, lo, lo, lo],              # all equal at the minimum
                     [hi, lo, hi, lo, hi, lo]])             # extremes
    blocks.append(_Block(CFG, edge, rng.normal(1, 0.2, 6), rng.normal(0, 0.3, 6), 6.0 / hi,
                         6.0 / 127))
    blocks.append(_Block(CFG, np.zeros((lanes, 4), np.int64), np.ones(4), [0.5, -0.5, 0.0, 1e-3],
                         6.0 / hi, 6.0 / 127))               # zero rows: y = requant(beta)
    blocks.append(_Block(CFG, [[9], [-7], [0]], [2.0], [-0.25], 6.0 / hi, 6.0 / 127))  # d = 1
    _run_layernorm(CFG, blocks, lanes, random.Random(3), idle=0.3, backpressure=0.4)


def test_layernorm_long_stall_overlaps_next_block():
    """The output stalls right after a block's last phase-1 beat (still in the first pipeline
    stage): the next block's phase 0 runs meanwhile, but its statistics wait until the old
    beat has passed the c·R multiplier, so the reciprocal it uses is not overwritten."""
    lanes, d = 2, vc.LAYERNORM_LATENCY + 6  # d > LAYERNORM_LATENCY: the pipeline is full
    rng = np.random.default_rng(10)
    blocks = [_float_block(CFG, rng, lanes, d, spread=s) for s in (3.0, 0.2, 1.0)]
    stall = d + vc.layernorm_stats_cycles(CFG) + 20
    acc, out = _run_layernorm(CFG, blocks, lanes, hold=(2 * d, stall))
    assert acc[3 * d - 1] < out[d - 1]     # block 2's phase 0 ran during the stall
    assert acc[3 * d] > out[d - 1]         # its phase 1 waited for the drain


def test_layernorm_norm_width_bound():
    """The normalised value n fits the documented ln_frac + 11 signed bits for every d up to
    65535: worst cases are a row with one value off by δ (|c|/σ ≈ sqrt(d) + 1) and the
    outlier row, computed with Python integers exactly as layernorm_int does."""
    K, F = CFG.ln_recip_frac, CFG.ln_frac
    bits = LayerNormUnit(CFG, 1).norm_bits
    assert bits == F + 11
    worst = 0
    for d in list(range(2, 300)) + [383, 384, 1000, 4095, 4096, 65533, 65534, 65535]:
        for delta in (1, 2, 3, 65535):
            v = (d - 1) * delta * delta                   # one value off by δ from the rest
            sigma = max(1, math.isqrt(v))
            c = (d - 1) * delta
            n = (c * ((1 << K) // sigma) + (1 << (K - F - 1))) >> (K - F)
            worst = max(worst, n)
    assert worst < 1 << (bits - 2)                       # |n| < 2**(F+9) + 1 as documented
    assert worst > 1 << (F + 7)                           # and the bound is not loose by much


def test_layernorm_rounding_ties():
    """Rows whose c·R hits the rounding tie (and one below it), both signs: round half up."""
    K, F = CFG.ln_recip_frac, CFG.ln_frac
    x = np.array([[31456, 9917, 1891], [17276, 31822, 28330],
                  [-15698, -11302, -9161], [-17513, 30001, -12226]])
    c = 3 * x - x.sum(1, keepdims=True)
    sigma = np.maximum(isqrt(3 * (x * x).sum(1) - x.sum(1) ** 2), 1)
    res = (c * ((1 << K) // sigma)[:, None]) & ((1 << (K - F)) - 1)
    half = 1 << (K - F - 1)
    assert {(int(np.sign(c[i][j])), int(res[i][j]) - half) for i, j in np.argwhere(
        np.abs(res - half + 0.5) < 1)} == {(1, 0), (-1, 0), (1, -1), (-1, -1)}
    hi = (1 << 15) - 1
    blk = _Block(CFG, x, [1.0, -0.5, 0.25], [0.0, 0.1, -0.1], 6.0 / hi, 6.0 / 127)
    blk.p = dataclasses.replace(blk.p, gamma=(1, 1, 1), beta=(0, 0, 0), mult=1, shift=0)
    blk.y = layernorm_int(blk.x, blk.p, CFG)              # y = n itself (mult 1, shift 0)
    blk.mult, blk.shift = np.ones(3, np.int64), np.zeros(3, np.int64)
    blk.y8 = requant(blk.y, blk.mult8, blk.shift8, CFG.act_bits, mult_bits=CFG.requant_mult_bits)
    _run_layernorm(CFG, [blk], 4)


def test_layernorm_minilm_d384_exact_and_cycles():
    """d = 384 with |x| up to 2**15: exact (widths cover MiniLM magnitudes), cycles as predicted."""
    lanes, d = 2, 384
    rng = np.random.default_rng(384)
    lo, hi = -(1 << 15), (1 << 15) - 1
    x = np.empty((lanes, d), np.int64)
    x[0] = lo
    x[0, 17] = hi                                           # one outlier: the largest |c|/σ
    x[1] = rng.choice([lo, hi], d)                          # the largest variance
    gamma, beta = rng.normal(1.0, 0.3, d), rng.normal(0, 0.5, d)
    blk = _Block(CFG, x, gamma, beta, scale_out=12.0 / hi, scale8=12.0 / 127)
    # The golden model stays inside int64 here, and the widest intermediates are what we claim.
    v = d * (x * x).sum(1) - x.sum(1) ** 2
    assert v.max() < 1 << vc.layernorm_var_bits(CFG)
    assert np.abs(blk.y).max() > 0
    acc, out = _run_layernorm(CFG, [blk], lanes)
    assert out[-1] - acc[0] + 1 == vc.layernorm_cycles(CFG, d, lanes)


@pytest.mark.parametrize("cfg,d,lanes,blocks", [
    (CFG, 1, 1, 3),
    (CFG, 6, 2, 2),
    (sta_preset("tiny"), 4, 3, 2),
    (StaConfig(vec_bits=12, ln_frac=8, ln_recip_frac=20, ln_gamma_bits=10, requant_mult_bits=12),
     5, 2, 2),
], ids=["default-d1", "default-d6", "tiny-d4", "narrow-d5"])
def test_layernorm_cycles_match_model(cfg, d, lanes, blocks):
    """Input always valid, output always ready: measured cycles == model/vector_cycles.py."""
    rng = np.random.default_rng(d)
    blks = [_float_block(cfg, rng, lanes, d) for _ in range(blocks)]
    acc, out = _run_layernorm(cfg, blks, lanes)
    per = 2 * d
    firsts = acc[::per]
    assert out[d - 1] - acc[0] + 1 == vc.layernorm_cycles(cfg, d, lanes)
    for k in range(1, blocks):
        assert firsts[k] - firsts[k - 1] == vc.layernorm_block_interval(cfg, d)
        assert out[(k + 1) * d - 1] - firsts[k] + 1 == vc.layernorm_cycles(cfg, d, lanes)
    # Inside a block: one beat per cycle in each phase, the statistics gap in between.
    for k in range(blocks):
        a = acc[k * per:(k + 1) * per]
        assert a[d - 1] - a[0] == d - 1 and a[-1] - a[d] == d - 1
        assert a[d] - a[d - 1] - 1 == vc.layernorm_stats_cycles(cfg)
        o = out[k * d:(k + 1) * d]
        assert o[0] - a[d] == vc.LAYERNORM_LATENCY and o[-1] - o[0] == d - 1


def test_latency_constants_shared():
    assert ResidualAddLanes.latency == vc.residual_latency(CFG) == vc.RESIDUAL_LATENCY
    assert GeluLanes.latency == vc.gelu_latency(CFG) == vc.GELU_LATENCY
    unit = LayerNormUnit(CFG, 2)
    assert unit.latency == vc.LAYERNORM_LATENCY
    assert unit.stats_cycles == vc.layernorm_stats_cycles(CFG) == 1 + 31 + 1 + 31 + 31
    assert vc.layernorm_cycles(CFG, 384, 8) == 2 * 384 + 95 + vc.LAYERNORM_LATENCY == 890


def test_ports():
    dut = LayerNormUnit(CFG, 4)
    assert len(dut.features) == 16 and len(dut.mult) == CFG.requant_mult_bits
    assert len(dut.i.payload.x) == 4 and len(dut.i.payload.x.as_value()) == 4 * CFG.vec_bits
    assert len(dut.i.payload.gamma) == CFG.ln_gamma_bits
    assert len(dut.i.payload.beta) == CFG.acc_bits
    assert len(dut.o.payload.y.as_value()) == 4 * CFG.vec_bits
    assert len(dut.o.payload.y8.as_value()) == 4 * CFG.act_bits
    g = GeluLanes(CFG, 2)
    assert len(g.cp) == 31 and len(g.clip) == CFG.vec_bits and g.zero.shape().signed
    r = ResidualAddLanes(CFG, 5)
    assert len(r.o.as_value()) == 5 * CFG.vec_bits and len(r.shift) == 6


@pytest.mark.parametrize("cls", [ResidualAddLanes, GeluLanes, LayerNormUnit])
@pytest.mark.parametrize("lanes", [0, -1, 1.5, True, "2", None])
def test_bad_lanes(cls, lanes):
    with pytest.raises(ValueError, match=f"lanes must be a positive integer, not {lanes!r}"):
        cls(CFG, lanes)


@pytest.mark.parametrize("cls", [ResidualAddLanes, GeluLanes, LayerNormUnit])
def test_bad_config(cls):
    with pytest.raises(TypeError, match="config must be a StaConfig, not dict"):
        cls({"vec_bits": 16}, 2)


@pytest.mark.parametrize("args,msg", [
    ((CFG, 0, 2), "features must be an integer in [1, 65535], not 0"),
    ((CFG, 65536, 2), "not 65536"),
    ((CFG, 4.0, 2), "not 4.0"),
    ((CFG, 4, 0), "lanes must be a positive integer, not 0"),
])
def test_bad_cycle_args(args, msg):
    with pytest.raises(ValueError) as info:
        vc.layernorm_cycles(*args)
    assert msg in str(info.value)
    with pytest.raises(TypeError, match="cfg must be a StaConfig"):
        vc.layernorm_cycles(None, 4, 2)
