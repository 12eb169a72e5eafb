# amaranth: UnusedElaboratable=no
"""Amaranth shapes of the STA ISA (nmaccel.hw.sta.isa) against the spec's tables."""

from __future__ import annotations

import pytest
from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import enum
from amaranth.sim import Simulator

from nmaccel.hw.sta import isa
from nmaccel.spec import sta_isa
from nmaccel.spec.config import sta_preset


@pytest.mark.parametrize("field", sorted(sta_isa.ENUM_FIELDS))
def test_enums_take_names_values_and_width_from_the_spec(field):
    spec_enum, width = sta_isa.ENUM_FIELDS[field]
    hw_enum = getattr(isa, spec_enum.__name__)
    assert issubclass(hw_enum, enum.Enum)
    assert hw_enum.as_shape() == unsigned(width)
    assert [(m.name, m.value) for m in hw_enum] == [(m.name, int(m)) for m in spec_enum]


def test_command_fields_are_enum_views():
    cfg = sta_preset("tiny")
    layout = isa.command_layout(cfg)
    assert tuple((name, field.width) for name, field in layout) == sta_isa.command_fields(cfg)
    cmd = Signal(layout)
    assert isinstance(cmd.op, enum.EnumView) and cmd.op.shape() is isa.Opcode
    _ = cmd.op == isa.Opcode.GEMM                                 # same enum: fine
    with pytest.raises(TypeError):
        _ = cmd.op == isa.Dest.OBUF                               # another enum's member
    with pytest.raises(TypeError):
        _ = cmd.op == sta_isa.Opcode.GEMM                         # the spec's IntEnum


def test_command_word_decodes_through_the_layout():
    cfg = sta_preset("tiny")
    word = sta_isa.encode_command(cfg, op=sta_isa.Opcode.GEMM, mode=sta_isa.Mode.DENSE,
                                  osel=sta_isa.Osel.VEC, dest=sta_isa.Dest.ABUF_T,
                                  post=sta_isa.Post.GELU, wsrc=1, asrc=1, m_tiles=3,
                                  n_tiles=2, k_steps=5)
    cmd = Signal(isa.command_layout(cfg))
    got = {}

    async def tb(ctx):
        ctx.set(cmd.as_value(), word)
        for name in ("op", "mode", "osel", "dest", "post", "wsrc", "asrc", "m_tiles", "k_steps"):
            got[name] = ctx.get(getattr(cmd, name))

    sim = Simulator(Module())
    sim.add_testbench(tb)
    sim.run()
    assert got == {"op": isa.Opcode.GEMM, "mode": isa.Mode.DENSE, "osel": isa.Osel.VEC,
                   "dest": isa.Dest.ABUF_T, "post": isa.Post.GELU, "wsrc": isa.WSrc.ABUF,
                   "asrc": isa.ASrc.SBUF, "m_tiles": 3, "k_steps": 5}


def test_status_and_counter_layouts():
    status = isa.status_layout()
    assert [(name, field.width) for name, field in status] == list(sta_isa.STATUS_FIELDS)
    assert status.size == 32
    assert status.const({"busy": 1, "code": 7, "command": 300}).as_value().value == \
        sta_isa.encode_status(busy=1, code=7, command=300)
    counters = isa.counters_layout()
    assert [name for name, _ in counters] == [name.lower() for name in sta_isa.COUNTERS]
