# amaranth: UnusedElaboratable=no
"""RTL N:M processing element vs. numpy ``x @ w.T`` (bit exact), fed from packed weight words."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from nmaccel.hw.sta.pe import NMProcessingElement, dense_position
from nmaccel.model.nm import compress, entry_bits, nm_mask, pack_dense_words, pack_words
from nmaccel.spec.config import StaConfig, clog2

CONFIGS = [(2, 4, 4), (1, 4, 4), (2, 8, 4), (4, 8, 8), (1, 8, 2)]


def _fields(word: int, lanes: int, field_bits: int) -> list[int]:
    return [(int(word) >> (j * field_bits)) & ((1 << field_bits) - 1) for j in range(lanes)]


def _sx(v: int, bits: int) -> int:
    return v - (1 << bits) if v >= 1 << (bits - 1) else v


def _sparse_beats(cfg: StaConfig, w: np.ndarray, x: np.ndarray):
    """Per output row r and token t, the beats (values, indices, window) of ``x[t] . w[r]``."""
    c = compress(w, cfg.n, cfg.m)
    words = pack_words(c, cfg)
    E, wb, L = entry_bits(cfg), cfg.weight_bits, cfg.lanes
    gpw = L // cfg.n                       # groups per word
    apc = cfg.acts_per_cycle
    K = x.shape[1]
    xpad = np.zeros((x.shape[0], words.shape[1] * apc), dtype=np.int64)
    xpad[:, :K] = x
    jobs = []
    for r in range(w.shape[0]):
        for t in range(x.shape[0]):
            beats = []
            for k, word in enumerate(words[r]):
                f = _fields(word, L, E)
                vals = [_sx(e & ((1 << wb) - 1), wb) for e in f]
                idx = [e >> wb for e in f]
                win = [int(a) for a in xpad[t, k * gpw * cfg.m:(k + 1) * gpw * cfg.m]]
                assert len(win) == apc
                beats.append((vals, idx, win))
            jobs.append(((r, t), beats))
    return jobs


def _dense_beats(cfg: StaConfig, w: np.ndarray, x: np.ndarray):
    words = pack_dense_words(w, cfg)
    wb, L, apc = cfg.weight_bits, cfg.lanes, cfg.acts_per_cycle
    K = x.shape[1]
    xpad = np.zeros((x.shape[0], words.shape[1] * L + apc), dtype=np.int64)
    xpad[:, :K] = x
    rng = np.random.default_rng(99)
    jobs = []
    for r in range(w.shape[0]):
        for t in range(x.shape[0]):
            beats = []
            for k, word in enumerate(words[r]):
                vals = [_sx(e, wb) for e in _fields(word, L, wb)]
                # as the array presents a dense word: index j % n, activation j at
                # dense_position(j), junk in the window's other places
                idx = [j % cfg.n for j in range(L)]
                win = [int(a) for a in rng.integers(-128, 128, apc)]
                for j in range(L):
                    win[dense_position(cfg, j)] = int(xpad[t, k * L + j])
                beats.append((vals, idx, win))
            jobs.append(((r, t), beats))
    return jobs


def _simulate(cfg: StaConfig, jobs, seed: int):
    """Stream all jobs back to back (clear on each first word, random bubbles); return
    ``{key: acc}`` read ``latency`` ticks after each job's last beat, and the tick count."""
    dut = NMProcessingElement(cfg)
    rng = np.random.default_rng(seed)
    schedule = []                                 # (beat or None, clear, key if last beat)
    for key, beats in jobs:
        for i, b in enumerate(beats):
            if rng.random() < 0.15:
                schedule.append((None, False, None))
            schedule.append((b, i == 0, key if i == len(beats) - 1 else None))
    schedule += [(None, False, None)] * dut.latency
    results: dict = {}

    async def tb(ctx):
        history = []
        for beat, clear, key in schedule:
            if beat is None:
                ctx.set(dut.valid, 0)
                ctx.set(dut.clear, 0)
            else:
                vals, idx, win = beat
                ctx.set(dut.w_value, vals)
                ctx.set(dut.w_index, idx)
                ctx.set(dut.act, win)
                ctx.set(dut.valid, 1)
                ctx.set(dut.clear, int(clear))
            await ctx.tick()
            history.append((beat is not None, key))
            if len(history) >= dut.latency:
                was_valid, done = history[-dut.latency]
                assert ctx.get(dut.acc_valid) == was_valid
                if done is not None:
                    results[done] = ctx.get(dut.acc)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return results


def _check(results, w, x):
    want = x.astype(np.int64) @ w.astype(np.int64).T          # (tokens, rows)
    assert len(results) == want.size
    for (r, t), got in results.items():
        assert got == want[t, r], f"row {r} token {t}: got {got}, want {int(want[t, r])}"


