"""ConvEngine on Verilator and Icarus through cocotb (:mod:`nmaccel.sim.conv_bench`):
every output bit-exact against :func:`nmaccel.model.conv_ref.run_job` with random input
gaps and random output back-pressure, parametrized over simulator × (P_out, P_in) × mode,
each case running every bit width × kernel × stride (run-time settings: one build per
shape); measured cycles equal the prediction; the digits nets end to end on a subset; a
layer over its cycle limit stops the bench with a message.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from nmaccel.model.conv_ref import get_exp_cycles, random_job, run_job
from nmaccel.sim.simulators import activate, require_simulator
from nmaccel.spec.config import (
    CONV_ADDER_BITS,
    CONV_KERNELS,
    CONV_STRIDES,
    ConvConfig,
    conv_preset,
)

SHAPES = {
    "2x3": ConvConfig(p_out=2, p_in=3, max_width=8, max_height=8, max_in_channels=8,
                      max_out_channels=8),
    # same config as test_conv_digits.py: one Verilator build serves both files
    "4x2": ConvConfig(p_out=4, p_in=2, max_width=8, max_height=8, max_in_channels=128,
                      max_out_channels=32, out_fifo_depth=4),
    # the iCE40UP5K engine: post-processing shared by the lanes, weights in the single-port
    # (SPRAM) memory, PE products in logic
    "icebreaker": conv_preset("icebreaker"),
}
MODE_BITS = {"adder": CONV_ADDER_BITS, "mul": (8,), "binary": (1,)}


def _cases(mode, seed):
    rng = np.random.default_rng(seed)
    jobs = []
    for bits in MODE_BITS[mode]:
        for k in CONV_KERNELS:
            for stride in CONV_STRIDES:
                cin, cout = int(rng.integers(1, 8)), int(rng.integers(1, 8))
                h, w = int(rng.integers(3, 7)), int(rng.integers(3, 7))
                out = "binarize" if mode == "binary" and rng.random() < 0.5 else "requant"
                jobs.append(random_job(rng, mode, bits, k, stride, cin, cout, h, w, out))
    return jobs


@pytest.mark.parametrize("mode", list(MODE_BITS))
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_conv_engine_bit_exact_backpressure(simulator, shape, mode):
    activate(require_simulator(simulator))
    from nmaccel.sim.conv_harness import run_jobs
    cfg = SHAPES[shape]
    jobs = _cases(mode, seed=zlib.crc32(f"{shape}-{mode}".encode()))
    stall = 0.8 if shape == "4x2" else 0.4     # 4x2 has a 4-deep FIFO: credit stalls too
    results = run_jobs(cfg, jobs, simulator, seed=7, gaps=0.3, stall=stall)
    for (job, x), r in zip(jobs, results):
        v, q = run_job(job, x, v_bits=cfg.bias_bits)
        where = f"{mode} bits={job.bits} k={job.k} stride={job.stride} {job.cin}->{job.cout}"
        np.testing.assert_array_equal(r.v, v, err_msg=where)
        np.testing.assert_array_equal(r.q, q, err_msg=where)
        assert r.counters["cyc_active"] == get_exp_cycles(job, cfg)["compute"], where
    if shape == "4x2":
        assert sum(r.counters["cyc_stall"] for r in results) > 0, "credit path not exercised"


@pytest.mark.parametrize("shape", ["2x3", "icebreaker"])
@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_conv_engine_cycles_match_prediction(simulator, shape):
    activate(require_simulator(simulator))
    from nmaccel.sim.conv_harness import run_jobs
    cfg = SHAPES[shape]
    jobs = _cases("adder", 11)[:4] + _cases("binary", 12)
    if cfg.post_cycles > 1:                    # 1-beat groups: the post-processing waits
        rng = np.random.default_rng(13)
        jobs += [random_job(rng, "mul", 8, 1, s, cin, 5, 4, 5) for s in CONV_STRIDES
                 for cin in (1, cfg.p_in, cfg.p_in + 1)]
    waited = 0
    for (job, _), r in zip(jobs, run_jobs(cfg, jobs, simulator)):
        exp = get_exp_cycles(job, cfg)
        assert r.counters["cyc_stall"] == exp["stall"]
        waited += exp["stall"]
        assert r.counters["cyc_load"] == exp["load"]
        assert abs(r.counters["cyc_total"] - exp["total"]) <= 0.02 * exp["total"]
        assert r.counters["cyc_total"] == exp["total"]
    assert (waited > 0) == (cfg.post_cycles > 1)


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_layer_over_its_cycle_limit_fails_with_a_message(simulator):
    """The bench's watchdog: a limit a few cycles short of the layer (its input all sent by
    then, the last outputs still in the pipeline) stops the simulation and run_jobs raises
    with the bench's message; the default limit is a multiple of the prediction."""
    activate(require_simulator(simulator))
    from nmaccel.sim.conv_bench import WATCHDOG_FACTOR, layer_limit
    from nmaccel.sim.conv_harness import run_jobs
    cfg = SHAPES["2x3"]
    job, x = _cases("adder", 11)[1]
    exp = get_exp_cycles(job, cfg)["total"]
    limit = exp - 5
    layer = (f"adder layer {job.cin}->{job.cout} k={job.k} stride={job.stride} "
             f"{job.height}x{job.width}")
    with pytest.raises(RuntimeError, match=(
            rf"(?s)conv bench failed on {simulator}.*BenchTimeout: stream_get on 'o' \(outputs "
            rf"of the {layer} until done\): waited for the stop condition, got \d+ beats in "
            rf"{limit} cycles, the limit \(max_cycles={limit}\)")):
        run_jobs(cfg, [(job, x)], simulator, max_cycles=limit)
    assert layer_limit(job, cfg) >= WATCHDOG_FACTOR * exp
    assert layer_limit(job, cfg, gaps=0.3, stall=0.8) >= 5 * layer_limit(job, cfg) - 5000
