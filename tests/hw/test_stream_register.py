# amaranth: UnusedElaboratable=no
"""``StreamRegister``: every beat passes once, in order, under random source pauses and sink
backpressure; nothing is taken while ``hold`` is high; ``o.valid``/``o.payload`` are registers
(the stage adds a cycle); the UART top's read stage holds while a write is in its stage."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import unsigned
from amaranth.lib import data
from amaranth.sim import Simulator

from nmaccel.hw.common.stream_register import StreamRegister
from nmaccel.sim.amaranth_streams import stream_get, stream_put


@pytest.mark.parametrize("idle,backpressure", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.6), (0.4, 0.4)])
def test_every_beat_passes_in_order(idle, backpressure):
    layout = data.StructLayout({"addr": unsigned(10), "data": unsigned(32)})
    dut = StreamRegister(layout)
    rng = random.Random(f"{idle}/{backpressure}")
    beats = [{"addr": rng.randrange(1 << 10), "data": rng.randrange(1 << 32)} for _ in range(60)]
    got = []

    async def source(ctx):
        for b in beats:
            await stream_put(ctx, dut.i, b, rng, idle)

    async def sink(ctx):
        for _ in beats:
            p = await stream_get(ctx, dut.o, rng, backpressure)
            got.append({"addr": p.addr, "data": p.data})

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run_until(1e-6 * 2000)
    assert got == beats


def test_outputs_are_registered_and_hold_blocks_taking():
    dut = StreamRegister(unsigned(8))

    async def tb(ctx):
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.hold, 1)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 0x5A)
        assert ctx.get(dut.i.ready) == 0                # held: nothing taken
        await ctx.tick()
        assert ctx.get(dut.o.valid) == 0 and ctx.get(dut.full) == 0
        ctx.set(dut.hold, 0)
        assert ctx.get(dut.i.ready) == 1
        assert ctx.get(dut.o.valid) == 0                # no path from i to o in one cycle
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        assert ctx.get(dut.o.valid) == 1 and ctx.get(dut.o.payload) == 0x5A
        assert ctx.get(dut.i.ready) == 0                # one entry
        for _ in range(3):                              # kept until taken
            await ctx.tick()
            assert ctx.get(dut.o.valid) == 1 and ctx.get(dut.o.payload) == 0x5A
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        assert ctx.get(dut.o.valid) == 0 and ctx.get(dut.i.ready) == 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def test_bad_shape_is_refused():
    with pytest.raises(TypeError, match="shape must be shape-castable, not 'x'"):
        StreamRegister("x")
