"""Tiling counters of the STA controller: a GEMM's beats, operand addresses and tile records.

A GEMM walks token tiles (``col_tile``, outer) and feature tiles (``row_tile``, inner), with
``k_steps`` beats per tile (``k_step``; in dense mode a beat reads slice ``slice_idx`` of ABUF
window ``chunk``). Per beat it presents the W word's address (WBUF row ``w_base + row_tile ·
k_steps + k_step``; W from ABUF: ``w_base + row_tile · w_stride + chunk``), the A window's
address (``a_base + col_tile · a_stride`` plus ``k_step`` or ``chunk``) and the record of the
tile: OBUF and PBUF addresses of its first row and its destination tag (where its rows go in
OBUF, VBUF, the ABUF windows of the ``olay`` layout, transposed ABUF, or a score bank).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.sta.isa import Dest, Mode, WSrc, command_layout
from nmaccel.hw.sta.layouts import beat_layout
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig

__all__ = ["TileWalker"]

#: width of the running addresses (base + tile · stride)
ADDR_BITS = 2 * sta_isa.DIM_BITS + 8


class TileWalker(wiring.Component):
    """The beat, tile and address counters of one GEMM.

    Parameters
    ----------
    config : StaConfig

    Attributes
    ----------
    cmd : In(command_layout)
        The GEMM (stable from ``load`` to its last beat).
    claimed_bank : In(1)
        Score bank of a softmax GEMM.
    load : In(1)
        Start at the first beat of the first tile.
    advance : In(1)
        The current beat is issued: step to the next.
    beat : Out(beat_layout)
        The current beat (``last``: the last beat of its tile).
    last_tile : Out(1)
        The current tile is the GEMM's last.

    Latency 1 (the counters are registers); one beat per cycle.
    """

    def __init__(self, config: StaConfig) -> None:
        StaConfig.require(config)
        self.config = config
        super().__init__({
            "cmd": In(command_layout(config)),
            "claimed_bank": In(1),
            "load": In(1),
            "advance": In(1),
            "beat": Out(beat_layout(config)),
            "last_tile": Out(1),
        })

    def _next_transposed(self, m: Module, t_window, t_slot) -> None:
        """Transposed outputs: the next token tile's window and slot."""
        cfg = self.config
        for olay in (0, 1):
            window = sta_isa.window(cfg, olay)
            if window % cfg.cols:
                continue
            with m.If(self.cmd.olay == olay):
                with m.If(t_slot + cfg.cols >= window):
                    m.d.sync += [t_slot.eq(0), t_window.eq(t_window + 1)]
                with m.Else():
                    m.d.sync += t_slot.eq(t_slot + cfg.cols)

    def _next_scatter(self, m: Module, window0, slot0) -> None:
        """ABUF outputs: the window and slot of the next feature tile's first feature."""
        R = self.config.rows
        for olay in (0, 1):
            window = sta_isa.window(self.config, olay)
            with m.If(self.cmd.olay == olay):
                if window % R == 0:
                    with m.If(slot0 + R >= window):
                        m.d.sync += [slot0.eq(0), window0.eq(window0 + 1)]
                    with m.Else():
                        m.d.sync += slot0.eq(slot0 + R)
                elif R % window == 0:
                    m.d.sync += window0.eq(window0 + R // window)

    def _tag(self, m: Module, col_tile, o_tile, o_col, o_row, feature0, window0, slot0,
             t_window, t_slot) -> None:
        cfg, cmd = self.config, self.cmd
        tag = self.beat.record.tag
        key_tiles = -(-cfg.max_seq // cfg.cols)
        with m.Switch(cmd.dest):
            with m.Case(Dest.OBUF):
                m.d.comb += tag.addr.eq(o_tile)
            with m.Case(Dest.VBUF):
                m.d.comb += tag.addr.eq(o_col + feature0)
            with m.Case(Dest.ABUF):
                m.d.comb += [tag.addr.eq(o_col + window0), tag.slot.eq(slot0)]
            with m.Case(Dest.ABUF_T):
                m.d.comb += [tag.addr.eq(o_row + t_window), tag.slot.eq(t_slot)]
            with m.Default():
                m.d.comb += tag.addr.eq(Mux(self.claimed_bank, cfg.rows * key_tiles, 0)
                                        + col_tile)
        m.d.comb += [tag.dest.eq(cmd.dest), tag.post.eq(cmd.post), tag.olay.eq(cmd.olay),
                     tag.bank.eq(self.claimed_bank)]

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg, cmd = self.config, self.cmd
        R, Ws, Wd = cfg.rows, cfg.acts_per_cycle, cfg.dense_window
        ratio = sta_isa.dense_ratio(cfg)
        k_step, row_tile, col_tile = (Signal(sta_isa.DIM_BITS) for _ in range(3))
        slice_idx = Signal(range(max(ratio, 2)))
        chunk = Signal(sta_isa.DIM_BITS)
        w_row, a_tile, o_tile, p_tile = (Signal(ADDR_BITS) for _ in range(4))
        o_col = Signal(ADDR_BITS)                 # o_base + col_tile · o_stride
        o_row = Signal(ADDR_BITS)                 # o_base + row_tile · o_stride (transposed)
        feature0 = Signal(ADDR_BITS)              # row_tile · R
        window0 = Signal(ADDR_BITS)               # ABUF window / slot of feature feature0
        slot0 = Signal(range(max(Ws, Wd) + 1))
        t_window = Signal(ADDR_BITS)              # transposed window / slot of token tile
        t_slot = Signal(range(max(Ws, Wd) + 1))
        # k_step == k_steps - 1, row_tile == m_tiles - 1, col_tile == n_tiles - 1, kept as
        # registers: each is set with its counter (the compares of the next value), so the
        # issue logic downstream starts from a flip-flop (the compare-and-carry chains were the
        # deepest logic of the STA: 12 LUT levels, `nmaccel bench logic-depth`)
        k_last, row_last, col_last = Signal(), Signal(), Signal()
        last_tile = row_last & col_last
        one_k_step, one_row_tile = cmd.k_steps == 1, cmd.m_tiles == 1   # a counter's wrap value

        beat = self.beat
        m.d.comb += [
            beat.first.eq(k_step == 0), beat.last.eq(k_last), beat.slice.eq(slice_idx),
            beat.w_addr.eq(Mux(cmd.wsrc == WSrc.ABUF, w_row + chunk, w_row + k_step)),
            beat.a_addr.eq(Mux(cmd.mode == Mode.DENSE, a_tile + chunk, a_tile + k_step)),
            beat.record.obuf_addr.eq(o_tile), beat.record.pbuf_addr.eq(p_tile),
            beat.record.osel.eq(cmd.osel), beat.record.tag.lastcmd.eq(last_tile),
            self.last_tile.eq(last_tile),
        ]
        self._tag(m, col_tile, o_tile, o_col, o_row, feature0, window0, slot0, t_window, t_slot)

        with m.If(self.load):
            m.d.sync += [k_step.eq(0), row_tile.eq(0), col_tile.eq(0), slice_idx.eq(0),
                         chunk.eq(0), w_row.eq(cmd.w_base), a_tile.eq(cmd.a_base),
                         o_tile.eq(cmd.o_base), p_tile.eq(cmd.p_base), o_col.eq(cmd.o_base),
                         o_row.eq(cmd.o_base), feature0.eq(0), window0.eq(0), slot0.eq(0),
                         t_window.eq(0), t_slot.eq(0), k_last.eq(one_k_step),
                         row_last.eq(one_row_tile), col_last.eq(cmd.n_tiles == 1)]
        with m.If(self.advance & k_last):
            m.d.sync += [k_step.eq(0), slice_idx.eq(0), chunk.eq(0), o_tile.eq(o_tile + R),
                         k_last.eq(one_k_step)]
            with m.If(row_last):
                m.d.sync += [row_tile.eq(0), w_row.eq(cmd.w_base), p_tile.eq(cmd.p_base),
                             row_last.eq(one_row_tile),
                             col_tile.eq(col_tile + 1), col_last.eq(col_tile + 2 == cmd.n_tiles),
                             a_tile.eq(a_tile + cmd.a_stride),
                             o_col.eq(o_col + cmd.o_stride), o_row.eq(cmd.o_base),
                             feature0.eq(0), window0.eq(0), slot0.eq(0)]
                self._next_transposed(m, t_window, t_slot)
            with m.Else():
                m.d.sync += [row_tile.eq(row_tile + 1), row_last.eq(row_tile + 2 == cmd.m_tiles),
                             w_row.eq(w_row + Mux(cmd.wsrc == WSrc.ABUF, cmd.w_stride,
                                                  cmd.k_steps)),
                             p_tile.eq(p_tile + R), o_row.eq(o_row + cmd.o_stride),
                             feature0.eq(feature0 + R)]
                self._next_scatter(m, window0, slot0)
        with m.Elif(self.advance):
            m.d.sync += [k_step.eq(k_step + 1), k_last.eq(k_step + 2 == cmd.k_steps)]
            with m.If(slice_idx == ratio - 1):
                m.d.sync += [slice_idx.eq(0), chunk.eq(chunk + 1)]
            with m.Else():
                m.d.sync += slice_idx.eq(slice_idx + 1)
        return m
