# amaranth: UnusedElaboratable=no
"""ConvEngine (amaranth.sim) vs the integer reference :func:`run_job`, bit exact, with
random input gaps and output back-pressure; PE array and post-processing by themselves."""

from __future__ import annotations

import random
import zlib

import numpy as np
import pytest
from amaranth.sim import Simulator

from nmaccel.hw.conv.engine import ConvEngine
from nmaccel.model.conv_ref import (
    get_exp_cycles,
    pack_inputs,
    pack_params,
    pack_settings,
    pack_weights,
    random_job,
    run_job,
    unpack_outputs,
)
from nmaccel.spec.config import ConvConfig


def run_engine_amaranth(cfg, job, x, seed=0, gaps=0.0, stall=0.0):
    dut = ConvEngine(cfg)
    rng = random.Random(seed)
    beats_in = pack_inputs(job, cfg, x)
    ho, wo = job.out_hw
    n_out = ho * wo * -(-job.cout // cfg.p_out) * cfg.post_cycles
    got, counters = [], {}

    async def tb(ctx):
        for a, word in enumerate(pack_weights(job, cfg)):
            ctx.set(dut.wmem_addr, a)
            ctx.set(dut.wmem_data.as_value(), word)
            ctx.set(dut.wmem_en, 1)
            await ctx.tick()
        ctx.set(dut.wmem_en, 0)
        for a, word in enumerate(pack_params(job, cfg)):
            ctx.set(dut.pmem_addr, a)
            ctx.set(dut.pmem_data.as_value(), word)
            ctx.set(dut.pmem_en, 1)
            await ctx.tick()
        ctx.set(dut.pmem_en, 0)
        ctx.set(dut.layer.as_value(), pack_settings(job, cfg))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        pending = list(beats_in)
        for _ in range(200_000):
            send = bool(pending) and rng.random() >= gaps
            ctx.set(dut.i.valid, send)
            if send:
                ctx.set(dut.i.payload.as_value(), pending[0])
            ready = rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            took_in = send and ctx.get(dut.i.ready)
            if ready and ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload.as_value()))
            done = ctx.get(dut.done)
            await ctx.tick()
            if took_in:
                pending.pop(0)
            if done:
                break
        else:
            raise AssertionError("engine did not finish")
        for name in ("cyc_total", "cyc_active", "cyc_load", "cyc_stall"):
            counters[name] = ctx.get(getattr(dut, name))
        assert not pending, f"{len(pending)} input beats not taken"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert len(got) == n_out
    v, q = unpack_outputs(job, cfg, got)
    return v, q, counters


CFG = ConvConfig(p_out=2, p_in=3, max_width=8, max_height=8, max_in_channels=8,
                 max_out_channels=8, out_fifo_depth=16)


@pytest.mark.parametrize("mode,bits,k,stride,cin,cout,h,w,out", [
    ("adder", 4, 3, 1, 4, 3, 5, 4, "requant"),
    ("adder", 8, 3, 2, 3, 4, 5, 6, "requant"),
    ("mul", 8, 3, 1, 5, 2, 4, 4, "requant"),
    ("binary", 1, 3, 2, 7, 3, 6, 5, "binarize"),
    ("binary", 1, 1, 1, 2, 2, 3, 3, "requant"),
    ("adder", 6, 1, 2, 2, 3, 5, 5, "requant"),
])
def test_engine_bit_exact(mode, bits, k, stride, cin, cout, h, w, out):
    rng = np.random.default_rng(zlib.crc32(f"{mode}-{bits}-{k}-{stride}".encode()))
    check_bit_exact(CFG, random_job(rng, mode, bits, k, stride, cin, cout, h, w, out), seed=1)


def check_bit_exact(cfg, job_x, seed):
    """The engine's outputs of ``job_x = (job, x)`` under random gaps and stalls equal the
    golden model's."""
    job, x = job_x
    v_ref, q_ref = run_job(job, x, v_bits=cfg.bias_bits)
    v, q, _ = run_engine_amaranth(cfg, job, x, seed=seed, gaps=0.3, stall=0.3)
    np.testing.assert_array_equal(v, v_ref)
    np.testing.assert_array_equal(q, q_ref)


@pytest.mark.parametrize("k,stride,h,w,cin", [(3, 2, 6, 6, 7), (1, 2, 6, 5, 2), (3, 1, 4, 3, 3),
                                              (3, 1, 1, 1, 8)])
def test_engine_cycles_match_prediction(k, stride, h, w, cin):
    rng = np.random.default_rng(5)
    job, x = random_job(rng, "adder", 4, k, stride, cin, 5, h, w)
    v, q, cnt = run_engine_amaranth(CFG, job, x)
    exp = get_exp_cycles(job, CFG)
    print(cnt, exp)
    assert cnt["cyc_active"] == exp["compute"]
    assert cnt["cyc_load"] == exp["load"]
    assert cnt["cyc_stall"] == 0 == exp["stall"]
    assert cnt["cyc_total"] == exp["total"]


