"""Exact cycles of the lean STA core (:class:`nmaccel.hw.sta_lean.core.LeanCore`), state by
state (pure Python; tests hold it to the RTL).

Per command: ``FETCH0..2`` (a command is read in three 64-bit slices: the UP5K's SPRAMs hold
the commands), ``LATCH`` (the last slice into the command register), ``DECODE``, the body,
``NEXT``.

GEMM
    With a post-op, ``PW0..2`` read its parameters. Per output (one feature of one token):
    ``TILE``, ``PARAM``, ``k_steps`` MAC cycles, ``DRAIN1``, ``DRAIN2``, the shared unit's
    REQUANT (:func:`~nmaccel.spec.lean_vector.op_cycles`; the shift is the feature's, 0 for
    ``osel = ACC``), the post-op's GELU or ADD in the unit, ``WRITE``. A softmax GEMM then
    streams its ``length`` scores into the unit's SOFTMAX row, one every two cycles (a score
    buffer read, then the beat: ``length`` cycles more than the unit's own count), and zeroes
    the rest of the last SBUF window in one more cycle when the row ends inside it.
LAYERNORM / REQUANT
    ``PW0..2`` read the output parameters; per token row, LAYERNORM streams the row into the
    unit one feature every two cycles (VBUF and PBUF reads, then the beat) and takes the
    results as they come; REQUANT runs one element per unit command, its beat one cycle after
    the unit is ready for it.

Shifts (the rounding walk's length) come from the program's PBUF image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from nmaccel.spec import lean_vector as lv
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig

__all__ = ["COMMAND_OVERHEAD", "command_cycles", "program_cycles"]

#: FETCH0..2, LATCH, DECODE and NEXT.
COMMAND_OVERHEAD = 6
#: TILE, PARAM, DRAIN1, DRAIN2 and WRITE around an output's MAC cycles and unit work.
OUTPUT_OVERHEAD = 5
#: PW0..2: a GEMM's post-op parameters or a vector command's output parameters.
PARAM_READS = 3


def _param(cfg: StaConfig, pbuf: Mapping[int, int], entry: int) -> dict[str, int]:
    return sta_isa.decode_params(cfg, int(pbuf.get(entry, 0)))


def command_cycles(cfg: StaConfig, fields: Mapping[str, int], pbuf: Mapping[int, int]) -> int:
    """Cycles of one command (``fields`` as :func:`~nmaccel.spec.sta_isa.decode_command`
    gives them), FETCH0 to NEXT."""
    op = fields["op"]
    V = lv.VecOp
    if op == sta_isa.Opcode.GEMM:
        m_tiles, post = fields["m_tiles"], fields["post"]
        raw = fields["osel"] == sta_isa.Osel.ACC
        post_cycles = 0
        if post != sta_isa.Post.NONE:
            p0 = _param(cfg, pbuf, fields["p_base"] + m_tiles)
            vop = V.GELU if post == sta_isa.Post.GELU else V.ADD
            post_cycles = lv.op_cycles(cfg, vop, 1, p0["shift"])
        per_feature = []
        for rt in range(m_tiles):
            shift = 0 if raw else _param(cfg, pbuf, fields["p_base"] + rt)["shift"]
            per_feature.append(OUTPUT_OVERHEAD + fields["k_steps"]
                               + lv.op_cycles(cfg, V.REQUANT, 1, shift) + post_cycles)
        body = fields["n_tiles"] * sum(per_feature)
        if post != sta_isa.Post.NONE:
            body += PARAM_READS
        if fields["dest"] == sta_isa.Dest.SOFTMAX:
            length = fields["length"]
            body += lv.op_cycles(cfg, V.SOFTMAX, length) + length
            body += 1 if length % cfg.dense_window else 0
        return COMMAND_OVERHEAD + body
    if op == sta_isa.Opcode.LAYERNORM:
        length = fields["length"]
        out = _param(cfg, pbuf, fields["p_base"] + length)
        out8 = _param(cfg, pbuf, fields["p_base"] + length + 1)
        row = lv.op_cycles(cfg, V.LAYERNORM, length, out["shift"], out8["shift"]) + length
        return COMMAND_OVERHEAD + PARAM_READS + fields["n_tiles"] * row
    if op == sta_isa.Opcode.REQUANT:
        shift = _param(cfg, pbuf, fields["p_base"])["shift"]
        each = lv.op_cycles(cfg, V.REQUANT, 1, shift) + 1
        return COMMAND_OVERHEAD + PARAM_READS + fields["n_tiles"] * fields["length"] * each
    return COMMAND_OVERHEAD                                             # NOP


def program_cycles(cfg: StaConfig, commands: Sequence[int], pbuf: Mapping[int, int]) -> int:
    """Cycles from START to done of ``commands`` (command words) with PBUF image ``pbuf``."""
    return sum(command_cycles(cfg, sta_isa.decode_command(cfg, w), pbuf) for w in commands)
