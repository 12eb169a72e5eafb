"""cocotb bench of :class:`nmaccel.hw.sta.fetch.WeightFetch` behind
:class:`~nmaccel.hw.common.sdram.SdramController`, with the checking SDRAM model
(:class:`nmaccel.sim.sdram_model.SdramModel`) holding a random image (top ``fetch_top``:
controller + engine + a buffer memory with a read port ``rd_addr``/``rd_data`` for the
bench).

Environment: ``NMACCEL_FETCH_JOB`` (JSON: ``timing`` (SdramTiming fields), ``entry_bits``,
``image`` (hex SDRAM words from address 0), ``requests`` (``[ext_addr, base, entries]``)),
``NMACCEL_FETCH_RESULT`` (JSON written: the buffer entries read back per request, the
cycles from each request to ``busy`` low, the model's violations). Each request waits at most
``10 * words + 2000`` cycles.
"""

from __future__ import annotations

import json
import os

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from nmaccel.sim.cocotb_streams import BenchTimeout, reset, start_clock
from nmaccel.sim.sdram_model import SdramModel
from nmaccel.spec.sdram import SdramTiming

__all__ = ["TOP"]

TOP = "fetch_top"


@cocotb.test()
async def run_fetch_bench(dut):
    with open(os.environ["NMACCEL_FETCH_JOB"], encoding="utf-8") as fh:
        job = json.load(fh)
    t = SdramTiming(**job["timing"])
    start_clock(dut.clk)
    model = SdramModel(dut, "pins__", t)
    model.load(int(word, 16) for word in job["image"])
    cocotb.start_soon(model.run(dut.clk))
    dut.req__valid.value = 0
    dut.rd_addr.value = 0
    await reset(dut, dut.clk)
    waited = 0
    while not int(dut.ready.value):
        await RisingEdge(dut.clk)
        waited += 1
        if waited > t.init_wait + 10_000:
            raise BenchTimeout("the SDRAM controller did not finish its power-up")
    wpe = -(-job["entry_bits"] // t.data_bits)
    results = []
    for ext_addr, base, entries in job["requests"]:
        dut.req__payload.value = ext_addr | (base << t.addr_bits) \
            | (entries << (t.addr_bits + int(job["addr_bits"])))
        dut.req__valid.value = 1
        start = model.cycle
        await ReadOnly()
        assert int(dut.req__ready.value), "the engine is not idle"
        await RisingEdge(dut.clk)
        dut.req__valid.value = 0
        limit = 10 * entries * wpe + 2000
        cycles = 0
        while True:
            await ReadOnly()
            if not int(dut.busy.value):
                break
            await RisingEdge(dut.clk)
            cycles += 1
            if cycles > limit:
                raise BenchTimeout(f"fetch of {entries} entries still busy after {limit} "
                                   "cycles")
        took = model.cycle - start
        await RisingEdge(dut.clk)
        got = []
        for e in range(entries):
            dut.rd_addr.value = base + e
            await RisingEdge(dut.clk)
            await ReadOnly()
            got.append(hex(int(dut.rd_data.value)))
            await RisingEdge(dut.clk)
        results.append({"entries": got, "cycles": took})
        for _ in range(37):
            await RisingEdge(dut.clk)
    with open(os.environ["NMACCEL_FETCH_RESULT"], "w", encoding="utf-8") as fh:
        json.dump({"results": results, "violations": model.violations}, fh)
