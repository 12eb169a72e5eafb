"""cocotb bench of :class:`nmaccel.hw.sta.softmax.StreamingSoftmax` (top ``softmax_top``).

Driven by ``tests/sim/test_sta_softmax_rtl.py`` through environment variables:

``NMACCEL_SOFTMAX_CONFIG``  the :class:`StaConfig` as JSON;
``NMACCEL_SOFTMAX_SEED``    seed of the random rows and of the idle / back-pressure draws;
``NMACCEL_SOFTMAX_ROWS``    number of random rows (besides the corner cases);
``NMACCEL_SOFTMAX_RESULT``  where a JSON summary is written (rows checked, cycles).

Phase 1 streams random rows of random lengths (1..max_seq) and the corner cases (length 1,
all equal, the most negative value, both extremes mixed, huge spread, garbage in unused
lanes) with random idle cycles on ``i`` and random back-pressure on ``o``; every output row
is compared bit for bit with :func:`nmaccel.model.softmax.softmax_int` and its beat
structure with the input's. Phase 2 streams rows back to back with ``o`` always ready and
checks one beat per cycle in and the cycles equal to
:func:`nmaccel.spec.softmax_timing.softmax_cycles`. Each phase has a cycle limit (20 cycles
per beat plus 8 pipeline latencies plus 200); past it the test fails with a
:class:`~nmaccel.sim.cocotb_streams.BenchTimeout`.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from nmaccel.model.softmax import softmax_int
from nmaccel.sim.cocotb_streams import BenchTimeout, reset, start_clock
from nmaccel.spec.config import StaConfig, clog2
from nmaccel.spec.softmax_timing import softmax_cycles, softmax_latency

__all__ = ["TOP", "corner_rows", "pack_in", "softmax_request", "unpack_out"]

#: Verilog name of the unit under test.
TOP = "softmax_top"


def pack_in(cfg: StaConfig, lanes, count: int, last: int) -> int:
    """Input payload word: ``data`` lanes (``softmax_in_bits`` each, lane 0 lowest), then
    ``count`` (``clog2(P+1)`` bits), then ``last`` — the ``StructLayout`` order."""
    b, p = cfg.softmax_in_bits, cfg.softmax_lanes
    word = 0
    for k, v in enumerate(lanes):
        word |= (int(v) & ((1 << b) - 1)) << (k * b)
    return word | (count << (p * b)) | (last << (p * b + clog2(p + 1)))


def unpack_out(cfg: StaConfig, word: int) -> tuple[int, list[int], int]:
    """``(count, data lanes, last)`` of an output payload word."""
    o, p = cfg.softmax_out_bits, cfg.softmax_lanes
    cb = clog2(p + 1)
    data = [(word >> (k * o)) & ((1 << o) - 1) for k in range(p)]
    return (word >> (p * o)) & ((1 << cb) - 1), data, (word >> (p * o + cb)) & 1


def corner_rows(cfg: StaConfig, rng: np.random.Generator, n_random: int) -> list[list[int]]:
    """Random rows of random lengths plus the corner cases, shuffled."""
    lo, hi = -(1 << (cfg.softmax_in_bits - 1)), (1 << (cfg.softmax_in_bits - 1)) - 1
    n, p = cfg.max_seq, cfg.softmax_lanes

    def length():
        return int(rng.integers(1, n + 1))

    rows = [rng.integers(lo, hi, length(), endpoint=True) for _ in range(n_random)]
    rows += [[lo], [hi], [0], [int(rng.integers(lo, hi))], [lo], [hi]]      # length 1
    rows += [np.full(length(), int(rng.integers(lo, hi))) for _ in range(2)]  # all equal
    rows += [np.full(n, lo), np.full(length(), lo), np.full(n, hi)]  # most negative / max
    rows += [rng.choice([lo, hi], length()) for _ in range(3)]       # extremes mixed
    rows += [np.linspace(lo, hi, n).astype(np.int64),                # rising: max at the end
             np.linspace(hi, lo, n).astype(np.int64)]
    spread = np.full(length(), lo)
    spread[rng.integers(len(spread))] = hi
    rows.append(spread)
    for k in (p - 1, p + 1, 2 * p - 1):
        if 1 <= k <= n:
            rows.append(rng.integers(lo, hi, k, endpoint=True))
    rows = [[int(v) for v in r] for r in rows]
    return [rows[k] for k in rng.permutation(len(rows))]


def _beats(cfg: StaConfig, row, rng: random.Random) -> list[int]:
    p = cfg.softmax_lanes
    lo, hi = -(1 << (cfg.softmax_in_bits - 1)), (1 << (cfg.softmax_in_bits - 1)) - 1
    out = []
    for s in range(0, len(row), p):
        chunk = list(row[s:s + p])
        chunk += [rng.randint(lo, hi) for _ in range(p - len(chunk))]     # garbage lanes
        out.append(pack_in(cfg, chunk, min(p, len(row) - s), int(s + p >= len(row))))
    return out


async def _stream(dut, cfg: StaConfig, rows, rng: random.Random, idle: float, stall: float):
    """Drive the rows' beats and collect the output, one loop iteration per clock cycle.
    Returns ``(output beats, accept cycles, output cycles)``; checks the stream rules and
    ``busy`` on the way. Call right after a rising edge."""
    beats = [w for r in rows for w in _beats(cfg, r, rng)]
    out, acc_cyc, out_cyc = [], [], []
    i = cycle = inside = 0
    held = None
    # one beat per cycle is the unit's rate; the random idle and stall cost a few times that
    limit = 20 * (len(beats) + 1) + 8 * softmax_latency(cfg) + 200
    while i < len(beats) or len(out) < len(beats):
        if cycle >= limit:
            raise BenchTimeout(
                f"waited {cycle} cycles, the limit (20 per beat + 8 latencies + 200), for the "
                f"{len(beats)} output beats of {len(rows)} rows: {i} input beats taken, "
                f"{len(out)} output beats out (i__ready={dut.i__ready.value}, "
                f"o__valid={dut.o__valid.value}); the unit stalls")
        send = i < len(beats) and not (idle and rng.random() < idle)
        take = not (stall and rng.random() < stall)
        dut.i__valid.value = int(send)
        if send:
            dut.i__payload.value = beats[i]
        dut.o__ready.value = int(take)
        await ReadOnly()
        assert int(dut.busy.value) == (inside > 0), f"busy wrong with {inside} beats inside"
        if int(dut.o__valid.value):
            word = int(dut.o__payload.value)
            assert held is None or word == held, "o payload changed while waiting for ready"
            held = None if take else word
            if take:
                out.append(unpack_out(cfg, word))
                out_cyc.append(cycle)
                inside -= 1
        else:
            assert held is None, "o valid dropped before the beat was taken"
        if send and int(dut.i__ready.value):
            acc_cyc.append(cycle)
            i += 1
            inside += 1
        await RisingEdge(dut.clk)
        cycle += 1
    dut.i__valid.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    await ReadOnly()
    assert not int(dut.busy.value) and not int(dut.o__valid.value), "unit did not drain"
    await RisingEdge(dut.clk)
    return out, acc_cyc, out_cyc


def _check(cfg: StaConfig, rows, out) -> None:
    p = cfg.softmax_lanes
    want_counts = [min(p, len(r) - s) for r in rows for s in range(0, len(r), p)]
    assert [c for c, _, _ in out] == want_counts, "output beat structure differs"
    k = 0
    for n, row in enumerate(rows):
        got = []
        while True:
            count, data, last = out[k]
            k += 1
            assert all(v == 0 for v in data[count:]), f"row {n}: lanes >= count not zero"
            got += data[:count]
            if last:
                break
        want = [int(v) for v in softmax_int(np.array([row]), cfg)[0]]
        assert got == want, f"row {n} (length {len(row)}) differs: {row} -> {got}, want {want}"


@cocotb.test()
async def softmax_request(dut):
    cfg = StaConfig.from_json(os.environ["NMACCEL_SOFTMAX_CONFIG"])
    seed = int(os.environ.get("NMACCEL_SOFTMAX_SEED", "0"))
    n_random = int(os.environ.get("NMACCEL_SOFTMAX_ROWS", "20"))
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    start_clock(dut.clk)
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    dut.clear.value = 0
    await reset(dut, dut.clk)

    # Phase 1: bit exact under random idle and back-pressure.
    rows = corner_rows(cfg, nrng, n_random)
    out, _, _ = await _stream(dut, cfg, rows, rng, idle=0.3, stall=0.4)
    _check(cfg, rows, out)
    assert not int(dut.overflow.value)

    # Phase 2: back to back, output always ready: one beat per cycle, exact cycles.
    n = cfg.max_seq
    lengths = [n, 1, 1, 2, cfg.softmax_lanes + 1, n, 1] + [rng.randint(1, n) for _ in range(6)]
    lengths = [min(k, n) for k in lengths] + [1, 1, 1]
    rows2 = [[rng.randint(-(1 << (cfg.softmax_in_bits - 1)), (1 << (cfg.softmax_in_bits - 1)) - 1)
              for _ in range(k)] for k in lengths]
    out2, acc, outc = await _stream(dut, cfg, rows2, rng, idle=0.0, stall=0.0)
    _check(cfg, rows2, out2)
    assert acc == list(range(acc[0], acc[0] + len(acc))), "input stalled"
    measured = outc[-1] - acc[0] + 1
    expected = softmax_cycles(cfg, lengths)
    assert measured == expected, f"measured {measured} cycles, model {expected}"

    path = os.environ.get("NMACCEL_SOFTMAX_RESULT")
    if path:
        Path(path).write_text(json.dumps({"rows": len(rows) + len(rows2),
                                          "beats": len(out) + len(out2),
                                          "cycles": measured, "expected_cycles": expected}))
