# amaranth: UnusedElaboratable=no
"""StreamingSoftmax (amaranth.sim) against the golden nmaccel.model.softmax.softmax_int, bit
exact per row: random rows of random lengths, length 1, all-equal, very negative,
max-magnitude and huge-spread rows, garbage in the unused lanes, random idle cycles on the
input and random back-pressure on the output; the beat structure, ``busy`` and the
throughput / cycle count against nmaccel.spec.softmax_timing (exact); the split running
sum's row boundaries (short rows back to back and with gaps); overflow on too-long rows (and
recovery after ``clear``); out-of-spec counts never hang; bad arguments."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest
from amaranth.sim import Simulator

from nmaccel.hw.sta.softmax import StreamingSoftmax
from nmaccel.model.softmax import softmax_int, softmax_row_online
from nmaccel.spec.config import ConvConfig, StaConfig, clog2, sta_preset
from nmaccel.spec.softmax_timing import (
    SOFTMAX_SPLIT,
    SoftmaxStream,
    softmax_buffer_beats,
    softmax_cycles,
    softmax_latency,
    softmax_pass1_stages,
    softmax_quotient_bits,
    softmax_row_beats,
    softmax_schedule,
)

CONFIGS = {
    "tiny": sta_preset("tiny"),
    "ulx3s": sta_preset("ulx3s"),
    # odd lane count, max_seq not a multiple of P, 7-bit outputs, G = 128
    "odd": StaConfig(softmax_lanes=3, softmax_in_bits=10, softmax_in_frac=3,
                     softmax_exp_bits=9, softmax_recip_frac=20, softmax_out_bits=7, max_seq=20),
    # one lane, no fractional bits (one-entry table), tiny widths
    "edge": StaConfig(softmax_lanes=1, softmax_in_bits=6, softmax_in_frac=0,
                      softmax_exp_bits=4, softmax_recip_frac=8, softmax_out_bits=2, max_seq=5),
    # widest table / reciprocal / outputs the 64-bit golden model takes (K + out_bits = 60)
    "wide": StaConfig(softmax_lanes=5, softmax_in_bits=14, softmax_in_frac=8,
                      softmax_exp_bits=24, softmax_recip_frac=44, softmax_out_bits=16,
                      max_seq=13),
    "large": sta_preset("large"),
}


def _range(cfg):
    return -(1 << (cfg.softmax_in_bits - 1)), (1 << (cfg.softmax_in_bits - 1)) - 1


def special_rows(cfg, rng):
    """Random and corner-case rows (lists of ints) for ``cfg``."""
    lo, hi = _range(cfg)
    n, P = cfg.max_seq, cfg.softmax_lanes

    def length():
        return int(rng.integers(1, n + 1))

    rows = [rng.integers(lo, hi, length(), endpoint=True) for _ in range(8)]
    rows += [rng.integers(-(1 << cfg.softmax_in_frac) * 3, 1 << cfg.softmax_in_frac, length())
             for _ in range(3)]                                      # realistic spread
    rows += [[lo], [hi], [0], [int(rng.integers(lo, hi))]]          # length 1
    rows += [np.full(length(), int(rng.integers(lo, hi))) for _ in range(2)]  # all equal
    rows += [np.full(n, lo), np.full(length(), lo), np.full(n, hi)]  # very negative / max
    rows += [rng.choice([lo, hi], length()) for _ in range(2)]       # both extremes mixed
    rows += [np.linspace(lo, hi, n).astype(np.int64),               # max at the end: big
             np.linspace(hi, lo, max(1, n - 1)).astype(np.int64)]  # rescales, huge spread
    spread = np.full(length(), lo)
    spread[rng.integers(len(spread))] = hi                          # one hot
    rows.append(spread)
    for k in (1, P - 1, P, P + 1, 2 * P - 1):                       # around lane groups
        if 1 <= k <= n:
            rows.append(rng.integers(lo, hi, k, endpoint=True))
    return [[int(v) for v in r] for r in rows]


def beats_of(cfg, row, rng=None):
    """Input beats of ``row``; unused lanes of a short beat hold random garbage."""
    P = cfg.softmax_lanes
    lo, hi = _range(cfg)
    out = []
    for s in range(0, len(row), P):
        chunk = list(row[s:s + P])
        pad = [int(rng.integers(lo, hi, endpoint=True)) if rng is not None else 0
               for _ in range(P - len(chunk))]
        out.append({"data": chunk + pad, "count": len(chunk), "last": int(s + P >= len(row))})
    return out


def stored_rows(cfg, beats):
    """What the unit stores of arbitrary beats (its documented overflow / count rules):
    ``(rows as lists of output-beat counts and values, overflow events)``."""
    P, n_max = cfg.softmax_lanes, cfg.max_seq
    max_beats = -(-n_max // P)
    rows, cur, n_elem, overflow = [], [], 0, 0
    for b in beats:
        cnt = min(b["count"], P)
        room = n_max - n_elem if len(cur) < max_beats else 0
        st = min(cnt, room)
        overflow += st != cnt
        if st:
            cur.append(list(b["data"][:st]))
            n_elem += st
        if b["last"]:
            if cur:
                rows.append(cur)
            cur, n_elem = [], 0
    return rows, overflow


class Run:
    """Result of :func:`run_beats`."""

    def __init__(self):
        self.out = []              # output beats (count, data, last)
        self.accept_cycles = []    # cycle of every accepted input beat
        self.out_cycles = []       # cycle of every transferred output beat
        self.ready_low = 0         # cycles with i.valid high and i.ready low
        self.overflow = []         # overflow flag per cycle
        self.clear_cycle = None    # cycle ``clear`` was pulsed


def run_beats(dut, beats, idle=0.0, backpressure=0.0, seed=0, expect_beats=None,
              clear_after=None, max_cycles=None, pad_rows=()):
    """Drive ``beats`` into ``dut`` cycle by cycle (random idle / back-pressure) and collect
    ``expect_beats`` output beats (default: as many as input beats); checks ``busy`` and the
    stream rules (valid/payload held while not accepted) every cycle. ``clear`` is pulsed
    for one cycle once ``clear_after`` input beats have been accepted. After the last beat of
    each output row in ``pad_rows`` the consumer drops ``o.ready`` for one cycle (as the STA's
    SBUF writer does to zero the rest of a window)."""
    cfg = dut.config
    expect = len(beats) if expect_beats is None else expect_beats
    limit = max_cycles or (10 * (len(beats) + 1) * (1 + 4 * (idle + backpressure)) +
                           4 * dut.latency + 200)
    rng = random.Random(seed)
    run = Run()
    exact_busy = expect_beats is None

    async def tb(ctx):
        i = cycle = 0
        in_flight = 0
        held = None
        out_row, pad_next = 0, False
        while i < len(beats) or len(run.out) < expect:
            assert cycle < limit, f"no progress after {cycle} cycles ({len(run.out)} beats out)"
            send = i < len(beats) and not (idle and rng.random() < idle)
            take = not (backpressure and rng.random() < backpressure) and not pad_next
            pad_next = False
            ctx.set(dut.i.valid, int(send))
            if send:
                ctx.set(dut.i.payload, beats[i])
            ctx.set(dut.o.ready, int(take))
            clear = clear_after is not None and i >= clear_after and run.clear_cycle is None
            ctx.set(dut.clear, int(clear))
            if clear:
                run.clear_cycle = cycle
            busy = ctx.get(dut.busy)
            if exact_busy:
                assert busy == (in_flight > 0), f"busy={busy} with {in_flight} beats inside"
            elif in_flight:
                assert busy
            ovalid = ctx.get(dut.o.valid)
            if ovalid:
                payload = ctx.get(dut.o.payload)
                beat = (int(payload.count), [int(payload.data[k])
                                             for k in range(cfg.softmax_lanes)],
                        int(payload.last))
                if held is not None:
                    assert beat == held, "o.payload changed while o.valid waited for ready"
                held = None if take else beat
            else:
                assert held is None, "o.valid dropped before the beat was taken"
            run.overflow.append(ctx.get(dut.overflow))
            if send and ctx.get(dut.i.ready):
                run.accept_cycles.append(cycle)
                i += 1
                in_flight += 1
            elif send:
                run.ready_low += 1
            if ovalid and take:
                run.out.append(beat)
                run.out_cycles.append(cycle)
                in_flight -= 1
                if beat[2]:
                    pad_next = out_row in pad_rows
                    out_row += 1
            await ctx.tick()
            cycle += 1
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.clear, 0)
        ctx.set(dut.o.ready, 1)
        for _ in range(dut.latency + 4):                      # nothing else comes out
            assert not ctx.get(dut.o.valid), "unexpected extra output beat"
            await ctx.tick()
        assert not ctx.get(dut.busy), "busy stays high after the unit drained"
        run.overflow.append(ctx.get(dut.overflow))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return run


def split_rows(out):
    """Output beats -> rows of probabilities (checking lanes >= count are 0)."""
    rows, cur = [], []
    for count, data, last in out:
        assert all(v == 0 for v in data[count:]), f"lanes >= count not zero: {data} ({count})"
        cur += data[:count]
        if last:
            rows.append(cur)
            cur = []
    assert not cur, "output ended in the middle of a row"
    return rows


def check_rows(cfg, rows, run):
    got = split_rows(run.out)
    assert len(got) == len(rows)
    P = cfg.softmax_lanes
    counts = [c for c, _, _ in run.out]
    want_counts = [min(P, len(r) - s) for r in rows for s in range(0, len(r), P)]
    assert counts == want_counts, "output beat structure differs from the input's"
    for n, (row, g) in enumerate(zip(rows, got)):
        want = softmax_int(np.array([row]), cfg)[0]
        assert g == [int(v) for v in want], f"row {n} (length {len(row)}): {row}"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_softmax_bit_exact_random_idle_backpressure(name):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    rows = special_rows(cfg, rng)
    order = rng.permutation(len(rows))
    rows = [rows[k] for k in order]
    beats = [b for r in rows for b in beats_of(cfg, r, rng)]
    dut = StreamingSoftmax(cfg)
    run = run_beats(dut, beats, idle=0.3, backpressure=0.4, seed=len(rows))
    check_rows(cfg, rows, run)
    assert not any(run.overflow)


@pytest.mark.parametrize("name", ["tiny", "odd"])
def test_softmax_heavy_backpressure_fills_buffer(name):
    """A slow sink: the buffer fills, i.ready drops, nothing is lost or reordered."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(5)
    lengths = [cfg.max_seq, 1, 1, cfg.max_seq, 2, cfg.softmax_lanes + 1, 1, cfg.max_seq, 1] * 3
    lo, hi = _range(cfg)
    rows = [[int(v) for v in rng.integers(lo, hi, n, endpoint=True)] for n in lengths]
    beats = [b for r in rows for b in beats_of(cfg, r, rng)]
    run = run_beats(StreamingSoftmax(cfg), beats, backpressure=0.85, seed=3)
    check_rows(cfg, rows, run)
    assert run.ready_low > 0, "back-pressure never reached the input"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_softmax_throughput_and_cycles(name):
    """Input always valid, output always ready: one beat per cycle in and the measured
    cycles (and every row's first/last output cycle) equal softmax_cycles/schedule."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(11)
    n, P = cfg.max_seq, cfg.softmax_lanes
    lengths = ([n, 1, 1, 2, n, P + 1, 1] + [int(v) for v in rng.integers(1, n + 1, 8)] +
               [1] * 6 + [n])
    lo, hi = _range(cfg)
    rows = [[int(v) for v in rng.integers(lo, hi, k, endpoint=True)] for k in lengths]
    beats = [b for r in rows for b in beats_of(cfg, r)]
    dut = StreamingSoftmax(cfg)
    run = run_beats(dut, beats)
    check_rows(cfg, rows, run)
    assert run.ready_low == 0, "input stalled with the output always ready"
    t0 = run.accept_cycles[0]
    assert run.accept_cycles == list(range(t0, t0 + len(beats))), "not one beat per cycle"
    measured = run.out_cycles[-1] - t0 + 1
    assert measured == softmax_cycles(cfg, lengths) == dut.get_exp_cycles(lengths)
    firsts = [k for k, (_, _, last) in enumerate(run.out) if k == 0 or run.out[k - 1][2]]
    lasts = [k for k, (_, _, last) in enumerate(run.out) if last]
    want = softmax_schedule(cfg, lengths)
    assert [(run.out_cycles[a] - t0, run.out_cycles[b] - t0)
            for a, b in zip(firsts, lasts)] == want
    # Single row: the latency is the one documented.
    one = run_beats(dut, beats_of(cfg, rows[0]))
    assert one.out_cycles[0] - one.accept_cycles[-1] == dut.latency == softmax_latency(cfg)
    assert one.out_cycles[-1] - one.accept_cycles[0] + 1 == softmax_cycles(cfg, [lengths[0]])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_softmax_stream_follows_a_consumer_that_pads_after_rows(name):
    """``SoftmaxStream`` (the cycle model's view of the unit across rows and blocks) gives
    every row's first and last output cycle when the consumer drops ``o.ready`` for one cycle
    after some rows (the skid stage then holds a beat and freezes pass 2), and equals
    ``softmax_schedule`` when it never does."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(5)
    # rows up to half of max_seq: the pads' delay stays within the beat buffer's slack, so
    # the input is never stalled (asserted below), which SoftmaxStream assumes
    n = max(1, cfg.max_seq // 2)
    lengths = [1, 1, 2, n, 1, min(n, cfg.softmax_lanes + 1)] + [
        int(v) for v in rng.integers(1, n + 1, 10)] + [1] * 5
    lo, hi = _range(cfg)
    rows = [[int(v) for v in rng.integers(lo, hi, k, endpoint=True)] for k in lengths]
    beats = [b for r in rows for b in beats_of(cfg, r)]
    ends = np.cumsum([softmax_row_beats(cfg, k) for k in lengths]) - 1
    for pads in (set(), set(range(len(rows))), {0, 1, 2, 4, 9, 16, 17, 19}):
        run = run_beats(StreamingSoftmax(cfg), beats, pad_rows=pads)
        check_rows(cfg, rows, run)
        t0 = run.accept_cycles[0]
        assert run.accept_cycles == list(range(t0, t0 + len(beats)))
        firsts = [k for k, (_, _, last) in enumerate(run.out) if k == 0 or run.out[k - 1][2]]
        lasts = [k for k, (_, _, last) in enumerate(run.out) if last]
        measured = [(run.out_cycles[a] - t0, run.out_cycles[b] - t0)
                    for a, b in zip(firsts, lasts)]
        stream = SoftmaxStream(cfg)
        model = [stream.row(int(end), k, pad_after=r in pads)
                 for r, (end, k) in enumerate(zip(ends, lengths))]
        assert measured == model, f"pads after rows {sorted(pads)}"
        if not pads:
            assert model == softmax_schedule(cfg, lengths)


@pytest.mark.parametrize("name", ["tiny", "edge", "odd"])
def test_softmax_split_sum_row_boundaries(name):
    """The k-way split running sum (SOFTMAX_SPLIT partial sums, merged at a row's end):
    rows of 1..k+2 beats back to back, then with idle cycles between beats, with the max in
    the first, a middle or the last beat, ties and extreme values, so that a row's partial
    sums leave the loop while the next rows' beats enter it."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(21)
    lo, hi = _range(cfg)
    P, one = cfg.softmax_lanes, 1 << cfg.softmax_in_frac
    rows = []
    for n_beats in range(1, SOFTMAX_SPLIT + 3):
        length = min(cfg.max_seq, n_beats * P)
        for where in (0, length // 2, length - 1):
            for spread in (one, 40 * one, hi - lo):
                row = [int(v) for v in np.clip(
                    int(rng.integers(lo, hi)) - rng.integers(0, spread, length), lo, hi)]
                row[where] = min(hi, max(row) + int(rng.integers(0, 3 * one)))
                rows.append(row)
            tie = [lo] * length
            tie[where] = tie[-1 - where] = hi
            rows.append(tie)
    order = rng.permutation(len(rows))
    rows = [rows[k] for k in order]
    beats = [b for r in rows for b in beats_of(cfg, r, rng)]
    for idle, backpressure, seed in ((0.0, 0.0, 1), (0.5, 0.0, 2), (0.3, 0.3, 3)):
        run = run_beats(StreamingSoftmax(cfg), beats, idle=idle, backpressure=backpressure,
                        seed=seed)
        check_rows(cfg, rows, run)


def test_softmax_overflow_and_clear():
    cfg = CONFIGS["odd"]                                    # P = 3, max_seq = 20
    rng = np.random.default_rng(2)
    lo, hi = _range(cfg)
    dut = StreamingSoftmax(cfg)

    def row(k):
        return [int(v) for v in rng.integers(lo, hi, k, endpoint=True)]

    long_rows = [row(cfg.max_seq + 1), row(cfg.max_seq + 7), row(cfg.max_seq + 3)]
    good = [row(5)] + [row(int(k)) for k in rng.integers(1, cfg.max_seq + 1, 6)] + [
        row(cfg.max_seq), row(1)]
    rows = good[:1] + long_rows + good[1:]
    beats = [b for r in good[:1] + long_rows for b in beats_of(cfg, r, rng)]
    n_first = len(beats)
    beats += [b for r in good[1:] for b in beats_of(cfg, r, rng)]
    kept, events = stored_rows(cfg, beats)
    assert events == 1 + 3 + 2                         # truncated or dropped beats
    # One simulation: the long rows, clear, then good rows only.
    run = run_beats(dut, beats, idle=0.2, backpressure=0.3, seed=4,
                    expect_beats=sum(len(r) for r in kept), clear_after=n_first)
    # The long rows come out as the softmax of their first max_seq elements, finished on
    # their last stored beat.
    want_rows = [r[:cfg.max_seq] for r in rows]
    assert [c for c, _, _ in run.out] == [len(b) for r in kept for b in r]
    got = split_rows(run.out)
    assert [len(r) for r in got] == [len(r) for r in want_rows]
    for g, w in zip(got, want_rows):
        assert g == [int(v) for v in softmax_int(np.array([w]), cfg)[0]]
    c = run.clear_cycle
    assert not any(run.overflow[:3]) and run.overflow[c] == 1
    assert not any(run.overflow[c + 1:]), "overflow set by good rows or not cleared"


@pytest.mark.parametrize("name", ["edge", "tiny"])
def test_softmax_out_of_spec_counts_never_hang(name):
    """Random counts (0, short beats mid-row, > P where the field allows) and random
    ``last``: every row with stored elements comes out, equal to the softmax of what the
    documented rules store; the unit drains (busy low) and keeps working."""
    cfg = CONFIGS[name]
    rng = np.random.default_rng(9)
    lo, hi = _range(cfg)
    P = cfg.softmax_lanes
    cmax = (1 << clog2(P + 1)) - 1
    beats = [{"data": [int(v) for v in rng.integers(lo, hi, P, endpoint=True)],
              "count": int(rng.integers(0, cmax + 1)), "last": int(rng.random() < 0.15)}
             for _ in range(150)]
    beats[-1]["last"] = 1
    kept, _ = stored_rows(cfg, beats)
    dut = StreamingSoftmax(cfg)
    run = run_beats(dut, beats, idle=0.2, backpressure=0.3, seed=1,
                    expect_beats=sum(len(r) for r in kept))
    assert [c for c, _, _ in run.out] == [len(b) for r in kept for b in r]
    got = split_rows(run.out)
    assert len(got) == len(kept)
    for g, r in zip(got, kept):
        flat = [v for b in r for v in b]
        assert g == [int(v) for v in softmax_int(np.array([flat]), cfg)[0]]


def test_softmax_online_model_agrees():
    """The golden one-pass form equals the two-pass form on the special rows (the unit is
    checked against the latter)."""
    for cfg in CONFIGS.values():
        for row in special_rows(cfg, np.random.default_rng(3)):
            p, *_ = softmax_row_online(np.array(row), cfg)
            np.testing.assert_array_equal(p, softmax_int(np.array([row]), cfg)[0])


def test_softmax_ports_and_attributes():
    cfg = CONFIGS["ulx3s"]
    dut = StreamingSoftmax(cfg)
    P = cfg.softmax_lanes
    assert set(dut.signature.members) == {"i", "o", "busy", "overflow", "clear"}
    assert len(dut.i.payload.as_value()) == P * cfg.softmax_in_bits + clog2(P + 1) + 1
    assert len(dut.o.payload.as_value()) == P * cfg.softmax_out_bits + clog2(P + 1) + 1
    assert dut.i.payload.data[0].shape().signed and len(dut.i.payload.data[0]) == 16
    assert not dut.o.payload.data[0].shape().signed and len(dut.o.payload.data[0]) == 8
    # pass 1 after the registered beat: 5 + 3 (max tree) + 3 (sum tree) + 3 (split sum)
    assert softmax_pass1_stages(cfg) == 14
    assert dut.latency == softmax_latency(cfg) == 14 + softmax_quotient_bits(cfg) + 1 + 9 == 50
    assert dut.buffer_beats == softmax_buffer_beats(cfg) == 256 // 8 + 14 + 26 + 1


@pytest.mark.parametrize("arg,exc,msg", [
    ({"softmax_lanes": 8}, TypeError, "config must be a StaConfig, not dict"),
    (None, TypeError, "config must be a StaConfig, not NoneType"),
    (ConvConfig(), TypeError, "config must be a StaConfig, not ConvConfig"),
])
def test_softmax_bad_args(arg, exc, msg):
    with pytest.raises(exc, match=msg):
        StreamingSoftmax(arg)


def test_softmax_cycles_bad_args_and_no_amaranth():
    cfg = CONFIGS["tiny"]
    with pytest.raises(ValueError, match=r"softmax row length must be in \[1, max_seq=64\], not 0"):
        softmax_cycles(cfg, [3, 0])
    with pytest.raises(ValueError, match="not 65"):
        softmax_cycles(cfg, [65])
    with pytest.raises(TypeError, match="cfg must be a StaConfig"):
        softmax_cycles("tiny", [1])
    with pytest.raises(TypeError, match="row_lengths must be an iterable"):
        softmax_cycles(cfg, 5)
    assert softmax_cycles(cfg, []) == 0
    code = ("import sys, nmaccel.spec.softmax_timing; "
            "sys.exit(any(m.startswith('amaranth') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
