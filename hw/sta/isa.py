"""Amaranth shapes of the STA instruction set: enums, command word, parameters, STATUS, host
port payloads.

Built from the tables of :mod:`nmaccel.spec.sta_isa` (the one definition that the compiler and
host drivers also read), so hardware and software cannot disagree. The enums here are
:class:`amaranth.lib.enum.Enum` classes with an explicit shape (the field width of
:data:`~nmaccel.spec.sta_isa.ENUM_FIELDS`) whose members have the spec ``IntEnum``'s names and
values: a command field read through :func:`command_layout` is an enum view, so
``cmd.op == Opcode.GEMM`` compares views of the same enum, and a comparison with another
enum's member is a type error. Range checks on raw encodings use ``field.as_value()``.
"""

from __future__ import annotations

import types

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum

from nmaccel.hw.common.bridge import host_read_layout, host_write_layout
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig

__all__ = ["ASrc", "Dest", "Mode", "Opcode", "Osel", "Post", "WSrc", "command_layout",
           "counters_layout", "padded_bits", "param_layout", "read_layout", "status_layout",
           "write_layout"]


def _shaped(field: str) -> type[enum.Enum]:
    """An ``amaranth.lib.enum.Enum`` with the spec enum's name and members, ``shape`` the
    command field's width. (The functional ``Enum(name, members)`` API takes no shape, so the
    class is built the way a ``class X(Enum, shape=w)`` statement builds it.)"""
    spec_enum, width = sta_isa.ENUM_FIELDS[field]

    def members(namespace):
        for member in spec_enum:
            namespace[member.name] = int(member)

    cls = types.new_class(spec_enum.__name__, (enum.Enum,), {"shape": unsigned(width)},
                          members)
    cls.__module__ = __name__
    cls.__doc__ = spec_enum.__doc__
    return cls


Opcode = _shaped("op")
Mode = _shaped("mode")
Osel = _shaped("osel")
Dest = _shaped("dest")
Post = _shaped("post")
WSrc = _shaped("wsrc")
ASrc = _shaped("asrc")

_ENUMS = {"op": Opcode, "mode": Mode, "osel": Osel, "dest": Dest, "post": Post, "wsrc": WSrc,
          "asrc": ASrc}


def padded_bits(bits: int) -> int:
    """``bits`` rounded up to whole 32-bit host slices."""
    return -(-bits // 32) * 32


def command_layout(cfg: StaConfig) -> data.StructLayout:
    """The command word (:func:`~nmaccel.spec.sta_isa.command_fields`); enum-valued fields
    have the enum shapes above."""
    return data.StructLayout({name: _ENUMS.get(name, unsigned(width))
                              for name, width in sta_isa.command_fields(cfg)})


def param_layout(cfg: StaConfig) -> data.StructLayout:
    """One PBUF word (:func:`~nmaccel.spec.sta_isa.param_fields`); ``bias`` is signed."""
    fields = {}
    for name, width in sta_isa.param_fields(cfg):
        fields[name] = signed(width) if name == "bias" else unsigned(width)
    return data.StructLayout(fields)


def status_layout() -> data.StructLayout:
    """CSR STATUS (:data:`~nmaccel.spec.sta_isa.STATUS_FIELDS`, LSB first)."""
    return data.StructLayout({name: unsigned(width) for name, width in sta_isa.STATUS_FIELDS})


def counters_layout() -> data.StructLayout:
    """The run counters (:data:`~nmaccel.spec.sta_isa.COUNTERS`, 32 bits each), fields named
    like their CSRs in lower case."""
    return data.StructLayout({name.lower(): unsigned(32) for name in sta_isa.COUNTERS})


def write_layout(cfg: StaConfig) -> data.StructLayout:
    """Host write request: 32-bit ``data`` to host address ``addr``."""
    return host_write_layout(sta_isa.addr_bits(cfg))


def read_layout(cfg: StaConfig) -> data.StructLayout:
    """Host read request for host address ``addr`` (answered on the read-data stream)."""
    return host_read_layout(sta_isa.addr_bits(cfg))
