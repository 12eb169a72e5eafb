# amaranth: UnusedElaboratable=no
"""``UartTop`` with ``host_stage``: the bridge acknowledges a WRITE once the write stage took
its word, so a READ that follows while the core still holds the write off must wait for it
(the read stage holds while a write is in the write stage); without the hold the READ would
return the old word. A fake core stands in for StaCore/ConvHost: one 32-bit register, writes
refused while its ``stall`` input is high, reads answered from the register."""

from __future__ import annotations

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from nmaccel.boards.uart_top import UartTop
from nmaccel.hw.common.bridge import host_read_layout, host_write_layout
from nmaccel.sim.uart_amaranth import uart_recv, uart_send
from nmaccel.spec import uart_protocol as proto
from nmaccel.spec.config import conv_preset

DIVISOR = 4


class FakeCore(wiring.Component):
    def __init__(self, addr_bits: int):
        super().__init__({
            "wr": In(stream.Signature(host_write_layout(addr_bits))),
            "rd": In(stream.Signature(host_read_layout(addr_bits))),
            "rd_data": Out(stream.Signature(32)),
            "busy": Out(1), "done": Out(1), "error": Out(1), "stall": In(1)})

    def elaborate(self, platform):
        m = Module()
        word = Signal(32)
        pending = Signal()
        m.d.comb += [self.wr.ready.eq(~self.stall), self.rd.ready.eq(~pending),
                     self.rd_data.valid.eq(pending), self.rd_data.payload.eq(word)]
        with m.If(self.wr.valid & self.wr.ready):
            m.d.sync += word.eq(self.wr.payload.data)
        with m.If(self.rd.valid & self.rd.ready):
            m.d.sync += pending.eq(1)
        with m.Elif(self.rd_data.ready):
            m.d.sync += pending.eq(0)
        return m


async def _request(ctx, top, frame: bytes, reply_len: int) -> tuple[int, bytes]:
    await uart_send(ctx, top.rx, frame, DIVISOR)
    reply = await uart_recv(ctx, top.tx, proto.FRAME_OVERHEAD + reply_len, DIVISOR,
                            timeout=4000)
    cmd, payload = proto.decode_frame(reply)
    return payload[0], payload[1:]


@pytest.mark.parametrize("stage", [True, False])
def test_a_read_never_overtakes_an_acknowledged_write(stage):
    cfg = conv_preset("small")
    core = FakeCore(proto.host_addr_bits(cfg))
    top = UartTop(cfg, core, DIVISOR, host_stage=stage)
    seen = {}
    released = Signal()

    async def host(ctx):
        ctx.set(top.rx, 1)
        await ctx.tick().repeat(20)
        status, _ = await _request(ctx, top, proto.encode_write(0, [0x1234_5678]), 1)
        seen["write"] = status
        seen["acknowledged_while_core_busy"] = not ctx.get(released)
        # the READ goes out while the write still waits in its stage (the bridge sends the
        # reply's header at once, then asks for the word)
        status, data = await _request(ctx, top, proto.encode_read(0, 1), 5)
        seen["read"] = (status, int.from_bytes(data, "little"))

    async def core_busy(ctx):
        ctx.set(core.stall, 1)                     # the core refuses writes ...
        await ctx.tick().repeat(1500)              # ... until the READ is on its way
        ctx.set(core.stall, 0)
        ctx.set(released, 1)

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(core_busy)
    sim.run_until(1e-6 * 20000)
    # with the stage the bridge acknowledges at once and the read waits for the write;
    # without it the bridge waits for the core before it replies; the READ sees the word
    assert seen == {"write": proto.STATUS["OK"], "acknowledged_while_core_busy": stage,
                    "read": (proto.STATUS["OK"], 0x1234_5678)}
