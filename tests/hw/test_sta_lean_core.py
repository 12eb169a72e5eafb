# amaranth: UnusedElaboratable=no
"""The lean STA core runs compiled STA programs bit-exact with the golden model, in exactly the
cycles of its model, and stops with a named error on what it cannot run."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from nmaccel.hw.sta_lean.core import LeanCore
from nmaccel.model.nm import compress
from nmaccel.model.sta_program import GemmSpec, StaProgram, compile_gemm
from nmaccel.spec import lean_timing, sta_isa
from nmaccel.spec.config import sta_preset

CFG = sta_preset("icebreaker")


def _sparse(rng, features, k):
    w = rng.integers(-128, 128, (features, k))
    keep = np.zeros_like(w, dtype=bool)
    for f in range(features):
        for g in range(0, k, CFG.m):
            keep[f, g + rng.choice(CFG.m, CFG.n, replace=False)] = True
    return compress(w * keep, CFG.n, CFG.m)


def _spec(rng, mode, tokens, features, k, osel, name):
    x = rng.integers(-128, 128, (tokens, k))
    weight = (_sparse(rng, features, k) if mode == sta_isa.Mode.SPARSE
              else rng.integers(-128, 128, (features, k)))
    shift = rng.integers(8, 24, features)
    mult = rng.integers(1, 1 << 16, features) if osel != sta_isa.Osel.ACC else None
    return GemmSpec(x, weight, bias=rng.integers(-5000, 5000, features), mult=mult,
                    shift=shift if osel != sta_isa.Osel.ACC else None, osel=osel, name=name)


def _run(program: StaProgram, count=None, max_cycles=200_000):
    dut = LeanCore(CFG)
    result = {}

    async def tb(ctx):
        for i, word in enumerate(program.commands):
            ctx.set(dut.cbuf.data[i], word)
        for space, mem in (("WBUF", dut.wbuf), ("ABUF", dut.abuf), ("PBUF", dut.pbuf)):
            for entry, word in program.images[space].items():
                ctx.set(mem.data[entry], word)
        ctx.set(dut.count, len(program.commands) if count is None else count)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for _ in range(max_cycles):
            await ctx.tick()
            if ctx.get(dut.done):
                break
        else:
            raise AssertionError("the core hung")
        mask = (1 << CFG.acc_bits) - 1
        words = {e: ctx.get(dut.obuf.data[e]) & mask for e in range(CFG.obuf_depth)}
        result.update(error=ctx.get(dut.error), code=ctx.get(dut.code),
                      command=ctx.get(dut.command), cycles=ctx.get(dut.cycles),
                      busy=ctx.get(dut.busy))
        result["outputs"] = {r.name: r.unpack(CFG, {e: words[e] for e in r.entries(CFG)})
                             for r in program.outputs}

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return result


def _check(program):
    res = _run(program)
    assert not res["error"], sta_isa.error_name(res["code"])
    assert not res["busy"]
    for name, want in program.expected.items():
        np.testing.assert_array_equal(res["outputs"][name], want, err_msg=name)
    assert res["cycles"] == lean_timing.program_cycles(CFG, program.commands,
                                                       program.images["PBUF"])
    return res


@pytest.mark.parametrize("mode", [sta_isa.Mode.SPARSE, sta_isa.Mode.DENSE], ids=["sparse", "dense"])
@pytest.mark.parametrize("osel", [0, 1, 2, 3], ids=["act", "vec", "acc", "score"])
def test_one_gemm_bit_exact_and_cycles(mode, osel):
    rng = np.random.default_rng(10 * int(mode) + osel)
    k = 16 if mode == sta_isa.Mode.SPARSE else 12
    _check(compile_gemm(_spec(rng, mode, 3, 4, k, osel, "Y"), CFG))


def test_several_commands_and_nops():
    rng = np.random.default_rng(7)
    prog = compile_gemm(_spec(rng, sta_isa.Mode.SPARSE, 2, 5, 8, 0, "A"), CFG)
    prog.commands.append(0)                                          # NOP
    compile_gemm(_spec(rng, sta_isa.Mode.DENSE, 3, 2, 6, 1, "B"), CFG, prog,
                 w_base=100, a_base=200, o_base=300, p_base=50)
    _check(prog)


def _with_command(program, **changes):
    f = sta_isa.decode_command(CFG, program.commands[0])
    f.update(changes)
    program.commands[0] = sta_isa.encode_command(CFG, **f)
    return program


@pytest.mark.parametrize("changes,code", [
    ({"dest": sta_isa.Dest.VBUF}, "dest"), ({"post": sta_isa.Post.GELU}, "dest"),
    ({"k_steps": 0}, "zero"), ({"op": sta_isa.Opcode.LAYERNORM}, "opcode"),
    ({"w_base": CFG.wbuf_depth - 2}, "wbuf"), ({"a_base": CFG.abuf_depth - 1}, "abuf"),
    ({"o_base": CFG.obuf_depth - 1}, "obuf"), ({"p_base": CFG.pbuf_depth - 1}, "pbuf"),
])
def test_what_it_cannot_run_stops_with_a_named_error(changes, code):
    rng = np.random.default_rng(3)
    prog = _with_command(compile_gemm(_spec(rng, sta_isa.Mode.SPARSE, 2, 3, 8, 0, "Y"), CFG),
                         **changes)
    res = _run(prog)
    assert res["error"] and not res["busy"]
    assert res["code"] == sta_isa.ERROR_CODES[code], sta_isa.error_name(res["code"])
    assert res["command"] == 0


def test_bad_count_and_config():
    rng = np.random.default_rng(4)
    prog = compile_gemm(_spec(rng, sta_isa.Mode.SPARSE, 1, 1, 8, 0, "Y"), CFG)
    res = _run(prog, count=0)
    assert res["error"] and res["code"] == sta_isa.ERROR_CODES["count"]
    with pytest.raises(ValueError, match="rows and cols must be 1, not 2x2"):
        LeanCore(sta_preset("tiny"))
