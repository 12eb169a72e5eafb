"""Cycle model of the streaming softmax unit (:class:`nmaccel.hw.sta.softmax.StreamingSoftmax`).

Pure Python (no Amaranth): the RTL reads its pipeline depths and buffer size from here, so
this module is the one source of truth for its timing.

Pipeline (cycle ``a``: the last input beat of a row is accepted; ``L = clog2(P)`` levels of a
lane tree, ``P = softmax_lanes``; ``k = SOFTMAX_SPLIT``)
    pass 1      the beat is registered (cycle ``a + 1``), then
                :func:`softmax_pass1_stages` ``= 5 + 2·L + k`` register stages:
                per-lane ceilings, the lane max tree (one level a stage), the row's
                running max, ``δ``/table read, the table word registered,
                the shifted terms, the term sum tree (one level a stage), then the
                ``k``-way split running sum (``k`` stages: ``k - 1`` for the rescale shift,
                one add; beats of consecutive cycles go to the ``k`` partial sums in turn)
                and the end-of-row merge of the partial sums (``k - 1`` adds, the last one
                into the divider's first stage);
    divider     ``softmax_quotient_bits(cfg)`` = ``Q`` stages, one quotient bit each (the
                first is pass 1's last), the last one writing ``R`` into the reciprocal
                FIFO (``SOFTMAX_FIFO_STAGES`` = 1 more cycle until it can be read);
    pass 2      the row's first beat is re-read from the beat buffer in cycle
                ``a + softmax_issue_delay(cfg)`` (= ``a + pass1 + Q + 1``), then one beat per
                cycle; ``SOFTMAX_PASS2_STAGES`` = 9 stages (buffer read, buffer word
                registered, table read, table word registered, ``e = T >> q``, three levels
                of the ``e·R`` digit tree, round/clamp) later it is valid on ``o``.

``softmax_latency(cfg) = pass1 + Q + 10`` cycles from accepting a row's last input beat to
transferring its first output beat, when nothing stalls and the output side is free
(``ulx3s_board``, P = 8: 14 + 26 + 10 = 50; ``ulx3s_lite``, P = 4: 12 + 26 + 10 = 48; 39
for both before the split sum).

Throughput: one lane group (beat) per cycle on both sides. Pass 2 of a row cannot start
before the row has fully arrived, so after a long row a short one waits for the long one to
drain: the buffer holds ``ceil(max_seq / P) + softmax_issue_delay(cfg)`` beats, enough that
with the output always ready the input is never stalled, whatever the row lengths.
"""

from __future__ import annotations

from collections.abc import Iterable

from nmaccel.spec.config import StaConfig, clog2

__all__ = [
    "SoftmaxStream",
    "SOFTMAX_FIFO_STAGES",
    "SOFTMAX_PASS1_FIXED_STAGES",
    "SOFTMAX_PASS2_STAGES",
    "SOFTMAX_SPLIT",
    "softmax_buffer_beats",
    "softmax_cycles",
    "softmax_issue_delay",
    "softmax_lane_levels",
    "softmax_latency",
    "softmax_max_beats",
    "softmax_pass1_stages",
    "softmax_quotient_bits",
    "softmax_row_beats",
    "softmax_schedule",
]

#: ``k``: the running (max-relative) sum is split into this many partial sums, fed beats
#: round-robin by cycle, so each partial's shift-and-add loop has ``k`` cycles
#: (:func:`nmaccel.model.softmax.softmax_row_split`); also the stages of that loop.
SOFTMAX_SPLIT = 3
#: Pass-1 register stages after the registered beat that do not depend on the lane count:
#: the per-lane ceilings, the running max, the table read, the table word register, the
#: shifted terms (the split sum and the merge add ``SOFTMAX_SPLIT`` more, the lane max and
#: sum trees :func:`softmax_lane_levels` each).
SOFTMAX_PASS1_FIXED_STAGES = 5
#: Cycles from writing a reciprocal into the FIFO to reading it (synchronous FIFO).
SOFTMAX_FIFO_STAGES = 1
#: Register stages of pass 2 from issuing a buffer read to the output register
#: (buffer read, buffer word register, table read, table word register, shift e = T >> q,
#: three adder levels of the product e·R over radix-4 digits of e, round and clamp: a block
#: RAM's read data is registered before any logic, its clock-to-out is 5.6 ns on the 85F).
SOFTMAX_PASS2_STAGES = 9


def _check_cfg(cfg) -> None:
    StaConfig.require(cfg, "cfg")


