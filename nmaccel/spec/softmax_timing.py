"""Cycle model of the streaming softmax unit (:class:`nmaccel.hw.sta.softmax.StreamingSoftmax`).

Pure Python (no Amaranth): the RTL reads its pipeline depths and buffer size from here, so
this module is the one source of truth for its timing.

Pipeline (cycle ``a``: the last input beat of a row is accepted)
    pass 1      ``SOFTMAX_PASS1_STAGES`` = 7 register stages: per-lane ceiling, their max,
                ``δ``/table read, shifted terms (and the running max), their sum, running
                (M, S) combine, the finished row's (M, S_r) into the divider;
    divider     ``softmax_quotient_bits(cfg)`` = ``Q`` stages, one quotient bit each, the last
                one writing ``R`` into the reciprocal FIFO (``SOFTMAX_FIFO_STAGES`` = 1 more
                cycle until it can be read);
    pass 2      the row's first beat is re-read from the beat buffer in cycle
                ``a + softmax_issue_delay(cfg)`` (= ``a + Q + 8``), then one beat per cycle;
                ``SOFTMAX_PASS2_STAGES`` = 5 stages (buffer read, table read, ``e = T >> q``,
                ``e·R``, round/clamp) later it is valid on ``o``.

``softmax_latency(cfg) = Q + 13`` cycles from accepting a row's last input beat to
transferring its first output beat, when nothing stalls and the output side is free.

Throughput: one lane group (beat) per cycle on both sides. Pass 2 of a row cannot start
before the row has fully arrived, so after a long row a short one waits for the long one to
drain: the buffer holds ``ceil(max_seq / P) + softmax_issue_delay(cfg)`` beats, enough that
with the output always ready the input is never stalled, whatever the row lengths.
"""

from __future__ import annotations

from collections.abc import Iterable

from nmaccel.spec.config import StaConfig

__all__ = [
    "SOFTMAX_FIFO_STAGES",
    "SOFTMAX_PASS1_STAGES",
    "SOFTMAX_PASS2_STAGES",
    "softmax_buffer_beats",
    "softmax_cycles",
    "softmax_issue_delay",
    "softmax_latency",
    "softmax_max_beats",
    "softmax_quotient_bits",
    "softmax_row_beats",
    "softmax_schedule",
]

#: Register stages of pass 1 from the accepting clock edge of a beat to the row's
#: (M, S_r) entering the divider (per-lane ceiling, lane max, δ/table read, shifted terms
#: and running max, term sum, running combine, divider entry).
SOFTMAX_PASS1_STAGES = 7
#: Cycles from writing a reciprocal into the FIFO to reading it (synchronous FIFO).
SOFTMAX_FIFO_STAGES = 1
#: Register stages of pass 2 from issuing a buffer read to the output register
#: (buffer read, table read, shift e = T >> q, product e·R, round and clamp).
SOFTMAX_PASS2_STAGES = 5


def _check_cfg(cfg) -> None:
    StaConfig.require(cfg, "cfg")


def softmax_quotient_bits(cfg: StaConfig) -> int:
    """Bits of the per-row reciprocal ``R`` (= divider stages): ``S_r >= 2**(E-1)`` bounds
    ``R = floor(omax·2**K / S_r) < omax·2**(K-E+1)``, so ``out_bits + K - E + 1`` bits."""
    _check_cfg(cfg)
    return cfg.softmax_out_bits + cfg.softmax_recip_frac - cfg.softmax_exp_bits + 1


def softmax_row_beats(cfg: StaConfig, length: int) -> int:
    """Beats (lane groups of ``softmax_lanes``) of a row of ``length`` elements."""
    _check_cfg(cfg)
    return -(-length // cfg.softmax_lanes)


def softmax_max_beats(cfg: StaConfig) -> int:
    """Beats of a ``max_seq`` row; a row never stores more (the rest is dropped, overflow)."""
    return softmax_row_beats(cfg, cfg.max_seq)


def softmax_issue_delay(cfg: StaConfig) -> int:
    """Cycles from accepting a row's last beat to re-reading its first beat (pass 2)."""
    return SOFTMAX_PASS1_STAGES + softmax_quotient_bits(cfg) + SOFTMAX_FIFO_STAGES


def softmax_buffer_beats(cfg: StaConfig) -> int:
    """Depth of the beat buffer (and of the reciprocal FIFO): one ``max_seq`` row plus the
    issue delay. A beat stays at most ``max_beats - 1 + issue_delay`` cycles when the output
    is always ready, so with this depth the input never stalls then."""
    return softmax_max_beats(cfg) + softmax_issue_delay(cfg)


def softmax_latency(cfg: StaConfig) -> int:
    """Cycles from accepting a row's last input beat to transferring its first output beat
    (no stalls, output side idle): ``out_bits + K - E + 1 + 13``."""
    return softmax_issue_delay(cfg) + SOFTMAX_PASS2_STAGES


def _lengths(cfg: StaConfig, row_lengths: Iterable[int]) -> list[int]:
    _check_cfg(cfg)
    try:
        lengths = [int(n) for n in row_lengths]
    except TypeError:
        raise TypeError("row_lengths must be an iterable of integers") from None
    for n in lengths:
        if not 1 <= n <= cfg.max_seq:
            raise ValueError(f"softmax row length must be in [1, max_seq={cfg.max_seq}], not {n}")
    return lengths


def softmax_schedule(cfg: StaConfig, row_lengths: Iterable[int]) -> list[tuple[int, int]]:
    """Per row, ``(cycle of its first output beat, cycle of its last output beat)`` counted
    from the cycle the first input beat is accepted (cycle 0), inputs back to back and the
    output always ready.

    Beat ``j`` of the input is accepted in cycle ``j``. The first beat of a row is re-read in
    cycle ``max(previous re-read + 1, last input beat of the row + issue_delay)``, the others
    right after it; each appears on ``o`` ``SOFTMAX_PASS2_STAGES`` cycles after its re-read.
    """
    lengths = _lengths(cfg, row_lengths)
    delay = softmax_issue_delay(cfg)
    t = 0                     # cycle the next input beat is accepted
    last_issue = -1
    out = []
    for n in lengths:
        beats = softmax_row_beats(cfg, n)
        end = t + beats - 1
        first = max(last_issue + 1, end + delay)
        last_issue = first + beats - 1
        out.append((first + SOFTMAX_PASS2_STAGES, last_issue + SOFTMAX_PASS2_STAGES))
        t = end + 1
    return out


def softmax_cycles(cfg: StaConfig, row_lengths: Iterable[int]) -> int:
    """Cycles from the one accepting the first input beat through the one transferring the
    last output beat, both included (inputs always valid, output always ready); 0 for no
    rows. Equals ``Σ beats + (beats of the longest row) - 1 + softmax_latency(cfg)`` (one
    row of ``n`` beats: ``2·n - 1 + latency``): a beat's time in the unit never shrinks.
    """
    sched = softmax_schedule(cfg, row_lengths)
    return sched[-1][1] + 1 if sched else 0
