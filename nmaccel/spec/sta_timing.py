"""Controller and pipeline timing of the STA core, defined once.

The RTL (:mod:`nmaccel.hw.sta`) builds its pipelines to these depths and asserts them; the
cycle model (:mod:`nmaccel.model.sta_cycles`) predicts counters from them. Pure Python.

Controller timing per command: FETCH, DECODE1, DECODE2, CHECK, SYNC (>= 1 cycle), [PARAM1,
PARAM2 for post-ops and vector commands], one beat per cycle, NEXT.
"""

from __future__ import annotations

from nmaccel.spec.config import REQUANT_LATENCY, StaConfig, carry_product_latency, clog2
from nmaccel.spec.vector_timing import gelu_latency, residual_latency

__all__ = ["COMMAND_OVERHEAD", "RUN_START", "DRAIN_LATENCY", "SM_READ_START", "SM_FIRST_IN",
           "VEC_START", "VEC_TAIL", "HOST_READ_LATENCY", "READER_FIFO_DEPTH",
           "READER_ISSUE_LIMIT", "FETCH_EXTRA", "post_latency", "pe_latency", "capture_delay",
           "drain_tail"]

COMMAND_OVERHEAD = 6     # FETCH, DECODE1, DECODE2, CHECK, SYNC, NEXT
RUN_START = 5            # cycles from a command's FETCH to its first beat
DRAIN_LATENCY = 2 + REQUANT_LATENCY        # DrainUnit.latency: row, bias, RequantUnit


def post_latency(cfg: StaConfig) -> int:
    """Cycles from the drain unit's output to the buffer write: one register (the residual
    operand's VBUF read), then the longer of the GELU and residual-add pipelines."""
    return 1 + max(gelu_latency(cfg), residual_latency(cfg))


def pe_latency(cfg: StaConfig) -> int:
    """NMProcessingElement.latency: operand mux, then the product (DSP products: operand
    copies and the multiply, 2 stages; ``array_lut``: a CarryProduct over the weight,
    ``carry_product_latency(weight_bits)`` stages), ``clog2(L)`` adder-tree levels,
    accumulate."""
    product = carry_product_latency(cfg.weight_bits) if cfg.array_lut else 2
    return 1 + product + clog2(cfg.lanes) + 1


def capture_delay(cfg: StaConfig) -> int:
    """Cycles from a beat's issue to the array's ``captured`` pulse: operand read (1), array
    input register (1), PE pipeline, shadow capture (1)."""
    return 1 + 1 + pe_latency(cfg) + 1


def drain_tail(cfg: StaConfig) -> int:
    """Cycles from the last tile-completing beat until its results are in the buffer: capture,
    one drain of ``rows`` shadow rows, the drain unit and the post-ops. A program ending in a
    GEMM ends this long after its last beat."""
    return capture_delay(cfg) + cfg.rows + DRAIN_LATENCY + post_latency(cfg)


#: calibration of the softmax path against the RTL (cycles; see :func:`program_cycles`)
SM_READ_START = 2        # bank FULL → first score read (start_ok, rd_active)
SM_FIRST_IN = 2          # score read → beat offered to the softmax unit (read, FIFO)
VEC_START = 2            # VEC state → first VBUF read issued (start, issue)
VEC_TAIL = 1             # last unit output → vec_done seen by the controller
HOST_READ_LATENCY = 3    # host read request accepted → its word on rd_data (DATA, SELECT, RESP)
#: weight-fetch engine: cycles of a request beyond its SDRAM stream (the request's register
#: and the last entry's write)
FETCH_EXTRA = 2
#: FIFO between a buffer reader (score banks, VBUF) and the unit it feeds
READER_FIFO_DEPTH = 4
#: a reader issues a read while the FIFO's level plus the read in flight is below this
READER_ISSUE_LIMIT = READER_FIFO_DEPTH - 1
