# amaranth: UnusedElaboratable=no
"""The lean STA core runs compiled STA programs (single GEMMs, a whole encoder layer) bit-exact
with the golden model, in exactly the cycles of its model, and stops with a named error on a
bad command."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator
from test_sta_layer import random_layer

from nmaccel.hw.sta_lean.core import LeanCore
from nmaccel.model.nm import compress
from nmaccel.model.sta_layer import compile_layer
from nmaccel.model.sta_program import GemmSpec, StaProgram, compile_gemm
from nmaccel.sim.amaranth_streams import stream_get, stream_put
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


def _run_segments(segments, counts=None, max_cycles=2_000_000, merged=False):
    """Run ``segments`` (StaPrograms) one after another on one core, the buffers kept between
    them (as a layer's segments run): memory images loaded directly (``merged``: WBUF, PBUF
    and CBUF, in the one parameter memory, through the host port), START, STATUS and the
    counters through the host port; returns one result per segment."""
    dut = LeanCore(CFG, merged=merged)
    results = []
    mems = {"WBUF": dut.wbuf, "ABUF": dut.abuf, "PBUF": dut.pbuf, "VBUF": dut.vbuf}

    def csr(name):
        return sta_isa.host_address(CFG, "CSR", sta_isa.CSR[name])

    async def read(ctx, addr):
        await stream_put(ctx, dut.rd, {"addr": addr})
        return await stream_get(ctx, dut.rd_data)

    async def tb(ctx):
        for i, program in enumerate(segments):
            if merged:
                for addr, data in program.host_writes():
                    space = addr >> sta_isa.space_shift(CFG)
                    if space != sta_isa.SPACES["ABUF"] and space != sta_isa.SPACES["VBUF"]:
                        await stream_put(ctx, dut.wr, {"addr": addr, "data": data})
            else:
                for j, word in enumerate(program.commands):
                    ctx.set(dut.cbuf.data[j], word)
            for space, entries in program.images.items():
                if merged and space not in ("ABUF", "VBUF"):
                    continue
                for entry, word in entries.items():
                    ctx.set(mems[space].data[entry], word)
            count = len(program.commands) if counts is None else counts[i]
            await stream_put(ctx, dut.wr, {"addr": csr("START"), "data": count})
            for _ in range(max_cycles):
                await ctx.tick()
                if ctx.get(dut.done):
                    break
            else:
                raise AssertionError("the core hung")
            status = sta_isa.decode_status(await read(ctx, csr("STATUS")))
            res = {"error": status.error, "code": status.code, "command": status.command,
                   "busy": status.busy, "cycles": await read(ctx, csr("CYCLES")),
                   "commands": await read(ctx, csr("COMMANDS")), "outputs": {}}
            for r in program.outputs:
                mem, bits = (dut.vbuf, CFG.vec_bits) if r.space == "VBUF" else (dut.obuf,
                                                                                 CFG.acc_bits)
                words = {e: ctx.get(mem.data[e]) & ((1 << bits) - 1) for e in r.entries(CFG)}
                res["outputs"][r.name] = r.unpack(CFG, words)
            results.append(res)
            if res["error"]:
                break

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return results


def _run(program: StaProgram, count=None):
    return _run_segments([program], None if count is None else [count])[0]


def _check(program):
    res = _run(program)
    assert not res["error"], sta_isa.error_name(res["code"])
    assert not res["busy"] and res["commands"] == len(program.commands)
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
                 w_base=100, a_base=200, o_base=100, p_base=50)
    _check(prog)


def _with_command(program, **changes):
    f = sta_isa.decode_command(CFG, program.commands[0])
    f.update(changes)
    program.commands[0] = sta_isa.encode_command(CFG, **f)
    return program


@pytest.mark.parametrize("changes,code", [
    ({"dest": 6}, "dest"), ({"post": 3}, "dest"), ({"osel": 5}, "osel"),
    ({"k_steps": 0}, "zero"), ({"op": sta_isa.Opcode.FETCH}, "opcode"), ({"op": 9}, "opcode"),
    ({"wsrc": sta_isa.WSrc.ABUF}, "shape"), ({"asrc": sta_isa.ASrc.SBUF}, "shape"),
    ({"dest": sta_isa.Dest.SOFTMAX, "length": 1}, "seq"),           # m_tiles 3
    ({"w_base": CFG.wbuf_depth - 2}, "wbuf"), ({"a_base": CFG.abuf_depth - 1}, "abuf"),
    ({"o_base": CFG.obuf_depth - 1}, "obuf"), ({"p_base": CFG.pbuf_depth - 1}, "pbuf"),
    ({"dest": sta_isa.Dest.VBUF, "o_base": CFG.vbuf_depth - 1}, "vbuf"),
    ({"post": sta_isa.Post.GELU, "p_base": CFG.pbuf_depth - 4}, "pbuf"),
])
def test_bad_commands_stop_with_a_named_error(changes, code):
    rng = np.random.default_rng(3)
    prog = _with_command(compile_gemm(_spec(rng, sta_isa.Mode.SPARSE, 2, 3, 8, 0, "Y"), CFG),
                         **changes)
    if "w_base" in changes:                  # valid words up to the end of WBUF, then beyond
        words = prog.images["WBUF"]
        prog.images["WBUF"] = {changes["w_base"] + e: words[e] for e in range(2)}
    res = _run(prog)
    assert res["error"] and not res["busy"]
    assert res["code"] == sta_isa.ERROR_CODES[code], sta_isa.error_name(res["code"])
    assert res["command"] == 0


def test_vector_output_row_beyond_abuf_stops():
    """A REQUANT whose second token row lies beyond ABUF (a_stride fine, o_stride 4096): the
    row pointer saturates and the write stops with ``abuf`` instead of wrapping onto row 0."""
    prog = StaProgram(CFG)
    prog.images["VBUF"] = {e: 5 + e for e in range(8)}
    prog.images["PBUF"] = {0: sta_isa.encode_params(CFG, 0, 1 << 15, 15)}
    prog.commands.append(sta_isa.encode_command(
        CFG, op=sta_isa.Opcode.REQUANT, n_tiles=2, length=4, a_stride=4, o_stride=4096,
        dest=sta_isa.Dest.ABUF))
    res = _run(prog)
    assert res["error"] and res["code"] == sta_isa.ERROR_CODES["abuf"]


def test_bad_count_and_config():
    rng = np.random.default_rng(4)
    prog = compile_gemm(_spec(rng, sta_isa.Mode.SPARSE, 1, 1, 8, 0, "Y"), CFG)
    res = _run(prog, count=0)
    assert res["error"] and res["code"] == sta_isa.ERROR_CODES["count"]
    prog = compile_gemm(_spec(rng, sta_isa.Mode.SPARSE, 1, 1, 8, 0, "Y"), CFG)
    res = _run(prog, count=CFG.cbuf_depth + 1)
    assert res["error"] and res["code"] == sta_isa.ERROR_CODES["count"]
    with pytest.raises(ValueError, match="rows and cols must be 1, not 2x2"):
        LeanCore(sta_preset("tiny"))


# -- a whole encoder layer: every destination, both post-ops, attention, LayerNorm, REQUANT ---

def _random_layer(nm, tokens, seed=0):
    """A MiniLM-shaped layer of the digits Transformer's size (d 32, 2 heads, FFN 64)."""
    return random_layer(CFG, nm, seed, tokens)


@pytest.mark.parametrize("nm,tokens,merged", [((2, 4), 8, False), (None, 5, False),
                                              ((2, 4), 8, True)],
                         ids=["2:4-8tok", "dense-5tok", "2:4-8tok-merged"])
def test_encoder_layer_bit_exact_and_cycles(nm, tokens, merged):
    """``merged``: WBUF, PBUF and CBUF in the one 64-bit parameter memory of the iCE40 build
    (its SPRAMs; here their simulation model), loaded through the host port."""
    layer, x = _random_layer(nm, tokens)
    lp = compile_layer(layer, x, CFG)
    kinds = {sta_isa.decode_command(CFG, w)["op"] for p in lp.segments for w in p.commands}
    assert {sta_isa.Opcode.GEMM, sta_isa.Opcode.LAYERNORM} <= kinds
    res = _run_segments(lp.segments, merged=merged)
    assert all(not r["error"] for r in res), [sta_isa.error_name(r["code"]) for r in res]
    np.testing.assert_array_equal(res[-1]["outputs"]["out"], lp.expected)
    for seg, r in zip(lp.segments, res):
        assert r["cycles"] == lean_timing.program_cycles(CFG, seg.commands, seg.images["PBUF"])
