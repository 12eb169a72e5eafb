"""Cycle model of sequential SDRAM reads through
:class:`~nmaccel.hw.common.sdram.SdramController`: what a weight fetch costs.

The controller issues one READ per cycle while the row is open. A stream that starts at a row
start pays the first ACTIVE and the read pipeline once (:func:`stream_overhead`); each row end
opens the next row in the next bank (ACTIVE, then tRCD: ``t_rcd`` cycles); every refresh
period (:func:`refresh_period`) the controller stops for :func:`refresh_cost` cycles
(decide, PRECHARGE all, tRP, AUTO REFRESH, tRFC, ACTIVE again, tRCD). Refreshes come at a
fixed period from power-up, so where they fall in a given stream depends on the time it
starts; the model spreads them evenly (:func:`stream_read_cycles`), which tests hold within
1% of the RTL with the checking SDRAM model for streams of a few rows and more.
"""

from __future__ import annotations

import math

from nmaccel.spec.sdram import SdramTiming, refresh_slack

__all__ = ["refresh_period", "refresh_cost", "stream_overhead", "stream_read_cycles",
           "words_per_cycle", "bytes_per_second", "fetch_cycles"]


def refresh_period(t: SdramTiming) -> int:
    """Cycles between two AUTO REFRESH commands of a busy controller: it decides after
    ``t_refi - slack`` cycles, then spends a cycle leaving IDLE and ``t_rp`` precharging."""
    return t.t_refi - refresh_slack(t) + 2 + t.t_rp


def refresh_cost(t: SdramTiming) -> int:
    """Cycles a refresh takes from a stream: leaving IDLE, PRECHARGE all and tRP, AUTO
    REFRESH and tRFC, the row's ACTIVE and tRCD."""
    return 1 + t.t_rp + t.t_rfc + t.t_rcd


def stream_overhead(t: SdramTiming) -> int:
    """Cycles of a stream beyond one per word when no refresh falls into it: the first ACTIVE
    and tRCD, and the read pipeline (CAS latency, capture, answer buffer)."""
    return t.t_rcd + t.cas_latency + 4


def stream_read_cycles(t: SdramTiming, words: int, start_col: int = 0) -> float:
    """Expected cycles to read ``words`` consecutive words from column ``start_col`` of a
    closed row, from the first request to the last answer, with a consumer that is always
    ready (refreshes spread evenly)."""
    if isinstance(words, bool) or not isinstance(words, int) or words < 0:
        raise ValueError(f"words must be a non-negative integer, not {words!r}")
    if words == 0:
        return 0.0
    cols = 1 << t.col_bits
    crossings = (start_col + words - 1) // cols
    busy = stream_overhead(t) + words + crossings * t.t_rcd
    period = refresh_period(t)
    return busy * period / (period - refresh_cost(t))


def words_per_cycle(t: SdramTiming) -> float:
    """Sustained words per cycle of a long sequential read."""
    cols = 1 << t.col_bits
    per_row = (cols + t.t_rcd) / cols
    period = refresh_period(t)
    return 1.0 / (per_row * period / (period - refresh_cost(t)))


def bytes_per_second(t: SdramTiming) -> float:
    """Sustained read bandwidth at ``t.clk_mhz``."""
    return words_per_cycle(t) * t.data_bits / 8 * t.clk_mhz * 1e6


def fetch_cycles(t: SdramTiming, bits: int) -> int:
    """Cycles to fetch ``bits`` of consecutive data (whole words), rounded up."""
    return math.ceil(stream_read_cycles(t, -(-bits // t.data_bits)))
