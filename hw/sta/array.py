"""The unified sparse/dense MAC array of STA: ``R × C`` N:M PEs, output-stationary.

Weights are broadcast along a row (one weight word per array row), activations along a
column (one activation window per array column). The same multipliers run

* **sparse** N:M weight × dense activation beats (``mode = 0``): each PE multiplier picks its
  activation through an ``m``:1 mux driven by the stored index, so a PE consumes
  ``acts_per_cycle = L·m/n`` activations per beat;
* **dense** × dense beats (``mode = 1``, Q·Kᵀ and P·V): the column window is cut into
  ``m // n`` slices of ``L`` activations, ``slice`` picks one; its ``j``-th activation is
  registered at the window position that multiplier ``j``'s mux reaches with index
  ``j % n`` (:func:`~nmaccel.hw.sta.pe.dense_position`), which the row presents in place of
  the stored indices, so the PEs' muxes serve both modes.

A beat with ``last = 1`` completes every PE's dot product; its sums are copied into a
**shadow** register file (``R × C`` accumulators) from which the drain unit reads one array
row per cycle (``row_sel`` → ``row``) while the PEs already accumulate the next tile.

Word formats (from :mod:`nmaccel.spec.sta_isa`, :mod:`nmaccel.model.nm`)
    ``w_word``: row ``r`` at bits ``[r·WW, (r+1)·WW)``, ``WW = L·(wb+ib)``; sparse entry ``j`` at
    ``j·(wb+ib)`` (value low, index high); dense value ``j`` at ``j·wb``.
    ``a_word``: column ``c`` at bits ``[c·A, (c+1)·A)``, ``A = acts_per_cycle·ab``.

Ports
    ``valid``, ``clear`` (first beat of a tile), ``last`` (final beat of a tile), ``mode``,
    ``a_unsigned`` (activations are unsigned, e.g. softmax probabilities),
    ``slice`` (dense slice), ``w_word``, ``a_word``: one beat per cycle, no back-pressure.
    ``captured`` Out: one-cycle pulse; the shadow holds a finished tile from this cycle on.
    ``row_sel`` In / ``row`` Out (``ArrayLayout(signed(acc_bits), C)``): shadow row read
    (combinational).
    ``meta_err`` Out: sticky until ``clear_err``; a valid sparse beat had indices that are not
    strictly ascending within an N:M group (checked on a copy of the registered indices,
    each row's verdict registered: set four cycles after the beat was presented).

Latency: ``latency = 1 + pe.latency`` cycles from a beat at the inputs to its sums in the PE
accumulators; ``captured`` rises ``latency + 1`` cycles after the ``last`` beat was presented.
Throughput: one beat per cycle. Two ``last`` beats must be at least ``R`` cycles apart when
the drain unit reads the shadow one row per cycle (the controller enforces it).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.arith import delay_chain
from nmaccel.hw.common.fanout import own_copy
from nmaccel.hw.sta.pe import NMProcessingElement, dense_position
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig, clog2
from nmaccel.spec.sta_timing import pe_latency

__all__ = ["UnifiedMacArray"]


class UnifiedMacArray(wiring.Component):
    """``R × C`` output-stationary array of :class:`NMProcessingElement` with a shadow register
    file for overlapped drain (see the module docstring for formats and timing)."""

    def __init__(self, config: StaConfig) -> None:
        StaConfig.require(config)
        self.config = config
        cfg = config
        self.ratio = sta_isa.dense_ratio(cfg)
        self.w_bits = sta_isa.space_width(cfg, "WBUF")
        self.a_bits = sta_isa.space_width(cfg, "ABUF")
        self.pe_latency = pe_latency(cfg)
        self.latency = 1 + self.pe_latency
        super().__init__({
            "valid": In(1),
            "clear": In(1),
            "last": In(1),
            "mode": In(1),
            "a_unsigned": In(1),
            "slice": In(max(clog2(self.ratio), 1)),
            "w_word": In(unsigned(self.w_bits)),
            "a_word": In(unsigned(self.a_bits)),
            "captured": Out(1),
            "row_sel": In(max(clog2(cfg.rows), 1)),
            "row": Out(data.ArrayLayout(signed(cfg.acc_bits), cfg.cols)),
            "meta_err": Out(1),
            "clear_err": In(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.config
        R, C, L, n = cfg.rows, cfg.cols, cfg.lanes, cfg.n
        wb, ib, ab = cfg.weight_bits, max(cfg.index_bits, 1), cfg.act_bits
        E = cfg.weight_bits + cfg.index_bits
        WW = L * E
        A = cfg.acts_per_cycle * ab

        # Stage 0: unpack and register the operands (sparse/dense weight layout, dense slice).
        w_val = [Signal(data.ArrayLayout(signed(wb), L), name=f"w_val{r}") for r in range(R)]
        w_idx = [Signal(data.ArrayLayout(unsigned(ib), L), name=f"w_idx{r}") for r in range(R)]
        acts = [Signal(data.ArrayLayout(signed(ab), cfg.acts_per_cycle), name=f"act{c}")
                for c in range(C)]
        bad = Signal(R, name="meta_bad")
        for r in range(R):
            word = self.w_word[r * WW:(r + 1) * WW]
            for j in range(L):
                with m.If(self.mode):
                    m.d.sync += w_val[r][j].eq(word[j * wb:(j + 1) * wb])
                with m.Else():
                    m.d.sync += w_val[r][j].eq(word[j * E:j * E + wb])
                if cfg.index_bits:
                    # a dense word: index j % n, its activation placed there (dense_position)
                    with m.If(self.mode):
                        m.d.sync += w_idx[r][j].eq(j % n)
                    with m.Else():
                        m.d.sync += w_idx[r][j].eq(word[j * E + wb:(j + 1) * E])
            # the N:M check reads a copy of the registered indices (no buffer RAM output feeds
            # the comparators), the checker's own (own_copy): the row's index register sits
            # by its PEs, and the compares read from it were the array's critical path
            # (6.3 ns of routing from the far corner)
            idx = own_copy(m, w_idx[r].as_value(), f"meta_idx{r}", platform=platform)
            checks = [idx[j * ib:(j + 1) * ib] >= idx[(j + 1) * ib:(j + 2) * ib]
                      for j in range(L - 1) if cfg.index_bits and j % n != n - 1]
            if checks:
                viol = checks[0]
                for c_ in checks[1:]:
                    viol = viol | c_
                m.d.comb += bad[r].eq(viol)
        for c in range(C):
            win = self.a_word[c * A:(c + 1) * A]
            with m.If(self.mode):
                with m.Switch(self.slice):
                    for s in range(self.ratio):
                        with m.Case(s):
                            lo = s * L * ab
                            m.d.sync += [acts[c][dense_position(cfg, j)].eq(
                                win[lo + j * ab:lo + (j + 1) * ab]) for j in range(L)]
            with m.Else():
                m.d.sync += acts[c].eq(win)
        v0, c0, l0, mode0, uns0 = Signal(), Signal(), Signal(), Signal(), Signal()
        m.d.sync += [v0.eq(self.valid), c0.eq(self.clear), l0.eq(self.last), mode0.eq(self.mode),
                     uns0.eq(self.a_unsigned)]
        # each row's verdict registered, then combined: the rows' index registers sit beside
        # their PEs, across the chip from one another (one compare-and-OR of all rows into
        # meta_err was the ulx3s_lut array's critical path, 8.6 ns routing)
        row_bad = Signal(R, name="meta_row_bad")
        check_on = Signal(name="meta_check_on")              # beside the index copies
        m.d.sync += [check_on.eq(v0 & ~mode0), row_bad.eq(Mux(check_on, bad, 0))]
        with m.If(self.clear_err):
            m.d.sync += self.meta_err.eq(0)
        with m.Elif(row_bad.any()):
            m.d.sync += self.meta_err.eq(1)

        # PEs.
        accs = []
        for r in range(R):
            row = []
            for c in range(C):
                pe = NMProcessingElement(cfg)
                m.submodules[f"pe_{r}_{c}"] = pe
                m.d.comb += [
                    pe.w_value.eq(w_val[r]), pe.w_index.eq(w_idx[r]), pe.act.eq(acts[c]),
                    pe.a_unsigned.eq(uns0), pe.valid.eq(v0), pe.clear.eq(c0),
                ]
                row.append(pe.acc)
            accs.append(row)

        # ``last`` travels beside the PE pipeline; when it arrives the accumulators are final.
        # Its last stage is a copy per array row (:func:`own_copy`), next to the row's shadow
        # registers: one register enabling all R·C·acc_bits of them spans the array.
        last = delay_chain(m, l0 & v0, self.pe_latency - 1, "last_d", reset_less=False)[-1]
        row_last = [own_copy(m, last, f"last_row{r}", platform=platform, reset=True)
                    for r in range(R)]
        shadow = [Signal(data.ArrayLayout(signed(cfg.acc_bits), C), name=f"shadow{r}")
                  for r in range(R)]
        for r in range(R):
            with m.If(row_last[r]):
                m.d.sync += [shadow[r][c].eq(accs[r][c]) for c in range(C)]
        m.d.sync += self.captured.eq(row_last[0])
        with m.Switch(self.row_sel):
            for r in range(R):
                with m.Case(r):
                    m.d.comb += self.row.eq(shadow[r])
        return m
