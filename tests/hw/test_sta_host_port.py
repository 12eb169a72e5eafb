# amaranth: UnusedElaboratable=no
"""HostPort alone (with plain memories on its ports): writes and read-back of every space
through 32-bit slices, CSR reads, START, the read latency and the busy rule."""

from __future__ import annotations

import random

from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.sim import Simulator

from nmaccel.hw.sta.buffers import buffer_specs
from nmaccel.hw.sta.host_port import HOST_READ_SPACES, HOST_WRITE_SPACES, HostPort
from nmaccel.sim.amaranth_streams import stream_get, stream_put
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig
from nmaccel.spec.sta_timing import HOST_READ_LATENCY

CFG = StaConfig(rows=2, cols=3, lanes=4, softmax_lanes=2, max_seq=16, wbuf_depth=64,
                abuf_depth=64, obuf_depth=64, pbuf_depth=32, cbuf_depth=8, vbuf_depth=32)


class _Harness(Elaboratable):
    """HostPort with one memory per host space on its ports."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.host = HostPort(cfg)

    def elaborate(self, platform):
        m = Module()
        m.submodules.host = self.host
        specs = buffer_specs(self.cfg)
        for name in HOST_READ_SPACES:
            spec = specs[name]
            mem = m.submodules[name.lower()] = memory.Memory(
                shape=unsigned(spec.width), depth=spec.depth, init=[])
            if name in HOST_WRITE_SPACES:
                wiring.connect(m, getattr(self.host, f"{name.lower()}_wr"),
                               mem.write_port(granularity=spec.granularity))
            wiring.connect(m, getattr(self.host, f"{name.lower()}_rd"), mem.read_port())
        return m


def _run(body):
    top = _Harness(CFG)

    async def tb(ctx):
        await body(ctx, top.host)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


async def _read(ctx, host, addr):
    await stream_put(ctx, host.rd, {"addr": addr})
    return await stream_get(ctx, host.rd_data)


def test_every_space_writes_and_reads_back_by_slices():
    rng = random.Random(1)

    async def body(ctx, host):
        want = {}
        for name in HOST_WRITE_SPACES:
            for entry in (0, 1, sta_isa.space_depth(CFG, name) - 1):
                for sub in range(sta_isa.sub_words(CFG, name)):
                    addr = sta_isa.host_address(CFG, name, entry, sub)
                    want[addr] = rng.getrandbits(32)
                    await stream_put(ctx, host.wr, {"addr": addr, "data": want[addr]})
        for addr, data in want.items():              # words are padded to whole slices
            assert await _read(ctx, host, addr) == data, hex(addr)
        # a slice beyond the word reads 0; an entry beyond the buffer is not written
        wbuf_slices = sta_isa.sub_words(CFG, "WBUF")
        assert await _read(ctx, host, sta_isa.host_address(CFG, "WBUF", 0) + wbuf_slices) == 0
        depth = sta_isa.space_depth(CFG, "CBUF")
        beyond = sta_isa.host_address(CFG, "CBUF", depth - 1) + \
            (1 << sta_isa.sub_bits(CFG, "CBUF"))
        await stream_put(ctx, host.wr, {"addr": beyond, "data": 1})
        assert await _read(ctx, host, sta_isa.host_address(CFG, "CBUF", 0)) == \
            want[sta_isa.host_address(CFG, "CBUF", 0)]

    _run(body)


def test_csrs_start_and_read_latency():
    seen = {}

    async def body(ctx, host):
        ctx.set(host.status, {"busy": 0, "done": 1, "error": 1, "code": 5, "command": 3})
        ctx.set(host.count, 7)
        ctx.set(host.counters, {name.lower(): 100 + i for i, name in enumerate(sta_isa.COUNTERS)})
        csr = {name: sta_isa.host_address(CFG, "CSR", idx) for name, idx in sta_isa.CSR.items()}
        seen["status"] = await _read(ctx, host, csr["STATUS"])
        seen["start"] = await _read(ctx, host, csr["START"])
        seen["config"] = await _read(ctx, host, csr["CONFIG"])
        seen["counters"] = [await _read(ctx, host, csr[name]) for name in sta_isa.COUNTERS]
        seen["unused"] = await _read(ctx, host, sta_isa.host_address(CFG, "CSR", 15))

        # latency: accepted in cycle t, on rd_data from t + HOST_READ_LATENCY
        ctx.set(host.rd.payload, {"addr": csr["STATUS"]})
        ctx.set(host.rd.valid, 1)
        assert ctx.get(host.rd.ready) and ctx.get(host.read_accept)
        for cycle in range(1, HOST_READ_LATENCY + 1):
            await ctx.tick()
            ctx.set(host.rd.valid, 0)
            assert ctx.get(host.rd_data.valid) == (cycle == HOST_READ_LATENCY)
        ctx.set(host.rd_data.ready, 1)
        await ctx.tick()
        ctx.set(host.rd_data.ready, 0)

        # START: passed on while idle only
        ctx.set(host.wr.payload, {"addr": csr["START"], "data": 4})
        ctx.set(host.wr.valid, 1)
        assert ctx.get(host.start.valid) and ctx.get(host.start.payload.count) == 4
        ctx.set(host.status.busy, 1)
        assert not ctx.get(host.start.valid) and ctx.get(host.wr.ready)
        ctx.set(host.wr.valid, 0)

        # busy: shared spaces wait, the others are served
        for name in ("CBUF", "WBUF", "ABUF", "PBUF", "VBUF"):
            ctx.set(host.rd.payload, {"addr": sta_isa.host_address(CFG, name, 0)})
            ctx.set(host.rd.valid, 1)
            assert not ctx.get(host.rd.ready), name
        ctx.set(host.rd.valid, 0)
        seen["busy_reads"] = [await _read(ctx, host, sta_isa.host_address(CFG, name, 0))
                              for name in ("OBUF", "CYCLOG")] + \
            [await _read(ctx, host, csr["STATUS"])]

    _run(body)
    assert sta_isa.decode_status(seen["status"]) == sta_isa.Status(
        busy=False, done=True, error=True, code=5, command=3)
    assert seen["start"] == 7
    assert seen["config"] == sta_isa.config_word(CFG)
    assert seen["counters"] == [100 + i for i in range(len(sta_isa.COUNTERS))]
    assert seen["unused"] == 0
    assert seen["busy_reads"] == [0, 0, sta_isa.encode_status(busy=1, done=1, error=1, code=5,
                                                              command=3)]
