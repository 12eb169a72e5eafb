# amaranth: UnusedElaboratable=no
"""PerfCounters alone: each event counts, command cycles go to CYCLOG and the per-mode
counters, START clears everything."""

from __future__ import annotations

from amaranth.sim import Simulator

from nmaccel.hw.sta.counters import PerfCounters
from nmaccel.hw.sta.isa import Mode, Opcode
from nmaccel.spec.config import sta_preset


def _counters(ctx, dut) -> dict:
    return {name: ctx.get(getattr(dut.counters, name)) for name, _ in dut.counters.shape()}


def test_events_command_cycles_and_clear():
    dut = PerfCounters(sta_preset("tiny"))
    log, seen = [], {}

    async def tb(ctx):
        async def cycle(**inputs):
            for name, value in inputs.items():
                ctx.set(getattr(dut, name), value)
            if ctx.get(dut.cyclog_wr.en):
                log.append((ctx.get(dut.cyclog_wr.addr), ctx.get(dut.cyclog_wr.data)))
            await ctx.tick()
            for name in inputs:
                if name not in ("op", "mode", "pc", "busy"):
                    ctx.set(getattr(dut, name), 0)

        await cycle(clear=1)
        # command 0: a sparse GEMM of 5 busy cycles with 2 beats, 1 stall, 1 barrier wait
        ctx.set(dut.busy, 1)
        await cycle(op=Opcode.GEMM, mode=Mode.SPARSE, pc=0, barrier_wait=1)
        await cycle(issue=1)
        await cycle(stall=1)
        await cycle(issue=1, softmax_busy=1)
        assert _counters(ctx, dut)["mac_active"] == 2          # counted one cycle later
        await cycle(command_done=1)
        # command 1: a dense GEMM of 2 cycles, then command 2: a LAYERNORM of 3 cycles
        await cycle(op=Opcode.GEMM, mode=Mode.DENSE, pc=1, softmax_wait=1)
        await cycle(command_done=1)
        await cycle(op=Opcode.LAYERNORM, pc=2)
        await cycle()
        await cycle(command_done=1)
        # command 3: a NOP (counted in COMMANDS only)
        await cycle(op=Opcode.NOP, pc=3, fetch_busy=1, fetch_wait=1)
        await cycle(command_done=1, fetch_busy=1)
        await cycle(busy=0, fetch_busy=1)        # not counted once the run is over
        seen["run"] = _counters(ctx, dut)
        await cycle(clear=1)
        seen["cleared"] = _counters(ctx, dut)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert log == [(0, 5), (1, 2), (2, 3), (3, 2)]
    assert seen["run"] == {"cycles": 12, "mac_active": 2, "stalls": 1, "sparse_cycles": 5,
                           "dense_cycles": 2, "commands": 4, "softmax_busy": 1,
                           "softmax_wait": 1, "vector_cycles": 3, "barrier_wait": 1,
                           "fetch_busy": 2, "fetch_wait": 1}
    assert set(seen["cleared"].values()) == {0}
