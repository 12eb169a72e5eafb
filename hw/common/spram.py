"""``SinglePortRam``: a single-port RAM that is the iCE40UP5K's SB_SPRAM256KA blocks on an iCE40.

One address for reads and writes; ``wen`` writes ``wdata`` at ``addr``; otherwise the word at
``addr`` appears on ``rdata`` one cycle later (synchronous read). ``rdata`` after a write
cycle is undefined (the SPRAM's simulation model gives X): read, do not write, in the cycle
before you use it.

On an iCE40 platform (Amaranth's ``SiliconBluePlatform``: ``platform.family == "iCE40"``)
the RAM is ``ceil(width / 16)`` ``SB_SPRAM256KA`` instances side by side (16K × 16 bit each;
``depth`` ≤ 16384), each with every nibble write-enabled (``MASKWREN`` = 1111),
``CHIPSELECT`` 1, ``STANDBY``/``SLEEP`` 0 and ``POWEROFF`` 1 (powered). Yosys 0.70's
``synth_ice40`` lets ``memory_libmap`` choose SPRAM on its own only with ``-spram``
(otherwise ``-no-auto-huge``), and only for a memory whose read and write ports are one port
(``techlibs/ice40/spram.txt``: one shared ``srsw`` port, ``rdwr no_change``); instantiating
the blocks makes the mapping certain and independent of the synthesis options. Elsewhere
(simulation, Verilog for cocotb) it is an Amaranth ``Memory`` with a write port and a
synchronous read port on the same address, the read disabled while writing (the SPRAM's
``no_change``; the model keeps the last word instead of X).
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from nmaccel.spec.config import SPRAM_DEPTH, SPRAM_WIDTH, clog2

__all__ = ["SinglePortRam", "is_ice40"]


def is_ice40(platform) -> bool:
    """Whether ``platform`` builds for a Lattice iCE40 (Amaranth's ``SiliconBluePlatform``,
    whose ``family`` is ``"iCE40"``)."""
    return str(getattr(platform, "family", "")).lower() == "ice40"


class SinglePortRam(wiring.Component):
    """``depth`` × ``width``-bit single-port RAM (see the module docstring).

    Ports: ``addr`` In, ``wen`` In 1, ``wdata`` In ``width``, ``rdata`` Out ``width``.
    With ``granularity`` (a multiple of 16 that divides ``width``), ``wen`` has one bit per
    ``granularity`` bits (on an iCE40 each drives the WREN of its SPRAM blocks).
    """

    def __init__(self, width: int, depth: int, granularity: int | None = None) -> None:
        for name, v in (("width", width), ("depth", depth)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if depth > SPRAM_DEPTH:
            raise ValueError(f"depth must be <= {SPRAM_DEPTH} (one SB_SPRAM256KA), not {depth}")
        if granularity is not None and (not isinstance(granularity, int)
                                        or granularity < 1 or granularity % SPRAM_WIDTH
                                        or width % granularity):
            raise ValueError(f"granularity must be a multiple of {SPRAM_WIDTH} that divides "
                             f"width ({width}), not {granularity!r}")
        self.width, self.depth, self.granularity = width, depth, granularity
        lanes = 1 if granularity is None else width // granularity
        super().__init__({"addr": In(max(clog2(depth), 1)), "wen": In(lanes),
                          "wdata": In(width), "rdata": Out(width)})

    @property
    def blocks(self) -> int:
        """SB_SPRAM256KA blocks on an iCE40."""
        return -(-self.width // SPRAM_WIDTH)

    def elaborate(self, platform) -> Module:
        m = Module()
        if is_ice40(platform):
            aw = clog2(SPRAM_DEPTH)
            addr = Signal(aw)
            wdata = Signal(self.blocks * SPRAM_WIDTH)
            rdata = Signal(self.blocks * SPRAM_WIDTH)
            m.d.comb += [addr.eq(self.addr), wdata.eq(self.wdata),
                         self.rdata.eq(rdata[:self.width])]
            for b in range(self.blocks):
                sl = slice(b * SPRAM_WIDTH, (b + 1) * SPRAM_WIDTH)
                m.submodules[f"spram{b}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=addr, i_DATAIN=wdata[sl], i_MASKWREN=Const(0b1111, 4),
                    i_WREN=self.wen[0 if self.granularity is None
                                    else b * SPRAM_WIDTH // self.granularity],
                    i_CHIPSELECT=Const(1, 1), i_CLOCK=ClockSignal(),
                    i_STANDBY=Const(0, 1), i_SLEEP=Const(0, 1), i_POWEROFF=Const(1, 1),
                    o_DATAOUT=rdata[sl])
            return m
        m.submodules.mem = mem = Memory(shape=self.width, depth=self.depth, init=[])
        wp = mem.write_port(granularity=self.granularity)
        rp = mem.read_port(domain="sync")
        m.d.comb += [wp.addr.eq(self.addr), wp.data.eq(self.wdata), wp.en.eq(self.wen),
                     rp.addr.eq(self.addr), rp.en.eq(~self.wen.any()), self.rdata.eq(rp.data)]
        return m