def _sparse_weights(rng, rows, K, n, m):
    w = rng.integers(-128, 128, (rows, K))
    return (w * nm_mask(w, n, m)).astype(np.int64)


@pytest.mark.parametrize("lut", [0, 1], ids=["dsp", "lut"])
@pytest.mark.parametrize("n,m,L", CONFIGS)
def test_pe_sparse_random(n, m, L, lut):
    cfg = StaConfig(lanes=L, n=n, m=m, array_lut=lut)
    rng = np.random.default_rng(1000 * n + 10 * m + L)
    K = m * (3 * L // n + 1)               # several groups, last word partly padding
    w = _sparse_weights(rng, 3, K, n, m)
    w[0, :m] = 0                           # a group with fewer than n nonzeros (padded)
    x = rng.integers(-128, 128, (2, K))
    _check(_simulate(cfg, _sparse_beats(cfg, w, x), seed=L + n), w, x)


@pytest.mark.parametrize("lut", [0, 1], ids=["dsp", "lut"])
@pytest.mark.parametrize("n,m,L", CONFIGS)
def test_pe_sparse_extreme(n, m, L, lut):
    """All -128 * -128 products: the largest positive sums (and largest negative ones)."""
    cfg = StaConfig(lanes=L, n=n, m=m, array_lut=lut)
    K = m * 4 * L // n
    w = np.full((2, K), -128, dtype=np.int64)
    w = (w * nm_mask(w, n, m)).astype(np.int64)
    x = np.full((2, K), -128, dtype=np.int64)
    x[1] = 127
    _check(_simulate(cfg, _sparse_beats(cfg, w, x), seed=3), w, x)


@pytest.mark.parametrize("lut", [0, 1], ids=["dsp", "lut"])
@pytest.mark.parametrize("n,m,L", CONFIGS)
def test_pe_dense(n, m, L, lut):
    cfg = StaConfig(lanes=L, n=n, m=m, array_lut=lut)
    rng = np.random.default_rng(77 + L)
    K = 3 * L + 1                          # last word padded
    w = rng.integers(-128, 128, (2, K))
    w[1, :] = -128
    x = rng.integers(-128, 128, (2, K))
    x[1, :] = -128
    _check(_simulate(cfg, _dense_beats(cfg, w, x), seed=L), w, x)


@pytest.mark.parametrize("lut", [0, 1], ids=["dsp", "lut"])
def test_pe_acc_wraps_like_twos_complement(lut):
    """A narrow accumulator wraps modulo 2**acc_bits (4-bit weights: a 2-row Booth product)."""
    cfg = StaConfig(lanes=4, n=2, m=4, act_bits=4, weight_bits=4, acc_bits=8, array_lut=lut)
    rng = np.random.default_rng(5)
    K = 32
    w = rng.integers(-8, 8, (2, K))
    w = (w * nm_mask(w, 2, 4)).astype(np.int64)
    x = rng.integers(-8, 8, (2, K))
    res = _simulate(cfg, _sparse_beats(cfg, w, x), seed=1)
    want = x @ w.T
    for (r, t), got in res.items():
        assert got == ((int(want[t, r]) + 128) % 256) - 128


def test_pe_ports_latency_cycles():
    cfg = StaConfig(lanes=8, n=4, m=8)
    pe = NMProcessingElement(cfg)
    assert pe.latency == 4 + clog2(8) == 7
    assert pe.acts_per_cycle == 16
    assert len(pe.acc) == 32 and pe.acc.shape().signed
    assert len(pe.w_value.as_value()) == 8 * 8
    assert len(pe.w_index.as_value()) == 8 * 3
    assert len(pe.act.as_value()) == 16 * 8
    assert pe.words(64) == 4 and pe.words(64, dense=True) == 8
    assert pe.get_exp_cycles(64) == 4 + 7 - 1
    assert NMProcessingElement(StaConfig(lanes=1, n=1, m=4)).latency == 4
    # LUT products: a CarryProduct of the 8-bit weight (4 row pairs: 1 + 2 stages)
    assert NMProcessingElement(StaConfig(lanes=8, n=4, m=8, array_lut=1)).latency == 5 + 3
    assert NMProcessingElement(StaConfig(lanes=8, n=4, m=8, array_lut=1,
                                         weight_bits=4)).latency == 1 + 2 + 3 + 1
    with pytest.raises(ValueError, match="multiple of m=8"):
        pe.words(12)
    with pytest.raises(ValueError, match="k_cols must be a non-negative integer, not -1"):
        pe.words(-1)


def test_pe_lanes_one():
    cfg = StaConfig(lanes=1, n=1, m=4)
    rng = np.random.default_rng(11)
    w = _sparse_weights(rng, 2, 12, 1, 4)
    x = rng.integers(-128, 128, (2, 12))
    _check(_simulate(cfg, _sparse_beats(cfg, w, x), seed=2), w, x)


def test_pe_bad_args():
    with pytest.raises(TypeError, match="config must be a StaConfig, not dict"):
        NMProcessingElement({"lanes": 4})
    with pytest.raises(TypeError, match="config must be a StaConfig, not NoneType"):
        NMProcessingElement(None)
    with pytest.raises(ValueError, match="lanes must be a positive integer, not 0"):
        NMProcessingElement(StaConfig(lanes=0))
    with pytest.raises(ValueError, match="lanes must be a multiple of n"):
        NMProcessingElement(StaConfig(lanes=3, n=2))


@pytest.mark.parametrize("lanes, n, m", [(4, 2, 4), (2, 1, 4)])
def test_lut_pe_ecp5_form_in_icarus_equals_its_simulation(ecp5_icarus, lanes, n, m):
    """The ECP5 netlist form of an ``array_lut`` PE (CCU2C chains, TRELLIS_FF copies: what a
    board build gets) in Icarus with Yosys' primitive models, cycle by cycle against
    Amaranth's simulation of the plain form (itself checked against numpy above): random
    beats, bubbles, clears, signed and unsigned activations, extreme values."""
    from amaranth.back import verilog
    cfg = StaConfig(lanes=lanes, n=n, m=m, array_lut=1)

    class FakeECP5:
        family = "ecp5"
    src = verilog.convert(NMProcessingElement(cfg), name="dut", platform=FakeECP5())
    assert "CCU2C " in src and "TRELLIS_FF " in src
    rng = np.random.default_rng(lanes * 10 + n)
    ib, apc = max(cfg.index_bits, 1), cfg.acts_per_cycle
    beats = []
    for i in range(120):
        ext = i % 7 == 3
        vals = ([-128] * lanes if ext else rng.integers(-128, 128, lanes).tolist())
        win = ([-128 if rng.random() < 0.5 else 127 for _ in range(apc)] if ext
               else rng.integers(-128, 128, apc).tolist())
        beats.append({"w_value": vals, "w_index": rng.integers(0, m, lanes).tolist(),
                      "act": win, "a_unsigned": int(rng.random() < 0.3),
                      "valid": int(rng.random() < 0.85), "clear": int(rng.random() < 0.15)})
    beats += [dict(beats[-1], valid=0, clear=0)] * NMProcessingElement(cfg).latency

    def packed(values, bits):
        return sum((int(v) % (1 << bits)) << (j * bits) for j, v in enumerate(values))

    dut = NMProcessingElement(cfg)
    want = []

    async def tb(ctx):
        for b in beats:
            for port in ("w_value", "w_index", "act", "a_unsigned", "valid", "clear"):
                ctx.set(getattr(dut, port), b[port])
            await ctx.tick()
            want.append(ctx.get(dut.acc))
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert any(want)
    A = cfg.acc_bits
    lines = ["`timescale 1ns/1ps", "module tb;", "reg clk = 0, rst = 0;",
             f"reg [{lanes * 8 - 1}:0] w_value = 0; reg [{lanes * ib - 1}:0] w_index = 0;",
             f"reg [{apc * 8 - 1}:0] act = 0; reg a_unsigned = 0, valid = 0, clear = 0;",
             f"wire signed [{A - 1}:0] acc; wire acc_valid; integer errors = 0;",
             "dut d(.clk(clk), .rst(rst), .w_value(w_value), .w_index(w_index), .act(act),",
             "      .a_unsigned(a_unsigned), .valid(valid), .clear(clear), .acc(acc),",
             "      .acc_valid(acc_valid));",
             "initial begin", "  rst = 1; #1 clk = 1; #1 clk = 0; rst = 0;"]
    for b, w in zip(beats, want):
        lines += [f"  w_value = {lanes * 8}'d{packed(b['w_value'], 8)}; "
                  f"w_index = {lanes * ib}'d{packed(b['w_index'], ib)}; "
                  f"act = {apc * 8}'d{packed(b['act'], 8)}; a_unsigned = {b['a_unsigned']}; "
                  f"valid = {b['valid']}; clear = {b['clear']};",
                  "  #1 clk = 1; #1 clk = 0;",
                  f"  if (acc !== {w}) begin errors = errors + 1; "
                  f"$display(\"MISMATCH %0d want {w}\", acc); end"]
    lines += ['  if (errors == 0) $display("PASS"); $finish;', "end", "endmodule"]
    ecp5_icarus(src, lines)
