# amaranth: UnusedElaboratable=no
"""PostStage alone (a VBUF memory for the residual operand): each destination's addresses,
GELU and residual add bit-exact against the golden operators, writes ``post_latency`` cycles
after the row, the score-bank event and ``busy``."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.sim import Simulator

from nmaccel.hw.sta.buffers import buffer_specs
from nmaccel.hw.sta.isa import Dest, Post
from nmaccel.hw.sta.post import PostStage
from nmaccel.model.intops import AddParams, GeluParams, gelu_int, residual_add
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig
from nmaccel.spec.sta_timing import post_latency

CFG = StaConfig(rows=4, cols=4, lanes=4, n=2, m=4, softmax_lanes=4, max_seq=16, wbuf_depth=64,
                abuf_depth=64, obuf_depth=64, pbuf_depth=64, cbuf_depth=8, vbuf_depth=64)
R, C, VB, AB = CFG.rows, CFG.cols, CFG.vec_bits, CFG.act_bits
KEY_TILES = -(-CFG.max_seq // C)


class _Harness(Elaboratable):
    def __init__(self, vbuf):
        self.post = PostStage(CFG)
        self.vbuf = vbuf

    def elaborate(self, platform):
        m = Module()
        m.submodules.post = self.post
        spec = buffer_specs(CFG)["VBUF"]
        mem = m.submodules.vbuf = memory.Memory(shape=unsigned(spec.width), depth=spec.depth,
                                                init=self.vbuf)
        wiring.connect(m, self.post.vbuf_rd, mem.read_port())
        return m


def _lanes_word(values, bits):
    return sum((int(v) & ((1 << bits) - 1)) << (i * bits) for i, v in enumerate(values))


def _signed(v, bits):
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _run(rows, params, vbuf):
    """Feed ``rows`` (one per cycle: dict with lanes, row, tag); returns every write as
    ``(cycle, port, addr, data, en)`` and bank events ``(cycle, bank)``."""
    top = _Harness(vbuf)
    post = top.post
    writes, banks, busy = [], [], []

    async def tb(ctx):
        for i, word in enumerate(params):
            ctx.set(post.params[i].as_value(), word)
        for cycle in range(len(rows) + post_latency(CFG) + 3):
            if cycle < len(rows):
                ctx.set(post.rows.payload, rows[cycle])
                ctx.set(post.rows.valid, 1)
            else:
                ctx.set(post.rows.valid, 0)
            for port in ("obuf_wr", "vbuf_wr", "abuf_wr", "scbuf_wr"):
                p = getattr(post, port)
                if ctx.get(p.en):
                    writes.append((cycle, port, ctx.get(p.addr), ctx.get(p.data), ctx.get(p.en)))
            if ctx.get(post.bank_filled.valid):
                banks.append((cycle, ctx.get(post.bank_filled.payload.bank)))
            busy.append(ctx.get(post.busy))
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return writes, banks, busy


def _row(values, r, **tag):
    return {"lanes": [int(v) for v in values], "row": r, "tag": tag}


def test_obuf_and_residual_add_into_vbuf():
    rng = np.random.default_rng(1)
    lat = post_latency(CFG)
    x = rng.integers(-3000, 3000, (R, C))
    resid = rng.integers(-3000, 3000, (R, C))
    vbuf = [0] * 64
    for r in range(R):
        vbuf[20 + r] = _lanes_word(resid[r], VB)
    p = AddParams(mult_a=20000, mult_b=30000, shift=15, out_bits=VB)
    params = [sta_isa.encode_add_params(CFG, p.mult_a, p.mult_b, p.shift), 0]
    rows = [_row(x[r], r, addr=10, dest=Dest.OBUF) for r in range(R)] + \
        [_row(x[r], r, addr=20, dest=Dest.VBUF, post=Post.ADD) for r in range(R)]
    writes, _, busy = _run(rows, params, vbuf)
    assert [(c, port, a) for c, port, a, *_ in writes] == \
        [(r + lat, "obuf_wr", 10 + r) for r in range(R)] + \
        [(R + r + lat, "vbuf_wr", 20 + r) for r in range(R)]
    acc = CFG.acc_bits
    assert [[_signed(d >> (c * acc), acc) for c in range(C)] for *_, d, _ in writes[:R]] == \
        x.tolist()
    want = residual_add(x, resid, p)
    assert [[_signed(d >> (c * VB), VB) for c in range(C)] for *_, d, _ in writes[R:]] == \
        want.tolist()
    assert busy == [1] * (2 * R + lat) + [0] * 3


def _slot_enables(slots, per_slot):
    """ABUF write enables of the activation slots ``slots`` (indices into the word)."""
    return sum(((1 << per_slot) - 1) << (i * per_slot) for i in slots)


def test_gelu_into_abuf_windows():
    rng = np.random.default_rng(2)
    lat = post_latency(CFG)
    x = rng.integers(-2000, 2000, (R, C))
    p = GeluParams(clip=1500, cp=600000, mult=12345, shift=30, zero=-5, out_bits=AB)
    params = sta_isa.encode_gelu_params(CFG, p.clip, p.cp, p.mult, p.shift, p.zero)
    ws, per_slot = CFG.acts_per_cycle, AB // int(np.gcd(AB, 32))
    # olay 0 (windows of acts_per_cycle slots, a multiple of R): row r goes to slot 2 + r
    rows = [_row(x[r], r, addr=7, slot=2, dest=Dest.ABUF, post=Post.GELU, olay=0)
            for r in range(R)]
    writes, _, _ = _run(rows, params, [0] * 64)
    want = gelu_int(x, p, CFG)
    assert [(c, port, a) for c, port, a, *_ in writes] == [(r + lat, "abuf_wr", 7)
                                                          for r in range(R)]
    for r, (*_, data, en) in enumerate(writes):
        slot = 2 + r                       # column c's window gets lane c in that slot
        assert en == _slot_enables([c * ws + slot for c in range(C)], per_slot)
        assert [_signed(data >> ((c * ws + slot) * AB), AB) for c in range(C)] == \
            want[r].tolist()


def test_transposed_abuf_and_score_bank():
    lat = post_latency(CFG)
    x = np.arange(R * C).reshape(R, C) - 5
    rows = [_row(x[r], r, addr=3, slot=4, dest=Dest.ABUF_T, olay=1) for r in range(R)] + \
        [_row(x[r], r, addr=2, dest=Dest.SOFTMAX, lastcmd=1, bank=1) for r in range(R)]
    writes, banks, _ = _run(rows, [0, 0], [0] * 64)
    ws, per_slot = CFG.acts_per_cycle, AB // int(np.gcd(AB, 32))
    for r, (cycle, port, addr, data, en) in enumerate(writes[:R]):
        # feature row r becomes column r's window: its C tokens in slots 4 .. 4 + C - 1
        assert (cycle, port, addr) == (r + lat, "abuf_wr", 3)
        assert en == _slot_enables([r * ws + j for j in range(4, 4 + C)], per_slot)
        assert [_signed(data >> ((r * ws + j) * AB), AB) for j in range(4, 4 + C)] == \
            [x[r, j % C] for j in range(4, 4 + C)]
    scores = writes[R:]
    assert [(c, port, a) for c, port, a, *_ in scores] == \
        [(R + r + lat, "scbuf_wr", 2 + r * KEY_TILES) for r in range(R)]
    assert banks == [(2 * R - 1 + lat, 1)]
