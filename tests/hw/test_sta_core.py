# amaranth: UnusedElaboratable=no
"""StaCore in amaranth.sim: random sparse/dense GEMMs bit-exact against the golden model,
counters equal to the analytic cycle model, random idle/back-pressure on the host streams,
and hardware error status for bad commands and bad N:M metadata."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nmaccel.model.nm import compress, nm_mask
from nmaccel.model.sta_cycles import program_cycles
from nmaccel.model.sta_program import GemmSpec, StaProgram, compile_gemm
from nmaccel.sim.sta_amaranth import run_amaranth
from nmaccel.sim.sta_host import StaRunError
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig
from nmaccel.spec.sta_isa import GemmCommand

SMALL = dict(wbuf_depth=128, abuf_depth=64, obuf_depth=128, pbuf_depth=32, cbuf_depth=8)


def small_cfg(**kw) -> StaConfig:
    return StaConfig(**{**SMALL, "softmax_lanes": 2, "max_seq": 64, **kw})


def random_sparse(rng, features, k, n, m):
    w = rng.integers(-127, 128, (features, k))
    mask = nm_mask(torch.tensor(np.abs(w) + rng.random(w.shape), dtype=torch.float64), n, m)
    return w * mask.numpy().astype(np.int64)


def random_spec(rng, cfg, mode, tokens, features, k, osel, name):
    x = rng.integers(-128, 128, (tokens, k))
    if mode == sta_isa.Mode.SPARSE:
        weight = compress(random_sparse(rng, features, k, cfg.n, cfg.m), cfg.n, cfg.m)
        macs = k * cfg.n // cfg.m
    else:
        weight = rng.integers(-128, 128, (features, k))
        macs = k
    # Scale so that outputs spread over the int8/int16 range instead of saturating.
    span = 128 * 128 * np.sqrt(macs)
    target = {0: 100, 1: 20000, 2: 1}[osel]
    shift = 20
    mult = np.full(features, int(min((1 << 16) - 1, max(1, target / span * (1 << shift)))))
    return GemmSpec(x, weight, bias=rng.integers(-5000, 5000, features), mult=mult,
                    shift=np.full(features, shift), osel=osel, name=name)


def check(program, **kw):
    res = run_amaranth(program, **kw)
    for name, want in program.expected.items():
        assert np.array_equal(res.outputs[name], want), name
    model = program_cycles(program.cfg, program.commands)
    assert res.counters["CYCLES"] == model.total
    assert res.counters["MAC_ACTIVE"] == model.mac_active
    assert res.counters["STALLS"] == model.stalls
    assert res.counters["SPARSE_CYCLES"] == model.sparse
    assert res.counters["DENSE_CYCLES"] == model.dense
    assert res.per_command == model.per_command
    assert res.counters["COMMANDS"] == len(program.commands)
    return res


SHAPES = [  # (rows, cols, lanes, n, m)
    (2, 2, 4, 2, 4), (2, 3, 4, 1, 4), (3, 2, 2, 1, 8), (2, 2, 4, 2, 8), (2, 2, 4, 4, 8),
    (1, 2, 4, 4, 16), (2, 2, 6, 3, 4),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "R{}C{}L{}-{}:{}".format(*s))
def test_random_gemms_both_modes(shape):
    R, C, L, n, m = shape
    cfg = small_cfg(rows=R, cols=C, lanes=L, n=n, m=m)
    rng = np.random.default_rng(sum(shape) * 7919)
    program = StaProgram(cfg)
    k_sparse = m * rng.integers(1, 5)             # odd sizes: partial words, tiles and tokens
    specs = [
        (sta_isa.Mode.SPARSE, int(rng.integers(1, 3 * R)), int(rng.integers(1, 2 * C + 2)),
         int(k_sparse), 0),
        (sta_isa.Mode.DENSE, int(rng.integers(1, 2 * R + 1)), int(rng.integers(1, 2 * C + 1)),
         int(rng.integers(1, 3 * L)), 1),
        (sta_isa.Mode.SPARSE, R, C, m, 2),        # one word per dot product: stalls
    ]
    bases = dict(w_base=0, a_base=0, o_base=0, p_base=0)
    for i, (mode, features, tokens, k, osel) in enumerate(specs):
        spec = random_spec(rng, cfg, mode, tokens, features, k, osel, f"g{i}")
        compile_gemm(spec, cfg, program, **bases)
        cmd = program.gemm_commands()[-1]
        for space, (base, count) in cmd.extents(cfg).items():
            key = {"WBUF": "w_base", "ABUF": "a_base", "OBUF": "o_base", "PBUF": "p_base"}[space]
            bases[key] = base + count
    check(program, idle=0.3, backpressure=0.3, seed=int(rng.integers(1 << 30)))


def test_stalls_when_dot_products_are_shorter_than_the_drain():
    cfg = small_cfg(rows=4, cols=2, lanes=4, n=2, m=4)
    rng = np.random.default_rng(5)
    program = compile_gemm(random_spec(rng, cfg, sta_isa.Mode.SPARSE, 4, 12, 8, 0, "y"), cfg)
    res = check(program)
    assert res.counters["STALLS"] > 0            # k_steps = 1 < R = 4


def _error(program, code):
    res = run_amaranth(program, raise_on_error=False)
    assert sta_isa.decode_status(res.status).error and res.error_code == code, \
        (res.status, sta_isa.error_name(res.error_code))
    with pytest.raises(StaRunError, match=sta_isa.error_name(code).split(" (")[0]):
        run_amaranth(program)


def _raw_program(cfg, **fields):
    p = StaProgram(cfg)
    p.commands.append(sta_isa.encode_command(cfg, **fields))
    return p


@pytest.mark.parametrize("fields, code", [
    (dict(op=7, m_tiles=1, n_tiles=1, k_steps=1), 1),
    (dict(op=1, m_tiles=0, n_tiles=1, k_steps=1), 2),
    (dict(op=1, m_tiles=1, n_tiles=1, k_steps=129), 3),
])
def test_bad_commands_set_error_status(fields, code):
    cfg = small_cfg(rows=2, cols=2, lanes=4)
    _error(_raw_program(cfg, **fields), code)


@pytest.mark.parametrize("fields, zero", [
    (dict(op=sta_isa.Opcode.GEMM, m_tiles=1, n_tiles=0, k_steps=1), "n_tiles"),
    (dict(op=sta_isa.Opcode.GEMM, m_tiles=0, n_tiles=1, k_steps=0), "m_tiles, k_steps"),
    (dict(op=sta_isa.Opcode.LAYERNORM, n_tiles=1, length=0), "length"),
])
def test_cycle_model_refuses_a_zero_size_command(fields, zero):
    """The core stops a zero-size command with error 2; the cycle model names it (it raised a
    TypeError from inside its tile walk on such a GEMM)."""
    cfg = small_cfg(rows=2, cols=2, lanes=4)
    words = [sta_isa.encode_command(cfg, op=sta_isa.Opcode.NOP),
             sta_isa.encode_command(cfg, **fields)]
    with pytest.raises(ValueError, match=rf"command 1 \((GEMM|LAYERNORM)\): {zero} is 0; the "
                                         r"core stops such a command with error 2 \(zero size"):
        program_cycles(cfg, words)


def test_range_errors_for_each_buffer():
    cfg = small_cfg(rows=2, cols=2, lanes=4)
    ok = dict(op=1, m_tiles=1, n_tiles=1, k_steps=1)
    _error(_raw_program(cfg, **{**ok, "w_base": 127, "k_steps": 2}), 3)
    _error(_raw_program(cfg, **{**ok, "a_base": 63, "n_tiles": 2, "a_stride": 1}), 4)
    _error(_raw_program(cfg, **{**ok, "o_base": 127, "m_tiles": 1}), 5)
    _error(_raw_program(cfg, **{**ok, "p_base": 31}), 6)
    _error(_raw_program(cfg, **{**ok, "osel": 7}), 9)
    _error(_raw_program(cfg, **{**ok, "dest": 6}), 10)
    _error(_raw_program(cfg, **{**ok, "dest": sta_isa.Dest.VBUF, "o_base": cfg.vbuf_depth - 1}), 11)
    _error(_raw_program(cfg, **{**ok, "post": sta_isa.Post.ADD}), 10)     # add needs dest VBUF


def test_bad_nm_metadata_is_flagged():
    cfg = small_cfg(rows=2, cols=2, lanes=4, n=2, m=4)
    rng = np.random.default_rng(3)
    program = compile_gemm(random_spec(rng, cfg, sta_isa.Mode.SPARSE, 2, 2, 8, 0, "y"), cfg)
    E = cfg.weight_bits + cfg.index_bits
    word = program.images["WBUF"][0]
    idx0 = (word >> cfg.weight_bits) & 3
    # entry 1 (same group as entry 0) gets the same index as entry 0: repeated index
    word &= ~(3 << (E + cfg.weight_bits))
    word |= idx0 << (E + cfg.weight_bits)
    program.images["WBUF"][0] = word
    _error(program, 7)


def test_bad_command_count():
    cfg = small_cfg(rows=2, cols=2, lanes=4)
    program = _raw_program(cfg, op=0)
    program.commands *= cfg.cbuf_depth
    res = run_amaranth(program)                  # NOPs only: fine
    assert res.counters["COMMANDS"] == cfg.cbuf_depth
    assert res.cycles == program_cycles(cfg, program.commands).total
    for count in (0, cfg.cbuf_depth + 1):
        res = run_amaranth(program, count=count, raise_on_error=False)
        assert sta_isa.decode_status(res.status).error and res.error_code == 8


def test_error_tables_agree():
    assert set(sta_isa.ERROR_CODES.values()) == set(sta_isa.ERRORS) - {0}


def test_host_side_checks_match_hardware_rules():
    cfg = small_cfg(rows=2, cols=2, lanes=4)
    with pytest.raises(ValueError, match=r"GEMM uses WBUF entries \[127, 129\) but WBUF has 128"):
        GemmCommand(mode=0, m_tiles=1, n_tiles=1, k_steps=2, w_base=127).check(cfg)
    with pytest.raises(ValueError, match=r"k_steps must be an integer in \[1, 65535\], not 0"):
        GemmCommand(mode=0, m_tiles=1, n_tiles=1, k_steps=0).check(cfg)
    with pytest.raises(ValueError, match="command field m_tiles must be in"):
        sta_isa.encode_command(cfg, op=1, m_tiles=1 << 16)
    with pytest.raises(ValueError, match="unknown command field"):
        sta_isa.encode_command(cfg, opcode=1)


def test_host_read_in_the_start_cycle_delays_the_first_fetch_by_one_cycle():
    """The controller presents the first command's CBUF address in the start cycle (the word
    is registered in FETCH). A host read accepted in that same cycle keeps the read port:
    FETCH then waits one cycle, the read returns its own word and the run is still exact."""
    from amaranth.sim import Simulator

    from nmaccel.hw.sta.core import StaCore
    from nmaccel.sim.amaranth_streams import stream_get, stream_put
    from nmaccel.sim.sta_host import host_script
    from nmaccel.spec.sta_isa import COUNTERS

    cfg = small_cfg(rows=2, cols=2, lanes=4)
    rng = np.random.default_rng(5)
    program = StaProgram(cfg)
    bases = dict(w_base=0, a_base=0, o_base=0, p_base=0)
    for i, mode in enumerate((sta_isa.Mode.SPARSE, sta_isa.Mode.DENSE)):
        compile_gemm(random_spec(rng, cfg, mode, 3, 2, 8, 0, f"g{i}"), cfg, program, **bases)
        for space, (base, count) in program.gemm_commands()[-1].extents(cfg).items():
            key = {"WBUF": "w_base", "ABUF": "a_base", "OBUF": "o_base", "PBUF": "p_base"}[space]
            bases[key] = base + count
    script = host_script(program)
    dut = StaCore(cfg)
    got = {}

    async def tb(ctx):
        for addr, data in script["writes"]:
            await stream_put(ctx, dut.wr, {"addr": addr, "data": data})
        start_addr, n = script["start"]
        probe = sta_isa.host_address(cfg, "CBUF", 1)        # the second command's low word
        ctx.set(dut.wr.payload, {"addr": start_addr, "data": n})
        ctx.set(dut.rd.payload, {"addr": probe})
        ctx.set(dut.wr.valid, 1)
        ctx.set(dut.rd.valid, 1)
        assert ctx.get(dut.wr.ready) and ctx.get(dut.rd.ready)
        await ctx.tick()
        ctx.set(dut.wr.valid, 0)
        ctx.set(dut.rd.valid, 0)
        got["probe"] = await stream_get(ctx, dut.rd_data)
        while not (ctx.get(dut.done) or ctx.get(dut.error)):
            await ctx.tick()

        async def read(addr):
            await stream_put(ctx, dut.rd, {"addr": addr})
            return await stream_get(ctx, dut.rd_data)
        got["status"] = await read(script["status"])
        got["counters"] = dict(zip(COUNTERS, [await read(a) for a in script["counters"]]))
        got["outputs"] = [await read(a) for a in script["outputs"]]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert got["probe"] == program.commands[1] & 0xFFFFFFFF
    assert got["status"] & 2 and not got["status"] & 4           # done, no error
    model = program_cycles(cfg, program.commands)
    assert got["counters"]["CYCLES"] == model.total + 1           # the one FETCH wait
    assert got["counters"]["COMMANDS"] == 2
    from nmaccel.sim.sta_host import finish_run
    res = finish_run(program, script, got["status"], list(got["counters"].values()),
                     [0, 0], got["outputs"], "amaranth")
    for name, want in program.expected.items():
        assert np.array_equal(res.outputs[name], want), name