def softmax_lane_levels(cfg: StaConfig) -> int:
    """Levels of a tree over the ``softmax_lanes`` lanes (``clog2(P)``): the lane max tree and
    the term sum tree take one stage a level."""
    _check_cfg(cfg)
    return clog2(cfg.softmax_lanes)


def softmax_pass1_stages(cfg: StaConfig) -> int:
    """Register stages of pass 1 after the registered input beat up to the row's
    ``(M, S_r)`` in the divider's first stage (for the row's last beat)."""
    return SOFTMAX_PASS1_FIXED_STAGES + 2 * softmax_lane_levels(cfg) + SOFTMAX_SPLIT


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
    return softmax_pass1_stages(cfg) + softmax_quotient_bits(cfg) + SOFTMAX_FIFO_STAGES


def softmax_buffer_beats(cfg: StaConfig) -> int:
    """Depth of the beat buffer (and of the reciprocal FIFO): one ``max_seq`` row plus the
    issue delay. A beat stays at most ``max_beats - 1 + issue_delay`` cycles when the output
    is always ready, so with this depth the input never stalls then."""
    return softmax_max_beats(cfg) + softmax_issue_delay(cfg)


def softmax_latency(cfg: StaConfig) -> int:
    """Cycles from accepting a row's last input beat to transferring its first output beat
    (no stalls, output side idle): ``softmax_pass1_stages + Q + 1 + SOFTMAX_PASS2_STAGES``
    with ``Q = out_bits + K - E + 1``."""
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


class SoftmaxStream:
    """Pass-2 timing of the unit over a stream of rows whose consumer may drop ``o.ready`` for
    one cycle after a row's last beat (the STA's SBUF writer does, to zero the rest of a
    window: ``pad_after``). :func:`softmax_schedule` is the special case of an always-ready
    consumer and an empty unit; this follows the unit from row to row (rows of later blocks
    keep the state that earlier ones left).

    The skid stage's rule (``StreamingSoftmax``): in a cycle ``P`` where ``o`` holds a beat
    that is not taken, the beat behind it (if one is valid in the last pass-2 stage) moves
    into the skid register and pass 2 freezes in cycle ``P + 1`` (no issue, no register
    advances); ``o`` takes its beat in ``P + 1`` and the skid's in ``P + 2``. With no beat
    behind it, only the held beat is one cycle late.

    Rows are added in order with :meth:`row`: the cycle its last input beat is accepted, its
    length, and whether the consumer pads after it. Returns ``(first, last)``: the cycles its
    first and last output beats are transferred. The input is assumed never stalled: each
    pad can put pass 2 one cycle further behind, and long padded rows back to back could
    fill the beat buffer (:func:`softmax_buffer_beats` has no slack for that); that case is
    not modelled.
    """

    def __init__(self, cfg: StaConfig) -> None:
        _check_cfg(cfg)
        self.cfg = cfg
        self.delay = softmax_issue_delay(cfg)
        self.last_issue = -(1 << 62)
        self.last_out = -(1 << 62)
        self.freezes: list[int] = []       # cycles pass 2 stood still, after the last issue
        self._pad = None                   # cycle the consumer is not ready (after a row)
        self._held = None                  # a beat was held at this pad cycle

    def _beat(self, earliest: int) -> int:
        issue = max(earliest, self.last_issue + 1)
        while issue in self.freezes:       # no issue while frozen
            issue += 1
        # later beats issue after this one: a freeze at or before it can no longer touch them
        self.freezes = [f for f in self.freezes if f > issue]
        out = issue + SOFTMAX_PASS2_STAGES
        for f in self.freezes:             # frozen while in the pipeline
            if issue < f <= out:
                out += 1
        if self._held is not None:         # the beat behind a held one
            if out == self._held + 1:      # it was in the last stage: freeze
                self.freezes.append(self._held + 1)
                out += 1
            self._held = None
        if self._pad is not None:
            if out == self._pad:           # the consumer is not ready: held one cycle
                self._held = self._pad
                out += 1
            self._pad = None
        self.last_issue, self.last_out = issue, out
        return out

    def row(self, last_input: int, length: int, pad_after: bool = False) -> tuple[int, int]:
        (length,) = _lengths(self.cfg, [length])
        beats = softmax_row_beats(self.cfg, length)
        first = self._beat(last_input + self.delay)
        for _ in range(beats - 1):
            self._beat(0)
        if pad_after:
            self._pad = self.last_out + 1
        return first, self.last_out
