"""Layouts of the records that the STA core's parts pass to each other.

A GEMM beat leaves the controller with the operand addresses and the record of its tile
(:func:`beat_layout`); the record rides beside the MAC array to the drain unit, whose drained
rows carry the tile's destination tag to the post stage (:func:`row_layout`). A softmax GEMM
claims a score bank with :func:`claim_layout`.
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from amaranth.utils import ceil_log2

from nmaccel.hw.sta.isa import Dest, Osel, Post
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig, clog2

__all__ = ["BLOCK_COUNT_BITS", "PENDING_SHAPE", "bank_layout", "beat_layout", "claim_layout",
           "entry_bits", "fetch_max_entries", "fetch_targets", "record_layout", "row_layout",
           "start_layout", "tag_layout"]

#: softmax blocks counted by the score-bank bookkeeping (claimed, started, written)
BLOCK_COUNT_BITS = 16
#: blocks claimed minus blocks written: the difference of two counts
PENDING_SHAPE = signed(BLOCK_COUNT_BITS + 1)


def entry_bits(cfg: StaConfig, space: str) -> int:
    """Bits of an entry index of host space ``space`` (at least 1)."""
    return max(clog2(sta_isa.space_depth(cfg, space)), 1)


def fetch_targets(cfg: StaConfig) -> dict[str, tuple[int, int]]:
    """The buffers a FETCH fills, in stream order, as
    :class:`~nmaccel.hw.sta.fetch.WeightFetch` targets ``{name: (entry_bits, addr_bits)}``:
    the entries' data bits (:func:`~nmaccel.spec.sta_isa.space_width`, unpadded) and index
    bits."""
    return {space: (sta_isa.space_width(cfg, space), entry_bits(cfg, space))
            for space in sta_isa.FETCH_SPACES}


def fetch_max_entries(cfg: StaConfig) -> int:
    """Most entries one FETCH copies into one target (the deeper of WBUF and PBUF)."""
    return max(cfg.wbuf_depth, cfg.pbuf_depth)


def tag_layout(cfg: StaConfig) -> data.StructLayout:
    """Where a tile's drained rows go: the first row's buffer address and ABUF slot, the
    destination, post-op and output layout, whether the tile is the command's last, and the
    score bank of a softmax GEMM."""
    addr_bits = max(entry_bits(cfg, "OBUF"), entry_bits(cfg, "ABUF"), entry_bits(cfg, "VBUF"),
                    clog2(cfg.scbuf_depth), 1)
    return data.StructLayout({
        "addr": unsigned(addr_bits),
        "slot": unsigned(clog2(max(cfg.acts_per_cycle, cfg.dense_window)) + 1),
        "dest": Dest, "post": Post, "olay": 1, "lastcmd": 1, "bank": 1,
    })


def record_layout(cfg: StaConfig) -> data.StructLayout:
    """A tile's record for the drain unit: OBUF and PBUF addresses of row 0, output format,
    destination tag."""
    return data.StructLayout({
        "obuf_addr": unsigned(entry_bits(cfg, "OBUF")),
        "pbuf_addr": unsigned(entry_bits(cfg, "PBUF")),
        "osel": Osel,
        "tag": tag_layout(cfg),
    })


def beat_layout(cfg: StaConfig) -> data.StructLayout:
    """One GEMM beat: first / last beat of its tile, dense slice, the W word's address (WBUF or
    ABUF) and the A window's address (ABUF or SBUF), and the record of its tile."""
    w_bits = max(ceil_log2(cfg.wbuf_depth), ceil_log2(cfg.abuf_depth), 1)
    a_bits = max(ceil_log2(cfg.abuf_depth), ceil_log2(cfg.sbuf_depth), 1)
    return data.StructLayout({
        "first": 1, "last": 1, "slice": range(max(sta_isa.dense_ratio(cfg), 2)),
        "w_addr": unsigned(w_bits), "a_addr": unsigned(a_bits),
        "record": record_layout(cfg),
    })


def row_layout(cfg: StaConfig) -> data.StructLayout:
    """One drained array row: its ``cols`` lanes (requantized, sign-extended to ``acc_bits``),
    its row index in the tile and the tile's tag."""
    return data.StructLayout({
        "lanes": data.ArrayLayout(signed(cfg.acc_bits), cfg.cols),
        "row": range(cfg.rows),
        "tag": tag_layout(cfg),
    })


def start_layout() -> data.StructLayout:
    """START: the number of commands to run."""
    return data.StructLayout({"count": unsigned(32)})


def bank_layout() -> data.StructLayout:
    """A score bank event: which of the two banks."""
    return data.StructLayout({"bank": 1})


def claim_layout(cfg: StaConfig) -> data.StructLayout:
    """A softmax GEMM's claim of a score bank: the SBUF block its probabilities go to and the
    row length."""
    return data.StructLayout({"sbuf_base": unsigned(entry_bits(cfg, "ABUF") + 2),
                              "length": unsigned(sta_isa.DIM_BITS)})
