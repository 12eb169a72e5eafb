"""Analytic cycle model of the STA core (FINN-style ``get_exp_cycles``).

It follows the controller's rules (:mod:`nmaccel.hw.sta.core`) at tile granularity, so it is
exact, and tests hold it to the RTL's counters:

* every command spends ``COMMAND_OVERHEAD`` cycles (FETCH, DECODE1, DECODE2, CHECK, SYNC,
  NEXT; :mod:`nmaccel.spec.sta_timing` holds every controller and pipeline latency);
* a GEMM issues ``m_tiles · n_tiles · k_steps`` beats, one per cycle;
* the last beat of a tile waits until the previous tile's last beat is ``R`` cycles old (the
  drain unit reads the shadow registers one array row per cycle): stall cycles;
* after the last command, the run ends when the final tile has left the pipeline:
  ``drain_tail`` cycles after its last beat (capture, drain, post-ops);
* with external memory, a FETCH waits in SYNC until the weight-fetch engine is idle, hands
  it the request and ends; the engine is then busy for its SDRAM stream
  (:func:`nmaccel.model.sdram_cycles.stream_read_cycles`, refreshes spread evenly: the one
  part that is not exact, held within 1% of the RTL) plus ``FETCH_EXTRA``, and the run ends
  only when the engine is idle.

Utilization (:func:`utilization`, the one definition the reports use): multiplications done ÷
(R·C·L·cycles). A dense GEMM does its dense-equivalent work ``tokens · features · K``; a sparse
one N/M of it (:func:`performed_macs`; padding of partial tiles and words is not useful work).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nmaccel.model.sdram_cycles import stream_read_cycles
from nmaccel.spec import sta_isa
from nmaccel.spec.config import REQUANT_LATENCY, StaConfig
from nmaccel.spec.sta_timing import (
    COMMAND_OVERHEAD,
    FETCH_EXTRA,
    RUN_START,
    SM_FIRST_IN,
    SM_READ_START,
    VEC_START,
    VEC_TAIL,
    drain_tail,
)

__all__ = ["CycleReport", "gemm_cycles", "performed_macs", "predicted_total", "program_cycles",
           "utilization",
           "vector_cycles"]


@dataclass
class CycleReport:
    total: int = 0
    mac_active: int = 0
    stalls: int = 0
    sparse: int = 0
    dense: int = 0
    per_command: list = field(default_factory=list)
    fetch_busy: int = 0          # cycles the weight-fetch engine works
    fetch_wait: int = 0          # cycles FETCH commands wait for it
    fetch_words: int = 0         # external-memory words fetched

    def as_dict(self) -> dict:
        return {"total": self.total, "mac_active": self.mac_active, "stalls": self.stalls,
                "sparse_cycles": self.sparse, "dense_cycles": self.dense,
                "fetch_busy": self.fetch_busy, "fetch_wait": self.fetch_wait,
                "fetch_words": self.fetch_words, "per_command": list(self.per_command)}


def vector_cycles(cfg: StaConfig, op: int, n_tiles: int, length: int) -> int:
    """Cycles a vector command spends in the VEC state (first cycle to ``vec_done``)."""
    from nmaccel.spec.vector_timing import LAYERNORM_LATENCY, layernorm_block_interval
    if op == sta_isa.Opcode.REQUANT:
        return VEC_START + n_tiles * length + REQUANT_LATENCY + VEC_TAIL - 1
    return VEC_START + n_tiles * layernorm_block_interval(cfg, length) + LAYERNORM_LATENCY \
        + VEC_TAIL - 1


def program_cycles(cfg: StaConfig, commands) -> CycleReport:
    """Predicted counters for running ``commands`` (encoded words or command objects).

    Event model of the controller: per command FETCH, DECODE1, DECODE2, CHECK, SYNC (waits:
    barrier until the drain is empty, softmax blocks / score banks), PARAM1-2 (post-ops and
    vector commands), the beats (GEMM) or the vector unit (VEC), NEXT. The softmax path is
    followed block by block (bank full → reader → :class:`SoftmaxStream` → SBUF writer).
    """
    from nmaccel.spec.softmax_timing import SoftmaxStream
    R, C = cfg.rows, cfg.cols
    rep = CycleReport()
    t = 0                       # cycle of the current command's FETCH (first busy cycle = 0)
    last_issue = None           # cycle of the most recent tile-completing beat
    tail = drain_tail(cfg)
    full, rd_end, written = [], [], []      # per softmax block
    stream = SoftmaxStream(cfg)
    rep.softmax_wait = rep.barrier_wait = rep.vector = 0

    def block_times(j: int, length: int) -> None:
        """Reader start/end and SBUF-written cycle of softmax block ``j`` (full[j] known)."""
        start = full[j] + SM_READ_START
        if j >= 1:
            start = max(start, rd_end[j - 1] + 2)
        if j >= 2:
            start = max(start, written[j - 2] + 2)
        nb = -(-length // C)
        rd_end.append(start + R * nb - 1)
        first_in = start + SM_FIRST_IN
        # the writer zeroes the rest of a row's last window in one more cycle (``o`` not
        # ready then): the softmax stream follows its stalls from row to row and block to
        # block (a block's rows can still be in pass 2 when the next block's arrive)
        pad = (nb * C) % cfg.dense_window != 0
        for r in range(R):
            _, last_out = stream.row(first_in + (r + 1) * nb - 1, length, pad_after=pad)
        written.append(last_out + pad)

    sm_len = []
    fetch_free = 0              # first cycle in which the weight-fetch engine is idle
    for index, c in enumerate(commands):
        if c is None:
            f = {"op": sta_isa.Opcode.NOP}
        elif hasattr(c, "fields"):
            f = c.fields(cfg)
        else:
            f = sta_isa.decode_command(cfg, c)
        op = f["op"]
        if op == sta_isa.Opcode.NOP:
            rep.per_command.append(COMMAND_OVERHEAD - 1)
            t += COMMAND_OVERHEAD - 1
            continue
        if op == sta_isa.Opcode.FETCH and cfg.sdram_timing is not None:
            sync = t + RUN_START - 1
            ready = sync
            if f.get("barrier", 0) and last_issue is not None:
                ready = max(ready, last_issue + tail)
            rep.barrier_wait += ready - sync
            issue = max(ready, fetch_free)             # the SYNC cycle that hands it over
            rep.fetch_wait += issue - ready
            words = sta_isa.fetch_words(cfg, f["ext_wlen"], f["ext_plen"])
            busy = _fetch_busy(cfg.sdram_timing, words, f["ext_addr"])
            rep.fetch_busy += busy
            rep.fetch_words += words
            fetch_free = issue + busy
            cycles = issue + 2 - t                     # SYNC, NEXT
            rep.per_command.append(cycles)
            t += cycles
            continue
        if op not in (sta_isa.Opcode.GEMM, sta_isa.Opcode.LAYERNORM, sta_isa.Opcode.REQUANT):
            raise ValueError(f"unknown opcode {op} (known: {sta_isa.OPCODES})")
        gemm = op == sta_isa.Opcode.GEMM
        sizes = ("m_tiles", "n_tiles", "k_steps") if gemm else ("n_tiles", "length")
        zero = [name for name in sizes if f[name] == 0]
        if zero:
            raise ValueError(f"command {index} ({sta_isa.Opcode(op).name}): {', '.join(zero)} "
                             f"is 0; the core stops such a command with error 2 "
                             f"({sta_isa.error_name(2)}), and the cycle model predicts only "
                             "programs that run")
        post = f.get("post", 0) if gemm else 0
        sync = t + RUN_START - 1
        ready = sync
        if (f.get("barrier", 0) or post or not gemm) and last_issue is not None:
            ready = max(ready, last_issue + tail)
        rep.barrier_wait += ready - sync
        issued = len(full)
        # the softmax blocks issued so far must have known times before we can wait on them
        while len(written) < issued:
            block_times(len(written), sm_len[len(written)])
        sm_ready = ready
        ws = f.get("wait_sm", 0)
        if ws == 1 and issued:
            sm_ready = max(sm_ready, written[issued - 1] + 1)
        elif ws == 2 and issued >= 2:
            sm_ready = max(sm_ready, written[issued - 2] + 1)
        softmax = gemm and f.get("dest", 0) == sta_isa.Dest.SOFTMAX
        if softmax and issued >= 2:
            sm_ready = max(sm_ready, rd_end[issued - 2] + 1)
        rep.softmax_wait += sm_ready - ready
        params = 2 if (post or not gemm) else 0
        run = sm_ready + 1 + params
        cur = run
        stalls = 0
        if gemm:
            k = f["k_steps"]
            tiles = f["m_tiles"] * f["n_tiles"]
            # the first tile's last beat may wait for the previous command's last tile; from
            # then on each tile takes max(k, R) cycles (R - k of them stalls when k < R), so
            # the walk is closed-form: any tile count costs the same to predict
            want = cur + k - 1                         # the tile's last beat, if no stall
            if last_issue is not None and want - last_issue < R:
                stalls += last_issue + R - want
                want = last_issue + R
            want += (tiles - 1) * max(k, R)
            stalls += (tiles - 1) * max(0, R - k)
            last_issue = want
            cur = want + 1
            rep.mac_active += tiles * k
            if softmax:
                full.append(last_issue + tail - 1)
                sm_len.append(f["length"])
            end = cur                                  # NEXT
        else:
            end = run + vector_cycles(cfg, op, f["n_tiles"], f["length"]) + 1
        cycles = end + 1 - t
        rep.stalls += stalls
        rep.per_command.append(cycles)
        if gemm:
            if f["mode"] == sta_isa.Mode.SPARSE:
                rep.sparse += cycles
            else:
                rep.dense += cycles
        else:
            rep.vector += cycles
        t += cycles
    end = t
    if last_issue is not None:
        end = max(end, last_issue + tail)
    while len(written) < len(full):
        block_times(len(written), sm_len[len(written)])
    if written:
        end = max(end, written[-1] + 1)
    end = max(end, fetch_free)
    rep.total = end + 1
    return rep


def _fetch_busy(timing, words: int, ext_addr: int) -> int:
    """Cycles the engine is busy with a FETCH of ``words`` words from ``ext_addr`` (none
    for a FETCH of nothing: it only waits)."""
    if words == 0:
        return 0
    cols = 1 << timing.col_bits
    return round(stream_read_cycles(timing, words, start_col=ext_addr % cols)) + FETCH_EXTRA


def gemm_cycles(cfg: StaConfig, command) -> int:
    """Cycles of a one-command run of ``command`` (start to done)."""
    return program_cycles(cfg, [command]).total


def performed_macs(cfg: StaConfig, useful_macs: int, sparse: bool) -> float:
    """Multiplications the array does for ``useful_macs`` dense-equivalent MACs: all of them
    in dense mode, ``N/M`` of them in sparse mode (pruned weights are skipped)."""
    return useful_macs * cfg.n / cfg.m if sparse else useful_macs


def utilization(cfg: StaConfig, performed: float, cycles: int) -> float:
    """The one definition of utilization: multiplications done (:func:`performed_macs`) ÷
    (multipliers × cycles)."""
    peak = cfg.multipliers * cycles
    return performed / peak if peak else 0.0


def predicted_total(program, commands=None) -> int:
    """Cycles from START to done of ``program`` (a
    :class:`~nmaccel.model.sta_program.StaProgram`; ``commands``: only these of its commands)
    on the core its config selects: this model's total for the array core,
    :func:`nmaccel.spec.lean_timing.program_cycles` (which reads the shifts in the program's
    PBUF image) for the memory-lean core (``lean = 1``)."""
    cfg = program.cfg
    commands = program.commands if commands is None else commands
    if cfg.lean:
        from nmaccel.spec.lean_timing import program_cycles as lean_cycles
        return lean_cycles(cfg, commands, program.images["PBUF"])
    return program_cycles(cfg, commands).total
