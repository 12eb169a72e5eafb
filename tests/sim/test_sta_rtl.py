"""StaCore's generated Verilog under cocotb 2.x (Verilator, Icarus): random sparse and dense
GEMMs with odd sizes (tiling and padding), random idle cycles on the host write/read-request
streams and random back-pressure on read data, every output bit-exact against the golden
model and every counter equal to the analytic cycle model; a real MiniLM-L6 layer-0 case
(2:4-pruned Q/K/V/O/FFN weights and Q·Kᵀ on real activations); bad commands and bad N:M
metadata end in the error status on RTL too, and so do operand sources and output layouts
that need a square array on a non-square one (error "shape"); a run longer than its cycle
limit stops the bench with a message."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from nmaccel.model.sta_cycles import program_cycles
from nmaccel.model.sta_program import StaProgram, compile_gemm
from nmaccel.sim.simulators import require_simulator
from nmaccel.sim.sta_host import StaRunError
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hw"))
from test_sta_core import random_spec  # noqa: E402  (shared scenario builder)

DEPTHS = dict(wbuf_depth=4096, abuf_depth=512, obuf_depth=2048, pbuf_depth=512, cbuf_depth=16)
CONFIGS = {  # name: (rows, cols, lanes, n, m)
    "R4C4L4-2:4": (4, 4, 4, 2, 4),
    "R3C2L2-1:8": (3, 2, 2, 1, 8),
    "R2C3L8-4:16": (2, 3, 8, 4, 16),
}


def make_cfg(name: str) -> StaConfig:
    R, C, L, n, m = CONFIGS[name]
    return StaConfig(rows=R, cols=C, lanes=L, n=n, m=m, softmax_lanes=2, max_seq=64, **DEPTHS)


def random_program(cfg: StaConfig, seed: int) -> StaProgram:
    rng = np.random.default_rng(seed)
    R, C, L, m = cfg.rows, cfg.cols, cfg.lanes, cfg.m
    program = StaProgram(cfg)
    bases = {"w_base": 0, "a_base": 0, "o_base": 0, "p_base": 0}
    keys = {"WBUF": "w_base", "ABUF": "a_base", "OBUF": "o_base", "PBUF": "p_base"}
    plan = [
        (0, int(rng.integers(R + 1, 3 * R + 1)), int(rng.integers(C + 1, 3 * C + 1)),
         m * int(rng.integers(2, 6)), 0),
        (1, int(rng.integers(1, 3 * R + 1)), int(rng.integers(1, 3 * C + 1)),
         int(rng.integers(1, 4 * L)), 1),
        (0, R, C, m, 2),
        (1, 2 * R - 1, C + 1, L * sta_isa.dense_ratio(cfg) * 2 + 1, 0),
    ]
    for i, (mode, features, tokens, k, osel) in enumerate(plan):
        compile_gemm(random_spec(rng, cfg, mode, tokens, features, k, osel, f"g{i}"), cfg,
                     program, **bases)
        for space, (base, count) in program.gemm_commands()[-1].extents(cfg).items():
            bases[keys[space]] = base + count
    return program


def assert_run_matches(program, res):
    for name, want in program.expected.items():
        assert np.array_equal(res.outputs[name], want), f"{name} differs from the golden model"
    model = program_cycles(program.cfg, program.commands)
    assert res.counters["CYCLES"] == model.total
    assert res.counters["MAC_ACTIVE"] == model.mac_active
    assert res.counters["STALLS"] == model.stalls
    assert res.per_command == model.per_command


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_random_gemms_with_backpressure(simulator, config):
    require_simulator(simulator)
    from nmaccel.sim.sta_rtl import run_programs
    cfg = make_cfg(config)
    programs = [random_program(cfg, seed) for seed in (11, 12)]
    results = run_programs(programs, simulator=simulator, idle=0.3, backpressure=0.4, seed=5)
    for program, res in zip(programs, results):
        assert_run_matches(program, res)


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_errors_on_rtl(simulator):
    require_simulator(simulator)
    from nmaccel.sim.sta_rtl import run_programs
    cfg = make_cfg("R4C4L4-2:4")
    bad_op = StaProgram(cfg)
    bad_op.commands.append(sta_isa.encode_command(cfg, op=9, m_tiles=1, n_tiles=1, k_steps=1))
    bad_range = StaProgram(cfg)
    bad_range.commands.append(sta_isa.encode_command(cfg, op=1, m_tiles=2, n_tiles=1, k_steps=4095))
    bad_meta = compile_gemm(random_spec(np.random.default_rng(1), cfg, 0, 4, 4, 8, 0, "y"), cfg)
    E = cfg.weight_bits + cfg.index_bits
    word = bad_meta.images["WBUF"][0]
    hi = (word >> (E + cfg.weight_bits)) & 3
    word = (word & ~(3 << cfg.weight_bits)) | (hi << cfg.weight_bits)   # entry 0 := entry 1's index
    bad_meta.images["WBUF"][0] = word
    good = random_program(cfg, 3)
    results = run_programs([bad_op, bad_range, bad_meta, good], simulator=simulator,
                           raise_on_error=False)
    assert [r.error_code for r in results] == [1, 3, 7, 0]
    assert_run_matches(good, results[3])            # the core keeps working after errors
    with pytest.raises(StaRunError, match="unknown opcode"):
        run_programs([bad_op], simulator=simulator)


def test_minilm_layer0_2to4_real_case():
    """MiniLM-L6 layer 0, weights pruned 2:4, seq 32 real tokens: the six linear GEMMs and two
    heads' Q·Kᵀ on RTL equal the integer golden layer's own intermediates."""
    require_simulator("verilator")
    from nmaccel.model.sta_workloads import minilm_layer_gemms
    from nmaccel.sim.sta_rtl import run_gemms
    cfg = make_cfg("R4C4L4-2:4")
    wl = minilm_layer_gemms(cfg, (2, 4), seq=32, heads=2)
    runs = run_gemms(cfg, wl.gemms, wl.references, backdoor=True)
    assert [r["name"] for r in runs] == [s.name for s in wl.gemms]
    for r in runs:
        assert r["bit_exact"], r["name"]
        assert r["program_cycles"] == r["program_predicted"], r["name"]
        if r["name"] == "ffn1":
            assert r["mode"] == "sparse" and r["utilization"] > 0.95


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_shape_error_on_non_square_rtl(simulator):
    """R3C2 is not square: W from ABUF (dense x dense) and the transposed ABUF output both
    end in error 13 ("shape") before anything runs; a good program still runs after them."""
    require_simulator(simulator)
    from nmaccel.sim.sta_rtl import run_programs
    cfg = make_cfg("R3C2L2-1:8")
    assert cfg.rows != cfg.cols
    bad = []
    for fields in ({"wsrc": sta_isa.WSrc.ABUF}, {"dest": sta_isa.Dest.ABUF_T}):
        program = StaProgram(cfg)
        program.commands.append(sta_isa.encode_command(
            cfg, op=sta_isa.Opcode.GEMM, mode=sta_isa.Mode.DENSE, m_tiles=1, n_tiles=1,
            k_steps=1, **fields))
        bad.append(program)
    good = random_program(cfg, 4)
    results = run_programs(bad + [good], simulator=simulator, raise_on_error=False)
    assert [r.error_code for r in results] == [sta_isa.ERROR_CODES["shape"]] * 2 + [0]
    assert [r.error_index for r in results[:2]] == [0, 0]
    assert_run_matches(good, results[2])
    with pytest.raises(StaRunError, match=r"error 13 \(operand source or output layout needs "
                                          r"rows == cols"):
        run_programs(bad[:1], simulator=simulator)


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_run_over_its_cycle_limit_fails_with_a_message(simulator):
    """The bench's watchdog: a limit below the program's length stops the simulation, and
    run_programs raises with the bench's message (what it waited for, the cycles, the limit);
    the default limit comes from the cycle model (a given limit skips the model, which random
    command streams can make slow)."""
    require_simulator(simulator)
    from nmaccel.sim.sta_rtl import WATCHDOG_FACTOR, predicted_cycles, run_programs
    cfg = make_cfg("R4C4L4-2:4")
    program = random_program(cfg, 3)
    predicted = predicted_cycles(program)
    assert predicted == program_cycles(cfg, program.commands).total > 50
    limit = predicted // 4
    n = len(program.commands)
    with pytest.raises(RuntimeError, match=(
            rf"(?s)STA bench failed on {simulator}.*BenchTimeout: waited {limit} cycles for "
            rf"program 0 \({n} commands; a cycle limit given by the caller, the cycle model "
            rf"not run\) to "
            rf"finish after START, the limit \(max_cycles={limit}\): none of done/error went "
            rf"high \(now done=0, error=0\)")):
        run_programs([program], simulator=simulator, max_cycles=limit)
    assert WATCHDOG_FACTOR > 1
    # the program itself is fine: with its default limit it runs to the end
    res = run_programs([program], simulator=simulator, backdoor=True)[0]
    assert res.cycles == predicted


def test_a_simulation_started_ahead_runs_cancels_and_waits_with_a_limit():
    """:class:`Simulation` spawns the simulator before the programs exist: the programs it gets
    later run exactly; one cancelled exits without running anything; one that gets nothing
    within ``job_wait`` stops with a message naming the wait; the preparation's error
    reaches the caller and the started process is cancelled, also when a program fails while
    the job goes out in parts; bad arguments fail first."""
    require_simulator("verilator")
    import time

    from nmaccel.sim.sta_rtl import Simulation
    cfg = make_cfg("R4C4L4-2:4")
    program = random_program(cfg, 4)
    sim = Simulation(cfg).start()
    res = sim.run([program], backdoor=True)[0]
    assert_run_matches(program, res)
    assert sim.seconds["build_end"] <= sim.seconds["sim_end"]
    with pytest.raises(RuntimeError, match="runs one list of programs"):
        sim.run([program])
    cancelled = Simulation(cfg).start()
    cancelled.cancel()
    assert cancelled._outcome["value"][1] == []           # no runs, no error
    late = Simulation(cfg, job_wait=0.5).start()
    time.sleep(0.2)
    while late._thread.is_alive() and "sim_end" not in late.seconds:
        time.sleep(0.1)
    late._thread.join(60)
    with pytest.raises(RuntimeError, match=r"(?s)STA bench failed.*no STA job at .* after "
                                           r"0.5 s"):
        late.run([program], backdoor=True)
    # a program that fails while the job goes out ends the simulator (no hang), the error
    # reaches the caller
    bad = random_program(cfg, 5)
    bad.images["WBUF"][0] = "junk"
    streamed = Simulation(cfg).start()
    with pytest.raises(ValueError, match="junk"):
        streamed.run([program, bad], backdoor=True)
    assert not streamed._thread.is_alive()
    # ... also when the failure comes after the program's host script was made (the cancel
    # goes into the part the bench waits for, not the one after it)
    import nmaccel.sim.sta_rtl as sta_rtl

    def broken(p):
        raise TypeError("the cycle model broke")
    real = sta_rtl.predicted_cycles
    sta_rtl.predicted_cycles = broken
    try:
        late_fail = Simulation(cfg, job_wait=300).start()
        t0 = time.monotonic()
        with pytest.raises(TypeError, match="the cycle model broke"):
            late_fail.run([program], backdoor=True)
        assert not late_fail._thread.is_alive()
        assert time.monotonic() - t0 < 120      # not the bench's 300 s wait for a part
    finally:
        sta_rtl.predicted_cycles = real
    other = make_cfg("R3C2L2-1:8")
    with Simulation(other) as s:
        with pytest.raises(ValueError, match="share one StaConfig"):
            s.run([program])
    with pytest.raises(ValueError, match="job_wait must be a positive number of seconds, "
                                         "not 0"):
        Simulation(cfg, job_wait=0)
