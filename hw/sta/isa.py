"""Amaranth layouts of the STA command word, requant parameters and host port payloads.

Built from the field tables of :mod:`nmaccel.spec.sta_isa` (the one definition that the
compiler and host drivers also read), so hardware and software cannot disagree.
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from nmaccel.spec.config import StaConfig
from nmaccel.spec import sta_isa

__all__ = ["command_layout", "padded_bits", "param_layout", "read_layout", "write_layout"]


def padded_bits(bits: int) -> int:
    """``bits`` rounded up to whole 32-bit host slices."""
    return -(-bits // 32) * 32


def command_layout(cfg: StaConfig) -> data.StructLayout:
    return data.StructLayout({name: unsigned(width) for name, width in sta_isa.command_fields(cfg)})


def param_layout(cfg: StaConfig) -> data.StructLayout:
    fields = {}
    for name, width in sta_isa.param_fields(cfg):
        fields[name] = signed(width) if name == "bias" else unsigned(width)
    return data.StructLayout(fields)


def write_layout(cfg: StaConfig) -> data.StructLayout:
    """Host write request: 32-bit ``data`` to host address ``addr``."""
    return data.StructLayout({"addr": unsigned(sta_isa.addr_bits(cfg)), "data": unsigned(32)})


def read_layout(cfg: StaConfig) -> data.StructLayout:
    """Host read request for host address ``addr`` (answered on the read-data stream)."""
    return data.StructLayout({"addr": unsigned(sta_isa.addr_bits(cfg))})
