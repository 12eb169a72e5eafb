"""SDR SDRAM chips and their timing at a clock: one source of truth for the controller
(:mod:`nmaccel.hw.common.sdram`), the behavioural memory model that checks it
(:mod:`nmaccel.sim.sdram_model`) and the bandwidth figures of the weight-fetch cycle model.

A chip's timing comes from its datasheet in nanoseconds (or clocks where the datasheet gives
clocks); :meth:`SdramChip.at` turns it into whole clock cycles at a clock frequency, rounding
each minimum up, the refresh interval down, and choosing the CAS latency the speed grade
allows at that clock.

Commands are the JEDEC SDR truth table on ``(cs_n, ras_n, cas_n, we_n)``
(:class:`Command`); ``a[10]`` selects all banks for PRECHARGE and auto-precharge for
READ/WRITE. The mode register (:func:`mode_register`) sets burst length 1, sequential, the
CAS latency, and programmed-burst writes: the controller issues one column command per word,
so consecutive words of a row stream at one per clock.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields, replace

__all__ = ["Command", "SdramChip", "SdramTiming", "CHIPS", "IS42S16160G_7",
           "MT48LC16M16A2_6A", "REFRESH_MARGIN", "ULX3S_SDRAM", "mode_register", "pack_entries",
           "refresh_slack", "sdram_chip", "words_per_entry"]


class Command(enum.IntEnum):
    """``{cs_n, ras_n, cas_n, we_n}`` (cs_n the MSB) of each SDR command."""
    INHIBIT = 0b1000          # cs_n high: the chip ignores the other pins (its low bits: 0)
    NOP = 0b0111
    ACTIVE = 0b0011
    READ = 0b0101
    WRITE = 0b0100
    BURST_TERMINATE = 0b0110
    PRECHARGE = 0b0010
    AUTO_REFRESH = 0b0001
    LOAD_MODE = 0b0000


def _positive(value, name: str, integer: bool = False):
    ok = (isinstance(value, int) and not isinstance(value, bool)) if integer else \
        (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
    if not ok or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{name} must be {kind}, not {value!r}")
    return value


@dataclass(frozen=True)
class SdramChip:
    """One SDR SDRAM part: geometry and datasheet timing.

    Parameters
    ----------
    name
        Part number and speed grade.
    row_bits, col_bits, bank_bits, data_bits
        Address geometry (rows per bank, columns per row, banks) and the data bus width.
    t_rcd_ns, t_rp_ns, t_ras_ns, t_rc_ns, t_rfc_ns, t_rrd_ns, t_wr_ns
        Minimum ACTIVE→READ/WRITE, PRECHARGE→ACTIVE, ACTIVE→PRECHARGE, ACTIVE→ACTIVE (same
        bank), AUTO REFRESH→any command, ACTIVE→ACTIVE (other bank), last write data→
        PRECHARGE, in ns.
    t_ras_max_ns
        Longest a row may stay open.
    t_mrd_clk
        LOAD MODE→any command, in clocks.
    refresh_ms, refresh_count
        Every row refreshed within ``refresh_ms``: ``refresh_count`` AUTO REFRESH commands
        per period, so one every ``refresh_ms / refresh_count``.
    init_wait_us, init_refreshes
        Power-up: NOP/INHIBIT for ``init_wait_us``, then PRECHARGE all, ``init_refreshes``
        AUTO REFRESH, LOAD MODE.
    cl2_max_mhz, cl3_max_mhz
        Fastest clock for CAS latency 2 and 3.
    """
    name: str
    row_bits: int
    col_bits: int
    bank_bits: int
    data_bits: int
    t_rcd_ns: float
    t_rp_ns: float
    t_ras_ns: float
    t_ras_max_ns: float
    t_rc_ns: float
    t_rfc_ns: float
    t_rrd_ns: float
    t_wr_ns: float
    t_mrd_clk: int
    refresh_ms: float
    refresh_count: int
    init_wait_us: float
    init_refreshes: int
    cl2_max_mhz: float
    cl3_max_mhz: float

    def __post_init__(self):
        for f in fields(self):
            if f.name == "name":
                continue
            integer = f.name.endswith(("_bits", "_clk", "_count", "_refreshes"))
            _positive(getattr(self, f.name), f"SdramChip {f.name}", integer)

    @property
    def size_bytes(self) -> int:
        return (1 << (self.row_bits + self.col_bits + self.bank_bits)) * self.data_bits // 8

    def at(self, clk_mhz: float) -> SdramTiming:
        """This chip's timing in whole clocks at ``clk_mhz``; raises ``ValueError`` if the
        part cannot run that fast."""
        clk_mhz = _positive(clk_mhz, "clk_mhz")
        if clk_mhz > self.cl3_max_mhz:
            raise ValueError(f"{self.name} runs at most {self.cl3_max_mhz:g} MHz, not "
                             f"{clk_mhz:g} MHz")
        period = 1e3 / clk_mhz

        def clocks(ns: float) -> int:
            return max(1, math.ceil(ns / period - 1e-9))
        return SdramTiming(
            chip=self.name, clk_mhz=float(clk_mhz),
            cas_latency=2 if clk_mhz <= self.cl2_max_mhz else 3,
            t_rcd=clocks(self.t_rcd_ns), t_rp=clocks(self.t_rp_ns), t_ras=clocks(self.t_ras_ns),
            t_ras_max=int(self.t_ras_max_ns / period), t_rc=clocks(self.t_rc_ns),
            t_rfc=clocks(self.t_rfc_ns), t_rrd=clocks(self.t_rrd_ns), t_wr=clocks(self.t_wr_ns),
            t_mrd=self.t_mrd_clk,
            t_refi=int(self.refresh_ms * 1e6 / self.refresh_count / period * REFRESH_MARGIN),
            init_wait=math.ceil(self.init_wait_us * 1e3 / period),
            init_refreshes=self.init_refreshes,
            row_bits=self.row_bits, col_bits=self.col_bits, bank_bits=self.bank_bits,
            data_bits=self.data_bits)


#: The refresh interval in clocks is this fraction of the datasheet's: a board build rounds its
#: clock up to whole MHz for the timing (so every minimum time holds), and the real clock,
#: up to 3% slower at 33 MHz and above, stretches each clock (refreshing a few percent more
#: often than needed costs nothing but a little bandwidth).
REFRESH_MARGIN = 0.97


@dataclass(frozen=True)
class SdramTiming:
    """A chip's timing in clocks at one clock (:meth:`SdramChip.at`); the controller and the
    memory model both take this. ``t_refi``: the longest the controller may go between two
    AUTO REFRESH commands (the memory model fails past it). ``replace`` makes variants (a
    shorter timing for a test, a faster-simulating ``init_wait``)."""
    chip: str
    clk_mhz: float
    cas_latency: int
    t_rcd: int
    t_rp: int
    t_ras: int
    t_ras_max: int
    t_rc: int
    t_rfc: int
    t_rrd: int
    t_wr: int
    t_mrd: int
    t_refi: int
    init_wait: int
    init_refreshes: int
    row_bits: int
    col_bits: int
    bank_bits: int
    data_bits: int

    def __post_init__(self):
        for f in fields(self):
            if f.name in ("chip",):
                continue
            _positive(getattr(self, f.name), f"SdramTiming {f.name}",
                      integer=f.name != "clk_mhz")
        if self.cas_latency not in (2, 3):
            raise ValueError(f"SdramTiming cas_latency must be 2 or 3, not {self.cas_latency}")
        if self.row_bits < 11:
            raise ValueError(f"SdramTiming row_bits must be at least 11 (A10 is the "
                             f"all-banks / auto-precharge bit), not {self.row_bits}")

    def replace(self, **changes) -> SdramTiming:
        return replace(self, **changes)

    @property
    def addr_bits(self) -> int:
        """Width of a word address: bank, row, column."""
        return self.bank_bits + self.row_bits + self.col_bits

    def split_address(self, addr: int) -> tuple[int, int, int]:
        """``(bank, row, column)`` of word address ``addr``, laid out ``{row, bank, column}``
        (column in the low bits: consecutive words stay in a row, the next row opens in the
        next bank). :class:`~nmaccel.hw.common.sdram.SdramController` slices its requests
        this way."""
        col = addr & ((1 << self.col_bits) - 1)
        bank = (addr >> self.col_bits) & ((1 << self.bank_bits) - 1)
        return bank, addr >> (self.col_bits + self.bank_bits), col

    @property
    def peak_bytes_per_cycle(self) -> float:
        return self.data_bits / 8

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def words_per_entry(timing: SdramTiming, entry_bits: int) -> int:
    """SDRAM words that hold one ``entry_bits``-bit entry (:func:`pack_entries`)."""
    return -(-entry_bits // timing.data_bits)


def pack_entries(timing: SdramTiming, entry_bits: int, entries) -> list[int]:
    """The SDRAM words that hold ``entries`` (integers of ``entry_bits`` bits), in order."""
    wpe, w = words_per_entry(timing, entry_bits), timing.data_bits
    out = []
    for e in entries:
        e = int(e)
        if e < 0 or e >> entry_bits:
            raise ValueError(f"entry {e:#x} does not fit {entry_bits} bits")
        out += [(e >> (k * w)) & ((1 << w) - 1) for k in range(wpe)]
    return out


def mode_register(timing: SdramTiming) -> int:
    """The LOAD MODE value: burst length 1 (A2..A0 = 0), sequential (A3 = 0), CAS latency
    (A6..A4), standard operation (A8..A7 = 0), programmed burst writes (A9 = 0)."""
    return timing.cas_latency << 4


def refresh_slack(timing: SdramTiming) -> int:
    """Cycles the controller reserves between deciding to refresh and the AUTO REFRESH
    command: the longest wait for an open row to be prechargeable (tRAS or tWR), the
    precharge itself (tRP) and a few cycles of margin. It decides when ``t_refi - slack``
    cycles have passed since the last refresh."""
    return max(timing.t_ras, timing.t_wr) + timing.t_rp + 4


#: ULX3S v3.x: ISSI IS42S16160G-7 (32 MB, 16 bit). Datasheet, -7 grade (143 MHz at CL3,
#: 100 MHz at CL2). tRAS is the larger of the values the datasheet revisions give.
IS42S16160G_7 = SdramChip(
    name="IS42S16160G-7", row_bits=13, col_bits=9, bank_bits=2, data_bits=16,
    t_rcd_ns=15, t_rp_ns=15, t_ras_ns=42, t_ras_max_ns=100_000, t_rc_ns=60, t_rfc_ns=60,
    t_rrd_ns=14, t_wr_ns=14, t_mrd_clk=2, refresh_ms=64, refresh_count=8192,
    init_wait_us=200, init_refreshes=8, cl2_max_mhz=100, cl3_max_mhz=143)

#: Some ULX3S boards: Micron MT48LC16M16A2-6A (32 MB, 16 bit), 167 MHz at CL3, 100 MHz at
#: CL2; tWR is one clock plus 6 ns (12 ns taken).
MT48LC16M16A2_6A = SdramChip(
    name="MT48LC16M16A2-6A", row_bits=13, col_bits=9, bank_bits=2, data_bits=16,
    t_rcd_ns=18, t_rp_ns=18, t_ras_ns=42, t_ras_max_ns=120_000, t_rc_ns=60, t_rfc_ns=66,
    t_rrd_ns=12, t_wr_ns=12, t_mrd_clk=2, refresh_ms=64, refresh_count=8192,
    init_wait_us=100, init_refreshes=2, cl2_max_mhz=100, cl3_max_mhz=167)

CHIPS = {c.name: c for c in (IS42S16160G_7, MT48LC16M16A2_6A)}
#: The chip the kit assumes for the ULX3S (v3.x boards) when none is named.
ULX3S_SDRAM = IS42S16160G_7


def sdram_chip(name: str) -> SdramChip:
    """The chip called ``name`` (:data:`CHIPS`); ``ValueError`` lists the known ones."""
    if name not in CHIPS:
        raise ValueError(f"unknown SDRAM chip {name!r}; known: {', '.join(sorted(CHIPS))}")
    return CHIPS[name]
