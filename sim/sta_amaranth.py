"""Run an STA program on :class:`~nmaccel.hw.sta.core.StaCore` in Amaranth's Python simulator.

For unit tests and small programs (~50k cycles/s); big runs use :mod:`nmaccel.sim.sta_rtl`.
Every host stream gets random idle cycles (writes, read requests) and random back-pressure
(read data) when ``idle``/``backpressure`` are above 0.
"""

from __future__ import annotations

import random
import time

from amaranth.sim import Simulator

from nmaccel.hw.sta.core import StaCore
from nmaccel.model.sta_program import StaProgram
from nmaccel.sim.amaranth_streams import stream_get, stream_put
from nmaccel.sim.sta_host import RunResult, finish_run, host_script
from nmaccel.spec.sta_isa import decode_status

__all__ = ["run_amaranth", "run_amaranth_programs"]


def run_amaranth(program: StaProgram, **kwargs) -> RunResult:
    """Load, start and read back ``program`` on StaCore in amaranth.sim (``count`` overrides
    the number of commands written to START, for error tests)."""
    return run_amaranth_programs([program], **kwargs)[0]


def run_amaranth_programs(programs, idle: float = 0.0, backpressure: float = 0.0,
                          seed: int = 0, max_cycles: int = 2_000_000, raise_on_error: bool = True,
                          vcd: str | None = None, count: int | None = None,
                          stop_on_error: bool = True) -> list[RunResult]:
    """Run ``programs`` one after another on one StaCore (memories persist between them, as
    the segments of a layer need). A program that ends in an error stops the sequence unless
    ``stop_on_error`` is false; one that runs longer than ``max_cycles`` raises
    ``TimeoutError``."""
    cfg = programs[0].cfg
    if cfg.sdram_timing is not None:
        raise ValueError("a core with external memory (sdram_mhz) needs the SDRAM model of the "
                         "cocotb bench: run it with nmaccel.sim.sta_rtl (Verilator/Icarus)")
    dut = StaCore(cfg)
    scripts = [host_script(p) for p in programs]
    rng = random.Random(seed)
    raws = []
    t0 = time.perf_counter()

    async def write(ctx, addr, data):
        await stream_put(ctx, dut.wr, {"addr": addr, "data": data}, rng=rng, idle=idle)

    async def read(ctx, addr):
        await stream_put(ctx, dut.rd, {"addr": addr}, rng=rng, idle=idle)
        return await stream_get(ctx, dut.rd_data, rng=rng, backpressure=backpressure)

    async def tb(ctx):
        for script in scripts:
            raw = {}
            for addr, data in script["writes"]:
                await write(ctx, addr, data)
            start_addr, n = script["start"]
            await write(ctx, start_addr, n if count is None else count)
            t_run = time.perf_counter()
            cycles = 0
            while not (ctx.get(dut.done) or ctx.get(dut.error)):
                await ctx.tick()
                cycles += 1
                if cycles > max_cycles:
                    raise TimeoutError(f"STA did not finish within {max_cycles} cycles")
            raw["run_seconds"] = time.perf_counter() - t_run
            raw["status"] = await read(ctx, script["status"])
            raw["counters"] = [await read(ctx, a) for a in script["counters"]]
            raw["cyclog"] = [await read(ctx, a) for a in script["cyclog"]]
            failed = decode_status(raw["status"]).error
            raw["outputs"] = [] if failed else [await read(ctx, a) for a in script["outputs"]]
            raws.append(raw)
            if failed and stop_on_error:
                break

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    wall = time.perf_counter() - t0
    return [finish_run(p, script, raw["status"], raw["counters"], raw["cyclog"], raw["outputs"],
                       "amaranth", raise_on_error=raise_on_error, wall_seconds=wall / len(raws),
                       run_seconds=raw["run_seconds"])
            for p, script, raw in zip(programs, scripts, raws)]
