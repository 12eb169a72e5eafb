# amaranth: UnusedElaboratable=no
"""The lean STA's time-shared vector datapath vs. the golden models (bit exact) and its cycle
model (exact), with random stalls on both streams."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from nmaccel.hw.sta_lean.vector import SharedVectorUnit
from nmaccel.model.intops import (
    AddParams,
    GeluParams,
    LayerNormParams,
    gelu_int,
    layernorm_int,
    residual_add,
)
from nmaccel.model.quant import quantize_multiplier, requant
from nmaccel.model.softmax import softmax_int
from nmaccel.sim.amaranth_streams import stream_get, stream_put
from nmaccel.spec import lean_vector as lv
from nmaccel.spec.config import StaConfig, sta_preset
from nmaccel.spec.sta_isa import Osel, osel_bits

TINY = sta_preset("tiny")
DEFAULT = StaConfig()
CONFIGS = pytest.mark.parametrize("cfg", [TINY, DEFAULT], ids=["tiny", "default"])


HELD = ("mult2", "shift2", "clip", "cp")                 # the unit's ``par`` port


def _cmd(op, n, **kw):
    base = {"op": int(op), "n": n, "osel": 0, "mult": 0, "shift": 0, "zero": 0, "mult2": 0,
            "shift2": 0, "clip": 0, "cp": 0}
    base.update({k: int(v) for k, v in kw.items()})
    return base


def _beat(a=0, b=0, gamma=0, beta=0):
    return {"a": int(a), "b": int(b), "gamma": int(gamma), "beta": int(beta)}


def _run(cfg, jobs, stall: float = 0.0, seed: int = 0, max_cycles: int = 200_000):
    """Run ``jobs`` (``(cmd, beats, n_out)``) back to back; returns (outputs per job as
    (y, y2) lists, busy cycles per job)."""
    dut = SharedVectorUnit(cfg)
    rng = random.Random(seed)
    outs: list[list[tuple[int, int]]] = []
    cycles: list[int] = []

    async def source(ctx):
        for cmd, beats, _ in jobs:
            cmd = dict(cmd)
            held = {k: cmd.pop(k) for k in HELD}
            await stream_put(ctx, dut.cmd, cmd, rng, stall)
            ctx.set(dut.par, held)                       # held while the command runs
            for b in beats:
                await stream_put(ctx, dut.i, b, rng, stall)

    async def sink(ctx):
        for _, _, n_out in jobs:
            got = []
            for _ in range(n_out):
                p = await stream_get(ctx, dut.o, rng, stall)
                got.append((p.y, p.y2))
            outs.append(got)

    async def counter(ctx):
        n, budget = 0, max_cycles
        while len(outs) < len(jobs) or n:
            *_, busy = await ctx.tick().sample(dut.busy)     # busy in the cycle just ended
            budget -= 1
            assert budget > 0, f"the unit hung ({len(outs)} of {len(jobs)} jobs done)"
            if busy:
                n += 1
            elif n:
                cycles.append(n + 1)                         # + the cycle that took the command
                n = 0

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source, background=True)
    sim.add_testbench(sink, background=True)
    sim.add_testbench(counter)
    sim.run()
    return outs, cycles


def _check(got, want, what):
    got = np.asarray(got, dtype=np.int64)
    want = np.asarray(want, dtype=np.int64)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (f"{what}: {bad.size} differ, first at {bad[0]}: "
                           f"{got[bad[0]]} != {want[bad[0]]}")


@CONFIGS
def test_requant_bit_exact_and_cycles(cfg):
    rng = np.random.default_rng(1)
    lo, hi = -(1 << (cfg.acc_bits - 1)), (1 << (cfg.acc_bits - 1)) - 1
    jobs, want, shifts = [], [], []
    for k in range(24):
        osel = k % 4
        mult = int(rng.integers(1, 1 << cfg.requant_mult_bits)) if k % 5 else 1
        shift = int(rng.integers(0, 48)) if k % 7 else 0
        zero = int(rng.integers(-8, 8)) if osel == Osel.ACT else 0
        a = rng.integers(lo, hi, 3, endpoint=True)
        a[0] = [lo, hi, 0, -1][k % 4]
        jobs.append((_cmd(lv.VecOp.REQUANT, 3, osel=osel, mult=mult, shift=shift, zero=zero),
                     [_beat(x) for x in a], 3))
        want.append(requant(a, mult, shift, osel_bits(cfg, osel), zero=zero,
                            mult_bits=cfg.requant_mult_bits))
        shifts.append(shift)
    outs, cycles = _run(cfg, jobs)
    for got, w in zip(outs, want):
        _check([y for y, _ in got], w, "requant")
    assert cycles == [lv.op_cycles(cfg, lv.VecOp.REQUANT, 3, s) for s in shifts]


@CONFIGS
def test_add_and_gelu_bit_exact_and_cycles(cfg):
    rng = np.random.default_rng(2)
    vb = cfg.vec_bits
    lo, hi = -(1 << (vb - 1)), (1 << (vb - 1)) - 1
    jobs, want, expect = [], [], []
    for k in range(6):
        p = AddParams.from_scales(float(rng.uniform(0.5, 2)), float(rng.uniform(0.5, 2)),
                                  float(rng.uniform(0.5, 3)), osel_bits(cfg, k % 2),
                                  cfg.requant_mult_bits)
        a, b = rng.integers(lo, hi, 4, endpoint=True), rng.integers(lo, hi, 4, endpoint=True)
        a[0], b[0] = lo, lo
        jobs.append((_cmd(lv.VecOp.ADD, 4, osel=k % 2, mult=p.mult_a, mult2=p.mult_b,
                          shift=p.shift), [_beat(x, y) for x, y in zip(a, b)], 4))
        want.append(residual_add(a, b, p))
        expect.append(lv.op_cycles(cfg, lv.VecOp.ADD, 4, p.shift))
    for xmax in (4.0, 8.0, 30.0):
        scale_out, zero = GeluParams.output_scale(xmax, cfg.act_bits)
        p = GeluParams.from_scales(xmax / hi, scale_out, cfg, zero=zero, out_bits=cfg.act_bits)
        x = rng.integers(lo, hi, 12, endpoint=True)
        x[:6] = [lo, hi, 0, p.clip if p.clip <= hi else hi, -1, 1]
        x[6:] //= 16
        jobs.append((_cmd(lv.VecOp.GELU, 12, osel=Osel.ACT, mult=p.mult, shift=p.shift,
                          zero=p.zero, clip=p.clip, cp=p.cp), [_beat(v) for v in x], 12))
        want.append(gelu_int(x, p, cfg))
        expect.append(lv.op_cycles(cfg, lv.VecOp.GELU, 12, p.shift))
    p = GeluParams((1 << vb) - 1, (1 << 31) - 1, (1 << (cfg.requant_mult_bits - 2)) - 1, 62,
                   -(1 << (cfg.act_bits - 1)), cfg.act_bits)       # widest operands
    x = np.array([lo, hi, 0, -1, 1, lo + 1])
    jobs.append((_cmd(lv.VecOp.GELU, 6, osel=Osel.ACT, mult=p.mult, shift=p.shift, zero=p.zero,
                      clip=p.clip, cp=p.cp), [_beat(v) for v in x], 6))
    want.append(gelu_int(x, p, cfg))
    expect.append(lv.op_cycles(cfg, lv.VecOp.GELU, 6, p.shift))
    outs, cycles = _run(cfg, jobs)
    for got, w in zip(outs, want):
        _check([y for y, _ in got], w, "add/gelu")
    assert cycles == expect


def _ln_job(cfg, rng, d, spread):
    vb = cfg.vec_bits
    x = np.clip(np.round(rng.normal(0, spread, d)), -(1 << (vb - 1)), (1 << (vb - 1)) - 1)
    x = x.astype(np.int64)
    p = LayerNormParams.from_float(rng.normal(1, 0.3, d), rng.normal(0, 0.3, d), 0.05, cfg,
                                   out_bits=vb)
    mult2, shift2 = quantize_multiplier(0.05 / 0.03, cfg.requant_mult_bits)
    y = layernorm_int(x[None, :], p, cfg)[0]
    y8 = requant(y, mult2, shift2, cfg.act_bits, mult_bits=cfg.requant_mult_bits)
    cmd = _cmd(lv.VecOp.LAYERNORM, d, mult=p.mult, shift=p.shift, mult2=mult2, shift2=shift2)
    beats = [_beat(x[i], gamma=p.gamma[i], beta=p.beta[i]) for i in range(d)]
    return (cmd, beats, d), list(zip(y.tolist(), y8.tolist())), lv.op_cycles(
        cfg, lv.VecOp.LAYERNORM, d, p.shift, shift2)


@CONFIGS
def test_layernorm_bit_exact_and_cycles(cfg):
    rng = np.random.default_rng(3)
    cases = [_ln_job(cfg, rng, d, s) for d, s in ((32, 300.0), (8, 4000.0), (5, 1.0),
                                                   (cfg.max_seq, 20000.0), (3, 0.0))]
    outs, cycles = _run(cfg, [c[0] for c in cases])
    for got, (_, want, _) in zip(outs, cases):
        _check(got, want, "layernorm")
    assert cycles == [c[2] for c in cases]


@CONFIGS
def test_softmax_bit_exact_and_cycles(cfg):
    rng = np.random.default_rng(4)
    lo, hi = -(1 << (cfg.softmax_in_bits - 1)), (1 << (cfg.softmax_in_bits - 1)) - 1
    rows = [rng.integers(lo, hi, n, endpoint=True) for n in (8, 1, 17)]
    rows.append(rng.integers(-200, 200, cfg.max_seq))
    rows.append(np.array([lo, hi, lo, hi - 1, hi]))
    rows.append(np.full(6, lo))
    jobs = [(_cmd(lv.VecOp.SOFTMAX, len(z)), [_beat(v) for v in z], len(z)) for z in rows]
    outs, cycles = _run(cfg, jobs)
    for got, z in zip(outs, rows):
        _check([y for y, _ in got], softmax_int(z[None, :], cfg)[0], "softmax")
    assert cycles == [lv.op_cycles(cfg, lv.VecOp.SOFTMAX, len(z)) for z in rows]


def test_random_stalls_keep_results():
    """Idle inputs and back-pressure on every stream change timing, never results."""
    cfg = TINY
    rng = np.random.default_rng(5)
    ln, want_ln, _ = _ln_job(cfg, rng, 16, 500.0)
    z = rng.integers(-900, 900, 12)
    a = rng.integers(-(1 << 20), 1 << 20, 5)
    jobs = [ln, (_cmd(lv.VecOp.SOFTMAX, 12), [_beat(v) for v in z], 12),
            (_cmd(lv.VecOp.REQUANT, 5, mult=40000, shift=21), [_beat(v) for v in a], 5),
            (_cmd(lv.VecOp.REQUANT, 0), [], 0), (_cmd(7, 3), [], 0),
            (_cmd(lv.VecOp.REQUANT, 5, mult=40000, shift=21), [_beat(v) for v in a], 5)]
    outs, _ = _run(cfg, jobs, stall=0.4, seed=9)
    _check(outs[0], want_ln, "layernorm")
    _check([y for y, _ in outs[1]], softmax_int(z[None, :], cfg)[0], "softmax")
    _check([y for y, _ in outs[2]], requant(a, 40000, 21, 8), "requant")
    _check([y for y, _ in outs[5]], requant(a, 40000, 21, 8), "requant after empty commands")
