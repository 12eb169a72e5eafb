"""Exact cycles of the lean STA core (:class:`nmaccel.hw.sta_lean.core.LeanCore`), state by
state (pure Python; tests hold it to the RTL).

Per command: ``FETCH``, ``DECODE``, the body, ``NEXT``. A GEMM's body, per output (one feature
of one token): ``TILE``, ``PARAM``, ``k_steps`` MAC cycles, two to drain the products, and the
shared unit's REQUANT (:func:`~nmaccel.spec.lean_vector.op_cycles`, which depends on the
output feature's shift, read from the program's PBUF image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from nmaccel.spec import lean_vector as lv
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig

__all__ = ["gemm_cycles", "program_cycles", "COMMAND_OVERHEAD"]

#: FETCH, DECODE and NEXT.
COMMAND_OVERHEAD = 3
#: TILE, PARAM and the two drain cycles around an output's MAC cycles.
OUTPUT_OVERHEAD = 4


def _shift(cfg: StaConfig, pbuf: Mapping[int, int], entry: int) -> int:
    return sta_isa._unpack(sta_isa.param_fields(cfg), int(pbuf.get(entry, 0)))["shift"]


def gemm_cycles(cfg: StaConfig, fields: Mapping[str, int], pbuf: Mapping[int, int]) -> int:
    """Body cycles of one GEMM command (``fields`` as :func:`~nmaccel.spec.sta_isa.decode_command`
    gives them)."""
    shifts = [_shift(cfg, pbuf, fields["p_base"] + rt) for rt in range(fields["m_tiles"])]
    per_feature = [OUTPUT_OVERHEAD + fields["k_steps"] + lv.op_cycles(cfg, lv.VecOp.REQUANT, 1, s)
                   for s in shifts]
    return fields["n_tiles"] * sum(per_feature)


def program_cycles(cfg: StaConfig, commands: Sequence[int], pbuf: Mapping[int, int]) -> int:
    """Cycles from START to done of ``commands`` (command words) with PBUF image ``pbuf``."""
    total = 0
    for word in commands:
        f = sta_isa.decode_command(cfg, word)
        body = gemm_cycles(cfg, f, pbuf) if f["op"] == sta_isa.Opcode.GEMM else 0
        total += COMMAND_OVERHEAD + body
    return total
