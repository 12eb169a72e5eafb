# amaranth: UnusedElaboratable=no
"""BufferPorts alone: who drives the shared buffer ports (host while idle, the core's
requesters while busy) and the write priorities; buffer_specs against the address map."""

from __future__ import annotations

import pytest
from amaranth.sim import Simulator

from nmaccel.hw.sta.buffers import BufferPorts, buffer_specs
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig, sta_preset


@pytest.mark.parametrize("preset", ["tiny", "ulx3s_board"])
def test_buffer_specs_cover_the_host_spaces(preset):
    cfg = sta_preset(preset)
    specs = buffer_specs(cfg)
    for space in ("CBUF", "WBUF", "ABUF", "PBUF", "OBUF", "CYCLOG", "VBUF"):
        assert specs[space].depth == sta_isa.space_depth(cfg, space)
        assert specs[space].width >= sta_isa.space_width(cfg, space)
    for space in ("CBUF", "WBUF", "ABUF", "PBUF", "VBUF"):          # host-written: padded
        assert specs[space].width % 32 == 0 and 32 % specs[space].granularity == 0
    assert specs["SBUF"].width == specs["ABUF"].width


def _run(cfg, body):
    dut = BufferPorts(cfg)

    async def tb(ctx):
        await body(ctx, dut)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


def test_read_ports_follow_busy_and_the_vector_sequencer():
    cfg = sta_preset("tiny")

    async def body(ctx, dut):
        requests = {"wbuf": ("mac", "host"), "abuf": ("mac", "host"),
                    "pbuf": ("vector", "drain", "host"), "vbuf": ("vector", "post", "host")}
        for mem, who in requests.items():
            for i, w in enumerate(who):
                ctx.set(getattr(dut, f"{mem}_{w}").addr, i + 1)
            ctx.set(getattr(dut, mem).data, 0x55)
        for busy, vector in ((0, 0), (0, 1), (1, 0), (1, 1)):
            ctx.set(dut.busy, busy)
            ctx.set(dut.vector_active, vector)
            for mem, who in requests.items():
                owner = "host" if not busy else who[0] if vector or len(who) == 2 else who[1]
                assert ctx.get(getattr(dut, mem).addr) == who.index(owner) + 1, (mem, busy)
                for w in who:
                    assert ctx.get(getattr(dut, f"{mem}_{w}").data) == 0x55
            await ctx.tick()

    _run(cfg, body)


def test_cbuf_port_and_its_word_address():
    cfg = sta_preset("tiny")

    async def body(ctx, dut):
        ctx.set(dut.cbuf_ctrl.addr, 5)
        ctx.set(dut.cbuf_host.addr, 9)
        # idle: the host's address
        assert ctx.get(dut.cbuf.addr) == 9
        # START cycle without a host read: the controller's; with one: the host's
        ctx.set(dut.first_fetch, 1)
        assert ctx.get(dut.cbuf.addr) == 5
        ctx.set(dut.host_accept, 1)
        assert ctx.get(dut.cbuf.addr) == 9
        await ctx.tick()
        assert ctx.get(dut.cbuf_word_addr) == 9                 # the word on the port is 9's
        ctx.set(dut.first_fetch, 0)
        ctx.set(dut.host_accept, 0)
        ctx.set(dut.busy, 1)                                    # running: the controller's
        assert ctx.get(dut.cbuf.addr) == 5
        await ctx.tick()
        assert ctx.get(dut.cbuf_word_addr) == 5

    _run(cfg, body)


def test_write_priorities_post_vector_host():
    cfg = StaConfig(rows=2, cols=3, lanes=4, softmax_lanes=2, max_seq=16)   # VBUF words padded
    lane_bits = cfg.cols * cfg.vec_bits
    assert buffer_specs(cfg)["VBUF"].width > lane_bits

    async def body(ctx, dut):
        for mem in ("vbuf", "abuf"):
            host, vec, post, out = (getattr(dut, f"{mem}_{w}") for w in ("host_w", "vector_w",
                                                                         "post_w", "w"))
            width = len(out.data)
            ctx.set(host.addr, 1)
            ctx.set(host.data, (1 << width) - 1)
            ctx.set(host.en, 1)
            ctx.set(vec.addr, 2)
            ctx.set(vec.data, 0x1234)
            ctx.set(post.addr, 3)
            ctx.set(post.data, 0x5678)
            assert (ctx.get(out.addr), ctx.get(out.en)) == (1, 1)        # only the host writes
            ctx.set(vec.en, 1)
            assert ctx.get(out.addr) == 2
            ctx.set(post.en, 1)
            assert ctx.get(out.addr) == 3
            if mem == "vbuf":    # all enables; lane bits from the post stage, padding from host
                assert ctx.get(out.en) == (1 << len(out.en)) - 1
                assert ctx.get(out.data) == \
                    (((1 << width) - 1) & ~((1 << lane_bits) - 1)) | 0x5678
            else:                # the writer's own enables and data
                assert (ctx.get(out.en), ctx.get(out.data)) == (1, 0x5678)
            await ctx.tick()

    _run(cfg, body)
