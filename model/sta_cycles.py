"""Analytic cycle model of the STA core (FINN-style ``get_exp_cycles``).

It follows the controller's rules (:mod:`nmaccel.hw.sta.core`) at tile granularity, so it is
exact, and tests hold it to the RTL's counters:

* every command spends ``COMMAND_OVERHEAD = 5`` cycles (FETCH, DECODE1, DECODE2, CHECK, NEXT);
* a GEMM issues ``m_tiles · n_tiles · k_steps`` beats, one per cycle;
* the last beat of a tile waits until the previous tile's last beat is ``R`` cycles old (the
  drain unit reads the shadow registers one array row per cycle): stall cycles;
* after the last command, the run ends when the final tile has left the pipeline:
  ``capture_delay + R + DRAIN_LATENCY`` cycles after its last beat.

Utilization: useful MACs ÷ (R·C·L·cycles) in dense mode, ÷ (R·C·L·(M/N)·cycles) in sparse mode
(a sparse beat does the work of ``M/N`` dense beats); useful MACs are the GEMM's dense-equivalent
work ``tokens · features · K`` (padding of partial tiles and words is not useful work).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nmaccel.hw.config import StaConfig, clog2
from nmaccel.model import sta_isa
from nmaccel.model.vector_cycles import gelu_latency, residual_latency

__all__ = [
    "COMMAND_OVERHEAD",
    "DRAIN_LATENCY",
    "CycleReport",
    "capture_delay",
    "gemm_cycles",
    "pe_latency",
    "program_cycles",
    "utilization",
]

COMMAND_OVERHEAD = 6     # FETCH, DECODE1, DECODE2, CHECK, SYNC, NEXT
RUN_START = 5            # cycles from a command's FETCH to its first beat
DRAIN_LATENCY = 4        # DrainUnit.latency


def post_latency(cfg: StaConfig) -> int:
    """Cycles from the drain unit's output to the buffer write: one register (the residual
    operand's VBUF read), then the longer of the GELU and residual-add pipelines."""
    return 1 + max(gelu_latency(cfg), residual_latency(cfg))


def pe_latency(cfg: StaConfig) -> int:
    """NMProcessingElement.latency: multiply, ``clog2(L)`` adder-tree levels, accumulate."""
    return 2 + clog2(cfg.lanes)


def capture_delay(cfg: StaConfig) -> int:
    """Cycles from a beat's issue to the array's ``captured`` pulse: operand read (1), array
    input register (1), PE pipeline, shadow capture (1)."""
    return 1 + 1 + pe_latency(cfg) + 1


@dataclass
class CycleReport:
    total: int = 0
    mac_active: int = 0
    stalls: int = 0
    sparse: int = 0
    dense: int = 0
    per_command: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"total": self.total, "mac_active": self.mac_active, "stalls": self.stalls,
                "sparse_cycles": self.sparse, "dense_cycles": self.dense,
                "per_command": list(self.per_command)}


def program_cycles(cfg: StaConfig, commands) -> CycleReport:
    """Predicted counters for running ``commands`` (encoded words or ``GemmCommand``s)."""
    R = cfg.rows
    rep = CycleReport()
    t = 0                       # cycle of the current command's FETCH (first busy cycle = 0)
    last_issue = None           # cycle of the most recent tile-completing beat
    for c in commands:
        f = c.fields(cfg) if hasattr(c, "fields") else sta_isa.decode_command(cfg, c)
        run = t + RUN_START
        cur = run
        stalls = 0
        if f["op"] == sta_isa.OP_GEMM:
            k = f["k_steps"]
            tiles = f["m_tiles"] * f["n_tiles"]
            for _ in range(tiles):
                want = cur + k - 1                     # the tile's last beat, if no stall
                if last_issue is not None and want - last_issue < R:
                    stalls += last_issue + R - want
                    want = last_issue + R
                last_issue = want
                cur = want + 1
            beats = tiles * k
            rep.mac_active += beats
        elif f["op"] != sta_isa.OP_NOP:
            raise ValueError(f"unknown opcode {f['op']} (known: {sta_isa.OPCODES})")
        cycles = (cur - run) + COMMAND_OVERHEAD - (f["op"] == sta_isa.OP_NOP)   # NOP skips SYNC
        rep.stalls += stalls
        rep.per_command.append(cycles)
        if f["op"] == sta_isa.OP_GEMM:
            if f["mode"] == sta_isa.MODE_SPARSE:
                rep.sparse += cycles
            else:
                rep.dense += cycles
        t += cycles
    wait_start = t
    end = wait_start
    if last_issue is not None:
        end = max(end, last_issue + capture_delay(cfg) + R + DRAIN_LATENCY + post_latency(cfg))
    rep.total = end + 1
    return rep


def gemm_cycles(cfg: StaConfig, command) -> int:
    """Cycles of a one-command run of ``command`` (start to done)."""
    return program_cycles(cfg, [command]).total


def utilization(cfg: StaConfig, useful_macs: int, cycles: int, sparse: bool) -> float:
    """Useful MACs ÷ peak work in ``cycles`` (sparse beats count ``M/N`` dense MACs)."""
    peak = cfg.rows * cfg.cols * cfg.lanes * cycles
    if sparse:
        peak = peak * cfg.m / cfg.n
    return useful_macs / peak if peak else 0.0
