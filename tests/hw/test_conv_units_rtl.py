# amaranth: UnusedElaboratable=no
"""PostProcess and PEArray of the conv engine in isolation (amaranth.sim) against the rules
of :mod:`nmaccel.model.conv_ref` / :func:`nmaccel.model.quant.requant`."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from nmaccel.hw.conv.pe import PEArray
from nmaccel.hw.conv.postproc import PostProcess
from nmaccel.model.conv_ref import Mode, param_fields
from nmaccel.model.quant import requant
from nmaccel.spec.config import ConvConfig

CFG = ConvConfig(p_out=2, p_in=3, max_width=8, max_height=8, max_in_channels=8,
                 max_out_channels=8)


def _pack(vals, widths):
    w, pos = 0, 0
    for v, b in zip(vals, widths):
        w |= (int(v) & ((1 << b) - 1)) << pos
        pos += b
    return w


@pytest.mark.parametrize("post_pipeline,latency", [("full", 13), ("short", 8)])
def test_postprocess_requant_and_binarize(post_pipeline, latency):
    dut = PostProcess(CFG.replace(post_pipeline=post_pipeline))
    assert dut.latency == latency
    rng = np.random.default_rng(0)
    fl = param_fields(CFG)
    widths = [b for _, b, _ in fl]
    cases = []
    for n in range(300):
        s = rng.integers(-5000, 5000, (2, 4))
        s[:, 1:] = np.abs(s[:, 1:]) % 100
        s[1, 1], s[1, 2] = s[0, 1], s[0, 2]     # S1, S2 shared
        coef = rng.integers(-300, 300, (2, 4))
        bias = rng.integers(-10**6, 10**6, 2)
        mult = rng.integers(0, 1 << 16, 2)
        shift = rng.integers(0, 30, 2) if n % 5 else np.zeros(2, dtype=np.int64)
        if n % 13 == 1:
            shift = rng.integers(40, 63, 2)     # past the product's width: + half still exact
        out_bits = int(rng.integers(2, 9))
        signed = bool(rng.integers(0, 2))
        binarize = bool(n % 7 == 0)
        cases.append((s, coef, bias, mult, shift, out_bits, signed, binarize))
    zero = np.zeros(2, dtype=np.int64)
    for n in range(200):
        out_bits = int(rng.integers(2, 9))
        signed = bool(rng.integers(0, 2))
        if n % 2:       # wide S0 (both of c0·S0's partial products), any shift
            s = rng.integers(-(1 << (CFG.acc_bits - 1)), 1 << (CFG.acc_bits - 1), (2, 4))
            s[:, 1:] = rng.integers(0, 1 << CFG.count_bits, (2, 3))
            s[1, 1], s[1, 2] = s[0, 1], s[0, 2]
            coef = np.concatenate([rng.integers(-50, 51, (2, 1)),
                                   rng.integers(-1000, 1001, (2, 3))], axis=1)
            cases.append((s, coef, rng.integers(-10**8, 10**8, 2), rng.integers(0, 1 << 16, 2),
                          rng.integers(0, 63, 2), out_bits, signed, False))
            continue
        # rounding and saturation edges: S0 = edge·2**sh ± about half a step, times 1
        hi = (1 << (out_bits - 1)) - 1 if signed else (1 << out_bits) - 1
        lo = -(1 << (out_bits - 1)) if signed else 0
        sh = int(rng.integers(0, 18))
        half = (1 << sh) >> 1
        s = np.zeros((2, 4), dtype=np.int64)
        for o in range(2):
            edge = int(rng.choice([hi, lo, hi + 1, lo - 1, hi - 1, lo + 1]))
            s[o, 0] = edge * (1 << sh) + int(rng.choice([-half - 1, -half, -half + 1,
                                                         half - 1, half, half + 1]))
        coef = np.zeros((2, 4), dtype=np.int64)
        coef[:, 0] = 1
        cases.append((s, coef, zero, np.ones(2, dtype=np.int64), np.full(2, sh), out_bits,
                      signed, False))

    def expect(case):
        s, coef, bias, mult, shift, out_bits, signed, binarize = case
        v = (coef * s).sum(1) + bias
        want = (v > 0).astype(int) if binarize else requant(v, mult, shift, out_bits, signed,
                                                            mult_bits=16)
        return [int(x) for x in v], [int(x) & 0xFF for x in want]

    # one case per cycle (fully pipelined), with a bubble every 11th cycle; the layer
    # settings (out_bits, signed, binarize) are static while a beat is in flight, so the
    # cases are grouped by them and the pipeline drains between groups
    groups = {}
    for c in cases:
        groups.setdefault(c[5:], []).append(c)

    async def tb(ctx):
        checked = 0
        for (out_bits, signed, binarize), group in groups.items():
            ctx.set(dut.out_bits, out_bits)
            ctx.set(dut.out_signed, signed)
            ctx.set(dut.binarize, binarize)
            sent, got, n = list(group), [], 0
            while len(got) < len(group):
                bubble = n % 11 == 10 or not sent
                n += 1
                if bubble:
                    ctx.set(dut.valid, 0)
                else:
                    s, coef, bias, mult, shift = sent.pop(0)[:5]
                    for o in range(2):
                        ctx.set(dut.s0[o], int(s[o, 0]))
                        ctx.set(dut.s3[o], int(s[o, 3]))
                        ctx.set(dut.params[o].as_value(),
                                _pack(list(coef[o]) + [bias[o], mult[o], shift[o]], widths))
                    ctx.set(dut.s1, int(s[0, 1]))
                    ctx.set(dut.s2, int(s[0, 2]))
                    ctx.set(dut.valid, 1)
                await ctx.tick()
                if ctx.get(dut.o_valid):
                    got.append(([ctx.get(dut.v[o]) for o in range(2)],
                                [ctx.get(dut.q[o]) for o in range(2)], n))
            assert got[0][2] == dut.latency      # the first beat's output tick
            for case, (v, q, _n_out) in zip(group, got):
                assert (v, q) == expect(case), case
            checked += len(got)
        assert checked == len(cases)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("modes", [("adder", "binary", "mul"), ("adder",), ("binary",),
                                   ("mul",)])
def test_pe_array_terms(modes):
    cfg = CFG.replace(modes=modes)
    dut = PEArray(cfg)
    rng = np.random.default_rng(1)

    def case(n):
        return (modes[n % len(modes)], rng.integers(0, 256, 3), rng.integers(0, 256, (2, 3)),
                rng.integers(0, 2, 3), int(rng.integers(0, 2)))

    def check(ctx, c):
        mode, act, wt, chan, sval = c
        ws = np.where(wt >= 128, wt - 256, wt)
        as_ = np.where(act >= 128, act - 256, act)
        m = chan * sval
        if mode == "adder":
            want = (np.abs(act * sval - 2 * ws) * chan).sum(1)
        elif mode == "mul":
            want = (as_ * ws * m).sum(1)
        else:
            want = ((1 - ((act & 1) ^ (wt & 1))) * m).sum(1)
            for o in range(2):
                assert ctx.get(dut.pw[o]) == int(((wt[o] & 1) * m).sum())
            assert ctx.get(dut.pa) == int(((act & 1) * m).sum())
            assert ctx.get(dut.n) == int(m.sum())
        for o in range(2):
            assert ctx.get(dut.sum0[o]) == int(want[o]), (mode, o)

    async def tb(ctx):
        # one beat per cycle within a mode (the mode is a layer setting), a bubble every
        # 7th cycle; each output is checked PEArray.latency cycles after its beat
        for mode in modes:
            ctx.set(dut.mode, int({"adder": Mode.ADDER, "binary": Mode.BINARY,
                                   "mul": Mode.MUL}[mode]))
            inflight, checked = [None] * (PEArray.latency - 1), 0
            for n in range(40 + PEArray.latency):
                c = case(0)[1:] if n < 40 and n % 7 != 6 else None
                if c is not None:
                    c = (mode,) + c
                    _, act, wt, chan, sval = c
                    for i in range(3):
                        ctx.set(dut.act[i], int(act[i]))
                        for o in range(2):
                            ctx.set(dut.wt[o][i], int(wt[o, i]))
                    ctx.set(dut.chan, int(sum(int(x) << i for i, x in enumerate(chan))))
                    ctx.set(dut.sval, sval)
                ctx.set(dut.valid, c is not None)
                await ctx.tick()
                inflight.append(c)
                done = inflight.pop(0)
                assert ctx.get(dut.o_valid) == (done is not None)
                if done is not None:
                    check(ctx, done)
                    checked += 1
            assert checked == sum(1 for n in range(40) if n % 7 != 6)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
