# amaranth: UnusedElaboratable=no
"""VectorSequencer alone (VBUF and PBUF memories; VBUF and ABUF writes captured): LAYERNORM
and REQUANT over several token tiles, bit-exact against the golden operators, with the
command's cycles from the spec (VEC_START, VEC_TAIL, the units' latencies)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.sim import Simulator

from nmaccel.hw.sta.buffers import abuf_granularity, buffer_specs
from nmaccel.hw.sta.sequencer import VectorSequencer
from nmaccel.model.intops import LayerNormParams, layernorm_int
from nmaccel.model.quant import requant
from nmaccel.spec import sta_isa
from nmaccel.spec.config import REQUANT_LATENCY, StaConfig
from nmaccel.spec.sta_timing import VEC_START, VEC_TAIL
from nmaccel.spec.vector_timing import LAYERNORM_LATENCY, layernorm_block_interval

CFG = StaConfig(rows=4, cols=4, lanes=4, n=2, m=4, softmax_lanes=4, max_seq=16, wbuf_depth=64,
                abuf_depth=64, obuf_depth=64, pbuf_depth=64, cbuf_depth=8, vbuf_depth=64)
C, VB, AB = CFG.cols, CFG.vec_bits, CFG.act_bits


class _Harness(Elaboratable):
    def __init__(self, vbuf, pbuf):
        self.vector = VectorSequencer(CFG)
        self.images = {"VBUF": vbuf, "PBUF": pbuf}

    def elaborate(self, platform):
        m = Module()
        m.submodules.vector = self.vector
        specs = buffer_specs(CFG)
        for name in ("VBUF", "PBUF"):
            spec = specs[name]
            mem = m.submodules[name.lower()] = memory.Memory(
                shape=unsigned(spec.width), depth=spec.depth, init=self.images[name])
            wiring.connect(m, getattr(self.vector, f"{name.lower()}_rd"), mem.read_port())
        return m


def _signed(v, bits):
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _run(cmd, params, vbuf, pbuf):
    top = _Harness(vbuf, pbuf)
    vec = top.vector
    out = {"vbuf": {}, "abuf": {}}
    per_slot = AB // abuf_granularity(CFG)

    async def tb(ctx):
        ctx.set(vec.cmd.as_value(), cmd)
        for i, word in enumerate(params):
            ctx.set(vec.params[i].as_value(), word)
        await ctx.tick()
        ctx.set(vec.go, 1)
        for cycle in range(2000):
            assert ctx.get(vec.active)
            if ctx.get(vec.vbuf_wr.en):
                data = ctx.get(vec.vbuf_wr.data)
                out["vbuf"][ctx.get(vec.vbuf_wr.addr)] = [_signed(data >> (c * VB), VB)
                                                          for c in range(C)]
            en = ctx.get(vec.abuf_wr.en)
            if en:
                addr, data = ctx.get(vec.abuf_wr.addr), ctx.get(vec.abuf_wr.data)
                for slot in range(C * CFG.acts_per_cycle):
                    if en >> (slot * per_slot) & 1:
                        out["abuf"][(addr, slot)] = _signed(data >> (slot * AB), AB)
            if ctx.get(vec.done):
                out["cycles"] = cycle
                break
            await ctx.tick()
        await ctx.tick()
        ctx.set(vec.go, 0)
        await ctx.tick()
        assert not ctx.get(vec.active)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return out


def _inputs(rng, n_tiles, length, a_base, a_stride):
    x = rng.integers(-(1 << 13), 1 << 13, (n_tiles, C, length))       # tile, token, feature
    vbuf = [0] * CFG.vbuf_depth
    for t in range(n_tiles):
        for f in range(length):
            vbuf[a_base + t * a_stride + f] = sum((int(v) & ((1 << VB) - 1)) << (c * VB)
                                                  for c, v in enumerate(x[t, :, f]))
    return x, vbuf


@pytest.mark.parametrize("olay", [0, 1])
def test_layernorm_tiles_in_place_and_into_abuf(olay):
    rng = np.random.default_rng(olay)
    n_tiles, length, a_base, a_stride, o_base, o_stride, p_base = 2, 12, 3, 16, 5, 4, 2
    x, vbuf = _inputs(rng, n_tiles, length, a_base, a_stride)
    gamma = rng.integers(-30000, 30000, length)
    beta = rng.integers(-(1 << 20), 1 << 20, length)
    p16 = LayerNormParams(tuple(gamma), tuple(beta), 23000, 22, out_bits=VB)
    mult8, shift8 = 20000, 20
    pbuf = [0] * CFG.pbuf_depth
    for f in range(length):
        pbuf[p_base + f] = sta_isa.encode_ln_params(CFG, int(gamma[f]), int(beta[f]))
    cmd = sta_isa.encode_command(CFG, op=sta_isa.Opcode.LAYERNORM, dest=sta_isa.Dest.ABUF,
                                 olay=olay, n_tiles=n_tiles, length=length, a_base=a_base,
                                 a_stride=a_stride, o_base=o_base, o_stride=o_stride,
                                 p_base=p_base)
    params = [sta_isa.encode_params(CFG, 0, p16.mult, p16.shift),
              sta_isa.encode_params(CFG, 0, mult8, shift8)]
    out = _run(cmd, params, vbuf, pbuf)
    assert out["cycles"] == VEC_START + n_tiles * layernorm_block_interval(CFG, length) \
        + LAYERNORM_LATENCY + VEC_TAIL - 1
    window = sta_isa.window(CFG, olay)
    for t in range(n_tiles):
        y = layernorm_int(x[t], p16, CFG)                         # tokens × features
        y8 = requant(y, mult8, shift8, AB, mult_bits=CFG.requant_mult_bits)
        for f in range(length):
            assert out["vbuf"][a_base + t * a_stride + f] == y[:, f].tolist()
            addr = o_base + t * o_stride + f // window
            assert [out["abuf"][(addr, c * CFG.acts_per_cycle + f % window)]
                    for c in range(C)] == y8[:, f].tolist()


def test_requant_tiles_into_abuf():
    rng = np.random.default_rng(5)
    n_tiles, length, a_base, a_stride, o_base, o_stride = 3, 5, 0, 8, 1, 2
    x, vbuf = _inputs(rng, n_tiles, length, a_base, a_stride)
    mult, shift = 300, 12
    cmd = sta_isa.encode_command(CFG, op=sta_isa.Opcode.REQUANT, dest=sta_isa.Dest.ABUF,
                                 n_tiles=n_tiles, length=length, a_base=a_base,
                                 a_stride=a_stride, o_base=o_base, o_stride=o_stride)
    out = _run(cmd, [sta_isa.encode_params(CFG, 0, mult, shift), 0], vbuf,
               [0] * CFG.pbuf_depth)
    assert out["cycles"] == VEC_START + n_tiles * length + REQUANT_LATENCY + VEC_TAIL - 1
    assert out["vbuf"] == {}                                    # REQUANT leaves VBUF alone
    window = sta_isa.window(CFG, 0)
    for t in range(n_tiles):
        want = requant(x[t], mult, shift, AB, mult_bits=CFG.requant_mult_bits)
        for f in range(length):
            addr = o_base + t * o_stride + f // window
            assert [out["abuf"][(addr, c * CFG.acts_per_cycle + f % window)]
                    for c in range(C)] == want[:, f].tolist()
