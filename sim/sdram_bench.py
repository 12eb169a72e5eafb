"""cocotb bench of :class:`nmaccel.hw.common.sdram.SdramController` (top ``sdram_top``)
against the checking memory model :class:`nmaccel.sim.sdram_model.SdramModel`.

Driven by ``tests/sim/test_sdram_rtl.py`` through environment variables:

``NMACCEL_SDRAM_CHIP``     the chip's real :class:`~nmaccel.spec.sdram.SdramTiming` (JSON),
                           what the model checks (the controller may be built with another);
``NMACCEL_SDRAM_SEED``     seed of the traffic, the idle and back-pressure draws;
``NMACCEL_SDRAM_REQUESTS`` number of random requests;
``NMACCEL_SDRAM_RESULT``   where the JSON summary goes;
``NMACCEL_SDRAM_STREAMS``  lengths of the sequential read streams timed at the end
                           (comma-separated words, default 512).

Traffic: runs of consecutive addresses (within a row and across rows into the next bank)
and scattered single words, writes and reads mixed, with random idle cycles on ``cmd`` and
random back-pressure on ``rdata``; every read is compared with the last word written there
(in-order scoreboard). Then, with no idle and no back-pressure, sequential reads measure the
streaming rate. The summary holds the model's violations, the mismatches, the
command counts and the cycles; the bench itself only fails on a hang (each wait has a cycle
limit), so that a test can assert what the model found.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from nmaccel.sim.cocotb_streams import BenchTimeout, reset, start_clock
from nmaccel.sim.sdram_model import SdramModel
from nmaccel.spec.sdram import SdramTiming

__all__ = ["TOP", "pack_request"]

#: Verilog name of the unit under test.
TOP = "sdram_top"


def pack_request(timing: SdramTiming, addr: int, write: bool, data: int) -> int:
    """The ``cmd`` payload word (:func:`nmaccel.hw.common.sdram.request_layout`)."""
    return addr | (int(write) << timing.addr_bits) | (data << (timing.addr_bits + 1))


def traffic(timing: SdramTiming, rng: random.Random, count: int) -> list[tuple[int, bool, int]]:
    """``count`` requests ``(addr, write, data)``: sequential runs (some crossing a row end),
    scattered words, and reads of places written before."""
    cols = 1 << timing.col_bits
    top = 1 << timing.addr_bits
    out, written, runs = [], [], []
    while len(out) < count:
        kind = rng.random()
        if kind < 0.4:                                    # a run, maybe across a row end
            write = rng.random() < 0.5 or not runs
            if not write and rng.random() < 0.8:          # read a written run back
                start, length = rng.choice(runs)
            else:
                start = rng.randrange(top) if rng.random() < 0.5 else \
                    (rng.randrange(top // cols) * cols + cols - rng.randrange(1, 9)) % top
                length = rng.randrange(2, 24)
            if write:
                runs.append((start, length))
            for i in range(length):
                addr = (start + i) % top
                out.append((addr, write, rng.getrandbits(timing.data_bits)))
                if write:
                    written.append(addr)
        elif kind < 0.7 and written:                      # read back scattered words
            for _ in range(rng.randrange(1, 6)):
                out.append((rng.choice(written), False, 0))
        else:                                             # single scattered writes
            addr = rng.randrange(top)
            out.append((addr, True, rng.getrandbits(timing.data_bits)))
            written.append(addr)
    return out[:count]


@cocotb.test()
async def run_sdram_bench(dut):
    chip = SdramTiming(**json.loads(os.environ["NMACCEL_SDRAM_CHIP"]))
    seed = int(os.environ.get("NMACCEL_SDRAM_SEED", "0"))
    count = int(os.environ.get("NMACCEL_SDRAM_REQUESTS", "2000"))
    rng = random.Random(seed)
    start_clock(dut.clk)
    model = SdramModel(dut, "pins__", chip, seed)
    cocotb.start_soon(model.run(dut.clk))
    dut.cmd__valid.value = 0
    dut.rdata__ready.value = 0
    await reset(dut, dut.clk)
    cycles = 0
    limit = chip.init_wait + 100 * chip.t_rfc * (chip.init_refreshes + 1) + 1000
    while not int(dut.ready.value):
        await RisingEdge(dut.clk)
        cycles += 1
        if cycles > limit:
            raise BenchTimeout(f"the controller was not ready after {limit} cycles")
    ready_cycle = model.cycle
    requests = traffic(chip, rng, count)
    expected, memory = [], {}
    for addr, write, data in requests:
        if write:
            memory[addr] = data
        else:
            expected.append(memory.get(addr))
    got: list[int] = []
    state = {"idle": 0.3, "backpressure": 0.3}

    async def consume(n: int) -> None:
        waited = 0
        while len(got) < n:
            ready = rng.random() >= state["backpressure"]
            dut.rdata__ready.value = int(ready)
            await ReadOnly()
            fire = ready and int(dut.rdata__valid.value)
            value = int(dut.rdata__payload.value) if fire else None
            await RisingEdge(dut.clk)
            if fire:
                got.append(value)
                waited = 0
            waited += 1
            if waited > 50 * chip.t_refi:
                raise BenchTimeout(f"no read answer for {waited} cycles ({len(got)} of {n})")

    async def produce(reqs) -> None:
        for addr, write, data in reqs:
            while rng.random() < state["idle"]:
                dut.cmd__valid.value = 0
                await RisingEdge(dut.clk)
            dut.cmd__valid.value = 1
            dut.cmd__payload.value = pack_request(chip, addr, write, data)
            waited = 0
            while True:
                await ReadOnly()
                accepted = int(dut.cmd__ready.value)
                await RisingEdge(dut.clk)
                if accepted:
                    break
                waited += 1
                if waited > 50 * chip.t_refi:
                    raise BenchTimeout(f"request not accepted for {waited} cycles")
        dut.cmd__valid.value = 0

    reader = cocotb.start_soon(consume(len(expected)))
    await produce(requests)
    await reader
    mismatches = [(i, w, g) for i, (w, g) in enumerate(zip(expected, got))
                  if w is not None and w != g]
    # streaming rate: sequential reads from a row start, no idle, always ready; cycles from
    # the first request offered to the last word taken
    state.update(idle=0.0, backpressure=0.0)
    streams = []
    for words in [int(w) for w in os.environ.get("NMACCEL_SDRAM_STREAMS", "512").split(",")]:
        base = rng.randrange(1 << chip.addr_bits) & ~((1 << chip.col_bits) - 1)
        stream = [((base + i) % (1 << chip.addr_bits), False, 0) for i in range(words)]
        first = model.cycle
        reader = cocotb.start_soon(consume(len(got) + len(stream)))
        await produce(stream)
        await reader
        streams.append({"words": words, "cycles": model.cycle - first})
        for _ in range(rng.randrange(50, 400)):          # another refresh phase next time
            await RisingEdge(dut.clk)
    with open(os.environ["NMACCEL_SDRAM_RESULT"], "w", encoding="utf-8") as fh:
        json.dump({"violations": model.violations, "requests": len(requests),
                   "reads": len(expected), "checked": sum(w is not None for w in expected),
                   "mismatches": mismatches[:20], "mismatch_count": len(mismatches),
                   "commands": model.counts, "ready_cycle": ready_cycle,
                   "cycles": model.cycle, "streams": streams,
                   "refreshes": model.refreshes}, fh)
