"""The host driver over the UART pins of the Verilog ``StaUartTop`` (``tiny`` preset, 8 cycles
per bit) under cocotb: PING identity, a sparse 2:4 GEMM bit-exact against the golden model
with counters equal to the cycle model, malformed frames (bad CRC, unknown command, bad
length, address out of range, truncated frame) answered with their error replies, a second
GEMM still exact afterwards; a program that fails on the core reports its error status; a
session over its cycle limit stops the bench with a message."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from nmaccel.model.sta_cycles import program_cycles
from nmaccel.model.sta_program import StaProgram, compile_gemm
from nmaccel.sim.simulators import require_simulator
from nmaccel.spec import sta_isa
from nmaccel.spec import uart_protocol as proto
from nmaccel.spec.config import sta_preset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hw"))
from test_sta_core import random_spec

DIVISOR = 8


def sparse_program(cfg, seed: int, tokens: int = 5, features: int = 6, k: int = 16) -> StaProgram:
    rng = np.random.default_rng(seed)
    spec = random_spec(rng, cfg, sta_isa.Mode.SPARSE, tokens, features, k, 0, f"y{seed}")
    return compile_gemm(spec, cfg)


def assert_exact(program, result):
    assert result.check(program) == {name: True for name in program.expected}
    for name, want in program.expected.items():
        assert np.array_equal(result.outputs[name], want)
    model = program_cycles(program.cfg, program.commands)
    assert result.counters["CYCLES"] == model.total
    assert result.counters["MAC_ACTIVE"] == model.mac_active
    assert result.counters["SPARSE_CYCLES"] == model.sparse
    assert result.counters["COMMANDS"] == len(program.commands)
    assert result.per_command == model.per_command


@pytest.mark.parametrize("simulator,stage", [("verilator", False), ("icarus", False),
                                             ("verilator", True)])
def test_driver_over_uart_pins(simulator, stage):
    """``stage``: the board top with register stages between bridge and core (ULX3S)."""
    require_simulator(simulator)
    from nmaccel.boards.simulated import board_session
    cfg = sta_preset("tiny")
    first, second = sparse_program(cfg, 1), sparse_program(cfg, 2, tokens=3, features=4, k=8)
    status_addr = sta_isa.host_address(cfg, "CSR", sta_isa.CSR["STATUS"])
    bad_crc = bytearray(proto.encode_write(sta_isa.host_address(cfg, "WBUF", 0), [1, 2]))
    bad_crc[-1] ^= 0xFF
    session = board_session(cfg, [
        ("check",),
        ("run", first),
        ("counters",),
        ("raw", bytes(bad_crc), proto.WRITE),
        ("raw", proto.encode_read(status_addr, 2)[:-3], proto.READ),     # truncated
        ("selftest",),
        ("run", second),
        ("status",),
    ], divisor=DIVISOR, simulator=simulator, host_stage=stage)
    outcomes = session["outcomes"]
    assert [o[0] for o in outcomes] == ["ok"] * 8, outcomes[-1]
    ident, run1, counters, crc_reply, trunc_reply, selftest, run2, status = [o[1] for o in outcomes]
    assert ident == proto.BoardId.of(cfg)
    assert_exact(first, run1)
    assert counters == run1.counters
    assert crc_reply == (proto.STATUS["CRC"], b"")
    assert trunc_reply == (proto.STATUS["TIMEOUT"], b"")
    assert selftest == {"bad_crc": "CRC", "unknown_command": "COMMAND", "bad_length": "LENGTH",
                        "read_count_zero": "LENGTH", "address": "ADDRESS", "truncated": "TIMEOUT"}
    assert_exact(second, run2)
    assert status["done"] and not status["error"] and not status["busy"]
    assert session["framing_errors"] == 0
    # every word went over the link: the load alone is 4 bytes per word plus frame overhead
    assert run1.extra["load_writes"] == len(first.host_writes())
    print(f"\n{simulator}: build {session['build_seconds']:.1f} s, simulation "
          f"{session['sim_seconds']:.1f} s, GEMM 1 {run1.cycles} cycles, "
          f"{run2.extra['bytes_out']} bytes out / {run2.extra['bytes_in']} in over the session")


def test_run_over_uart_reports_core_errors():
    require_simulator("verilator")
    from nmaccel.boards.simulated import run_over_uart
    from nmaccel.sim.sta_host import StaRunError
    cfg = sta_preset("tiny")
    bad = StaProgram(cfg)
    bad.commands.append(sta_isa.encode_command(cfg, op=9, m_tiles=1, n_tiles=1, k_steps=1))
    good = sparse_program(cfg, 3)
    results = run_over_uart([bad, good], divisor=DIVISOR, raise_on_error=False)
    assert results[0].error_code == sta_isa.ERROR_CODES["opcode"]
    assert_exact(good, results[1])
    assert results[1].backend == "uart-verilator"
    del StaRunError


def test_session_over_its_cycle_limit_fails_with_a_message():
    """The bench's watchdog: with a session limit that the PING fits in but the GEMM's load
    does not, the simulation stops and board_session raises with the bench's message."""
    require_simulator("verilator")
    from nmaccel.boards.cocotb_bench import session_limit
    from nmaccel.boards.simulated import board_session
    cfg = sta_preset("tiny")
    program = sparse_program(cfg, 1)
    limit = 4000
    with pytest.raises(RuntimeError, match=(
            r"(?s)UART board bench failed on verilator.*BenchTimeout: action 2 of 2 \('run'\): "
            rf"the simulated board session ran \d+ cycles, over its limit \(max_cycles={limit}\)"
            r", before (sending|reading) \d+ bytes")):
        board_session(cfg, [("check",), ("run", program)], divisor=DIVISOR, max_cycles=limit)
    default = session_limit(cfg, DIVISOR, 10_000, [("check",), ("run", program)])
    assert default > 10 * limit