#: Post-processing shared over the lanes (one lane and two lanes a cycle), the weights in the
#: single-port (SPRAM) memory, the PE products in logic, the short post-processing: the
#: iCE40UP5K engine's options ("short": the short post-processing alone, no sharing).
SHARED = {
    "1of4": ConvConfig(p_out=4, p_in=2, max_width=8, max_height=8, max_in_channels=8,
                       max_out_channels=8, out_fifo_depth=32, post_lanes=1,
                       weight_memory="spram", pe_multipliers="lut", post_pipeline="short"),
    "short": ConvConfig(p_out=2, p_in=3, max_width=8, max_height=8, max_in_channels=8,
                        max_out_channels=8, out_fifo_depth=16, post_pipeline="short"),
    "2of4": ConvConfig(p_out=4, p_in=2, max_width=8, max_height=8, max_in_channels=8,
                       max_out_channels=8, out_fifo_depth=32, post_lanes=2,
                       weight_memory="spram"),
}


@pytest.mark.parametrize("name", sorted(SHARED))
@pytest.mark.parametrize("mode,bits,k,stride,cin,cout,h,w,out", [
    ("adder", 4, 3, 2, 5, 6, 5, 4, "requant"),
    ("mul", 8, 1, 1, 2, 7, 3, 4, "requant"),
    ("binary", 1, 3, 1, 7, 5, 4, 3, "binarize"),
])
def test_shared_postprocessing_bit_exact(name, mode, bits, k, stride, cin, cout, h, w, out):
    rng = np.random.default_rng(zlib.crc32(f"shared-{mode}-{k}".encode()))
    check_bit_exact(SHARED[name], random_job(rng, mode, bits, k, stride, cin, cout, h, w, out),
                    seed=2)


@pytest.mark.parametrize("name", sorted(SHARED))
@pytest.mark.parametrize("k,stride,h,w,cin,cout", [
    (1, 1, 3, 4, 2, 8),      # groups of 1 beat: every group waits for the lane groups
    (1, 2, 5, 5, 3, 5),      # 2-beat groups, rows loaded between (the first group's wait)
    (3, 2, 5, 4, 2, 8),      # 9-beat groups: no waits
    (1, 1, 1, 1, 8, 3),
])
def test_shared_postprocessing_cycles_match_prediction(name, k, stride, h, w, cin, cout):
    cfg = SHARED[name]
    rng = np.random.default_rng(7)
    job, x = random_job(rng, "mul", 8, k, stride, cin, cout, h, w)
    v_ref, q_ref = run_job(job, x, v_bits=cfg.bias_bits)
    v, q, cnt = run_engine_amaranth(cfg, job, x)
    np.testing.assert_array_equal(q, q_ref)
    exp = get_exp_cycles(job, cfg)
    assert cnt["cyc_active"] == exp["compute"]
    assert cnt["cyc_load"] == exp["load"]
    assert cnt["cyc_stall"] == exp["stall"]
    assert cnt["cyc_total"] == exp["total"]


#: The weight memory in banks of 16 words (108 words: 6 full banks and one of 12), each bank's
#: word registered before the bank mux (the ULX3S engine's form, there in banks of 512).
BANKED = ConvConfig(p_out=2, p_in=3, max_width=8, max_height=8, max_in_channels=8,
                    max_out_channels=8, out_fifo_depth=16, weight_bank_depth=16)


def test_banked_weight_memory_geometry():
    assert BANKED.weight_depth == 108 and BANKED.weight_banks == 7
    assert CFG.weight_banks == 1


@pytest.mark.parametrize("mode,bits,k,stride,cin,cout,h,w,out", [
    ("adder", 4, 3, 1, 7, 8, 4, 4, "requant"),      # all 108 words: every bank, the short one
    ("mul", 8, 3, 2, 8, 7, 5, 4, "requant"),
    ("binary", 1, 1, 1, 7, 8, 3, 3, "binarize"),
])
def test_banked_weights_bit_exact(mode, bits, k, stride, cin, cout, h, w, out):
    rng = np.random.default_rng(zlib.crc32(f"banked-{mode}-{k}".encode()))
    check_bit_exact(BANKED, random_job(rng, mode, bits, k, stride, cin, cout, h, w, out),
                    seed=3)


def test_banked_weights_cycles_match_prediction():
    rng = np.random.default_rng(11)
    job, x = random_job(rng, "adder", 4, 3, 1, 7, 8, 4, 3)
    _, _, cnt = run_engine_amaranth(BANKED, job, x)
    exp = get_exp_cycles(job, BANKED)
    assert (cnt["cyc_active"], cnt["cyc_load"], cnt["cyc_total"]) == \
        (exp["compute"], exp["load"], exp["total"])
