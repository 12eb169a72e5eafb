# amaranth: UnusedElaboratable=no
"""AttentionMover alone (an SCBUF memory holding scores; SBUF writes captured): bank states,
block counts, the probabilities in SBUF bit-exact against the golden softmax, and the timing
constants of the spec (SM_READ_START, SM_FIRST_IN) through the block's written cycle."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.sim import Simulator

from nmaccel.hw.sta.attention import AttentionMover
from nmaccel.hw.sta.buffers import abuf_granularity, buffer_specs
from nmaccel.model.softmax import softmax_int
from nmaccel.spec.config import StaConfig
from nmaccel.spec.softmax_timing import softmax_cycles
from nmaccel.spec.sta_timing import SM_FIRST_IN, SM_READ_START

CFG = StaConfig(rows=4, cols=4, lanes=4, n=2, m=4, softmax_lanes=4, max_seq=16, wbuf_depth=64,
                abuf_depth=64, obuf_depth=64, pbuf_depth=64, cbuf_depth=8, vbuf_depth=64)
R, C, B, AB = CFG.rows, CFG.cols, CFG.softmax_in_bits, CFG.act_bits
KEY_TILES = -(-CFG.max_seq // C)
WD, WS = CFG.dense_window, CFG.acts_per_cycle


class _Harness(Elaboratable):
    def __init__(self, scores):
        self.attention = AttentionMover(CFG)
        self.scores = scores

    def elaborate(self, platform):
        m = Module()
        m.submodules.attention = self.attention
        spec = buffer_specs(CFG)["SCBUF"]
        mem = m.submodules.scbuf = memory.Memory(shape=unsigned(spec.width), depth=spec.depth,
                                                 init=self.scores)
        wiring.connect(m, self.attention.scbuf_rd, mem.read_port())
        return m


def _bank_image(z, bank):
    """SCBUF entries of a bank: query r, key tile t at ``bank·R·T + r·T + t``."""
    image = {}
    for r in range(R):
        for t in range(KEY_TILES):
            keys = z[r, t * C:(t + 1) * C]
            image[bank * R * KEY_TILES + r * KEY_TILES + t] = sum(
                (int(v) & ((1 << B) - 1)) << (i * B) for i, v in enumerate(keys))
    return image


@pytest.mark.parametrize("length", [16, 10, 3])
def test_one_block_through_the_softmax_into_sbuf(length):
    rng = np.random.default_rng(length)
    base, bank = 1, 0
    z = np.zeros((R, KEY_TILES * C), dtype=np.int64)
    z[:, :length] = rng.integers(-(1 << (B - 1)), 1 << (B - 1), (R, length))
    image = _bank_image(z, bank)
    top = _Harness([image.get(i, 0) for i in range(buffer_specs(CFG)["SCBUF"].depth)])
    att = top.attention
    sbuf, trace = {}, {}
    per_slot = AB // abuf_granularity(CFG)

    async def tb(ctx):
        ctx.set(att.start, 1)
        await ctx.tick()
        ctx.set(att.start, 0)
        assert ctx.get(att.bank_free) and ctx.get(att.pending) == 0
        ctx.set(att.claims.payload, {"sbuf_base": base, "length": length})
        ctx.set(att.claims.valid, 1)
        await ctx.tick()
        ctx.set(att.claims.valid, 0)
        trace["claimed"] = (ctx.get(att.claimed_bank), ctx.get(att.pending),
                            ctx.get(att.bank_free))              # next bank (1) is free
        for _ in range(3):                                       # the GEMM writes scores
            await ctx.tick()
        ctx.set(att.bank_filled.payload, {"bank": bank})
        ctx.set(att.bank_filled.valid, 1)
        filled = 0
        for cycle in range(400):
            if cycle == 1:
                ctx.set(att.bank_filled.valid, 0)
            if ctx.get(att.busy) and "busy" not in trace:
                trace["busy"] = cycle - filled
            en = ctx.get(att.sbuf_wr.en)
            if en:
                addr, data = ctx.get(att.sbuf_wr.addr), ctx.get(att.sbuf_wr.data)
                for slot in range(C * WS):
                    if en >> (slot * per_slot) & 1:
                        sbuf[(addr, slot)] = (data >> (slot * AB)) & ((1 << AB) - 1)
            await ctx.tick()
            if "written" not in trace and ctx.get(att.pending) == 0:
                trace["written"] = cycle + 1 - filled
        trace["idle"] = not ctx.get(att.busy)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert trace["claimed"] == (bank, 1, 1)
    # the reader starts SM_READ_START cycles after the bank is full; its first beat reaches
    # the softmax unit SM_FIRST_IN cycles later; a row ending inside a window pads once
    assert trace["busy"] == SM_READ_START
    assert trace["idle"]
    if (-(-length // C) * C) % WD == 0:
        # rows that end on a window boundary: the block is written (``pending`` drops one
        # cycle later) when the cycle model says. (A row ending inside a window takes one
        # more cycle per row to zero the window's rest; the model counts one per block.)
        written = SM_READ_START + SM_FIRST_IN + softmax_cycles(CFG, [length] * R) - 1
        assert trace["written"] == written + 1
    want = softmax_int(z[:, :length], CFG)
    for r in range(R):                 # query r: column r of the block's windows
        got = [sbuf[(base + k // WD, r * WS + k % WD)] for k in range(length)]
        assert got == want[r].tolist(), r
        end = -(-length // WD) * WD
        assert all(sbuf[(base + k // WD, r * WS + k % WD)] == 0 for k in range(length, end))
