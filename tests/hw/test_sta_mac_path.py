# amaranth: UnusedElaboratable=no
"""MacPath alone (with plain memories on its ports): dense tiles with W from WBUF and from
ABUF, drained rows equal to acc + bias, at the latency of the spec; N:M metadata errors."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.sim import Simulator

from nmaccel.hw.sta.buffers import buffer_specs
from nmaccel.hw.sta.isa import ASrc, Dest, Mode, Osel, WSrc
from nmaccel.hw.sta.mac_path import MacPath
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig
from nmaccel.spec.sta_timing import DRAIN_LATENCY, capture_delay

CFG = StaConfig(rows=2, cols=2, lanes=4, n=2, m=4, softmax_lanes=2, max_seq=16, wbuf_depth=16,
                abuf_depth=16, obuf_depth=16, pbuf_depth=16, cbuf_depth=8)
R, C, L, AB, WB = CFG.rows, CFG.cols, CFG.lanes, CFG.act_bits, CFG.weight_bits
RATIO = sta_isa.dense_ratio(CFG)
WINDOW = CFG.acts_per_cycle


def _pack(values, bits, stride=None):
    stride = bits if stride is None else stride
    return sum((int(v) & ((1 << bits) - 1)) << (i * stride) for i, v in enumerate(values))


class _Harness(Elaboratable):
    def __init__(self, images):
        self.mac = MacPath(CFG)
        self.images = images

    def elaborate(self, platform):
        m = Module()
        m.submodules.mac = self.mac
        specs = buffer_specs(CFG)
        mems = {}
        for name in ("WBUF", "ABUF", "SBUF", "PBUF"):
            spec = specs[name]
            init = [self.images.get(name, {}).get(i, 0) for i in range(spec.depth)]
            mems[name] = m.submodules[name.lower()] = memory.Memory(
                shape=unsigned(spec.width), depth=spec.depth, init=init)
        for port, name in (("wbuf", "WBUF"), ("abuf", "ABUF"), ("abuf_w", "ABUF"),
                           ("sbuf", "SBUF"), ("pbuf", "PBUF")):
            wiring.connect(m, getattr(self.mac, port), mems[name].read_port())
        return m


def _dense_tile(wsrc, rng):
    """Images and beats of one dense tile of k_steps = 3 (slices 0, 1 of window 0, slice 0 of
    window 1) and the expected rows."""
    k_steps = 3
    x = rng.integers(-128, 128, (2, C, WINDOW))             # ABUF windows 0 and 1
    bias = rng.integers(-1000, 1000, R)
    images = {"ABUF": {i: _pack(x[i].reshape(-1), AB) for i in range(2)},
              "PBUF": {4 + r: sta_isa.encode_params(CFG, int(bias[r]), 1, 0) for r in range(R)}}
    if wsrc == WSrc.WBUF:
        w = rng.integers(-128, 128, (k_steps, R, L))
        word_bits = L * (CFG.weight_bits + CFG.index_bits)
        images["WBUF"] = {s: sum(_pack(w[s, r], WB) << (r * word_bits) for r in range(R))
                          for s in range(k_steps)}
        w_addr = list(range(k_steps))
    else:                    # row r's weights: column r's slice of ABUF windows 8, 9
        wa = rng.integers(-128, 128, (2, C, WINDOW))
        images["ABUF"].update({8 + i: _pack(wa[i].reshape(-1), AB) for i in range(2)})
        w = np.array([[wa[s // RATIO, r, (s % RATIO) * L:(s % RATIO + 1) * L] for r in range(R)]
                      for s in range(k_steps)])
        w_addr = [8 + s // RATIO for s in range(k_steps)]
    acc = np.zeros((R, C), dtype=np.int64)
    beats = []
    for s in range(k_steps):
        chunk, sl = s // RATIO, s % RATIO
        acc += w[s] @ x[chunk][:, sl * L:(sl + 1) * L].T
        beats.append({"first": s == 0, "last": s == k_steps - 1, "slice": sl,
                      "w_addr": w_addr[s], "a_addr": chunk,
                      "record": {"obuf_addr": 3, "pbuf_addr": 4, "osel": Osel.ACC,
                                 "tag": {"addr": 5, "dest": Dest.OBUF}}})
    return images, beats, acc + bias[:, None]


def _run(images, beats, wsrc, mode=Mode.DENSE):
    top = _Harness(images)
    mac = top.mac
    rows, issued = [], []

    async def tb(ctx):
        ctx.set(mac.mode, mode)
        ctx.set(mac.wsrc, wsrc)
        ctx.set(mac.asrc, ASrc.ABUF)
        for cycle in range(len(beats) + capture_delay(CFG) + R + DRAIN_LATENCY + 4):
            if cycle < len(beats):
                ctx.set(mac.beats.payload, beats[cycle])
                ctx.set(mac.beats.valid, 1)
                issued.append(cycle)
            else:
                ctx.set(mac.beats.valid, 0)
            if ctx.get(mac.rows.valid):
                rows.append((cycle, ctx.get(mac.rows.payload.row),
                             [ctx.get(mac.rows.payload.lanes[c]) for c in range(C)],
                             ctx.get(mac.rows.payload.tag.addr), ctx.get(mac.busy)))
            await ctx.tick()
        assert not ctx.get(mac.busy)
        rows.append(ctx.get(mac.meta_err))
        ctx.set(mac.clear_err, 1)
        await ctx.tick()
        rows.append(ctx.get(mac.meta_err))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return rows, issued


def test_dense_tile_rows_and_latency():
    for wsrc in (WSrc.WBUF, WSrc.ABUF):
        images, beats, want = _dense_tile(wsrc, np.random.default_rng(int(wsrc.value)))
        rows, issued = _run(images, beats, wsrc)
        *rows, meta_before, meta_after = rows
        last = issued[-1]
        assert [cycle for cycle, *_ in rows] == \
            [last + capture_delay(CFG) + r + DRAIN_LATENCY for r in range(R)]
        assert [row for _, row, *_ in rows] == list(range(R))
        assert [lanes for _, _, lanes, *_ in rows] == want.tolist()
        assert all(tag_addr == 5 and busy for *_, tag_addr, busy in rows)
        assert not meta_before and not meta_after


def test_bad_metadata_sets_meta_err_until_cleared():
    # sparse beats over an all-zero WBUF: repeated index 0 within each N:M group
    images, beats, _ = _dense_tile(WSrc.WBUF, np.random.default_rng(3))
    images["WBUF"] = {}
    *_, meta_before, meta_after = _run(images, beats, WSrc.WBUF, mode=Mode.SPARSE)[0]
    assert meta_before and not meta_after
