"""ExtWriter (Amaranth simulator): EXT_ADDR sets the address, EXT_DATA issues two SDRAM word
writes (low half first), EXT_WORD one, each advancing the address; requests wait for the
controller; the writer takes no new data until the last word is issued. And the host's
write list for an SDRAM image: EXT_ADDR per block, EXT_DATA pairs, EXT_WORD for an odd tail."""

from __future__ import annotations

import pytest
from amaranth.sim import Simulator

from nmaccel.hw.sta.ext_writer import ExtWriter
from nmaccel.model.sta_program import StaProgram
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig
from nmaccel.spec.sdram import IS42S16160G_7


def test_ext_writer_requests():
    dut = ExtWriter(IS42S16160G_7.at(100))
    issued, taken = [], []

    async def tb(ctx):
        ctx.set(dut.set_addr.valid, 1)
        ctx.set(dut.set_addr.payload, 1000)
        await ctx.tick()
        ctx.set(dut.set_addr.valid, 0)
        assert ctx.get(dut.addr) == 1000
        writes = [(0xBEEF1234, 2), (0x5678, 1), (0xCAFED00D, 2)]
        ready_pattern = [1, 0, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1]
        cycle = 0
        pending = list(writes)
        while pending or ctx.get(dut.busy):
            if pending:
                ctx.set(dut.data.valid, 1)
                ctx.set(dut.data.payload, {"data": pending[0][0], "words": pending[0][1]})
            else:
                ctx.set(dut.data.valid, 0)
            ctx.set(dut.mem.ready, ready_pattern[cycle % len(ready_pattern)])
            if pending and ctx.get(dut.data.ready):
                taken.append(pending.pop(0))
            if ctx.get(dut.mem.valid) and ctx.get(dut.mem.ready):
                p = ctx.get(dut.mem.payload)
                issued.append((p.addr, p.write, p.data))
            await ctx.tick()
            cycle += 1
            assert cycle < 100
        assert ctx.get(dut.addr) == 1005

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert issued == [(1000, 1, 0x1234), (1001, 1, 0xBEEF), (1002, 1, 0x5678),
                      (1003, 1, 0xD00D), (1004, 1, 0xCAFE)]
    assert len(taken) == 3


def test_host_writes_of_an_sdram_image():
    cfg = StaConfig(sdram_mhz=100)
    p = StaProgram(cfg)
    p.ext_image = {10: 0x1111, 11: 0x2222, 12: 0x3333, 40: 0x4444, 41: 0x5555}
    csr = {n: sta_isa.host_address(cfg, "CSR", sta_isa.CSR[n])
           for n in ("EXT_ADDR", "EXT_DATA", "EXT_WORD")}
    assert p.ext_writes() == [(csr["EXT_ADDR"], 10), (csr["EXT_DATA"], 0x22221111),
                              (csr["EXT_WORD"], 0x3333), (csr["EXT_ADDR"], 40),
                              (csr["EXT_DATA"], 0x55554444)]
    assert p.host_writes()[:5] == p.ext_writes()
    bare = StaProgram(StaConfig())
    bare.ext_image = {0: 1}
    with pytest.raises(ValueError, match=r"no external memory \(sdram_mhz=0\)"):
        bare.ext_writes()
