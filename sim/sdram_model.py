"""A behavioural SDR SDRAM for cocotb benches that checks the datasheet timing.

:class:`SdramModel` watches a controller's pins (by name prefix, e.g. ``pins__``) once per
clock, in the middle of the cycle (the values the chip samples at the next rising edge),
keeps the banks' state and the memory, answers READs ``CL`` cycles later on ``dq_i`` (CL from
the LOAD MODE value) and drives junk on ``dq_i`` in every other cycle, so that a controller
sampling at the wrong time reads wrong data. Every rule of the chip's
:class:`~nmaccel.spec.sdram.SdramTiming` is checked:

- power-up: nothing but NOP/INHIBIT for ``init_wait`` cycles; ``init_refreshes`` AUTO
  REFRESH before LOAD MODE; no ACTIVE/READ/WRITE before LOAD MODE; burst length 1 and a CAS
  latency the chip supports at this clock;
- tRCD (ACTIVE→READ/WRITE), tRAS (ACTIVE→PRECHARGE) and its maximum, tRC (ACTIVE→ACTIVE,
  same bank), tRRD (ACTIVE→ACTIVE, any bank), tRP (PRECHARGE→ACTIVE/REFRESH/LOAD MODE),
  tWR (write data→PRECHARGE), tRFC (AUTO REFRESH→any command), tMRD (LOAD MODE→any command);
- state: ACTIVE on an open bank, READ/WRITE on a closed one, REFRESH or LOAD MODE with a bank
  open; auto-precharge, BURST TERMINATE and masked bytes are not modelled and count as
  violations;
- the refresh interval: after the power-up refreshes, one AUTO REFRESH at least every
  ``t_refi`` cycles;
- the data bus: a WRITE (``dq_oe``) in a cycle in which the chip drives read data.

Violations are collected (:attr:`SdramModel.violations`, one line each with the cycle).
"""

from __future__ import annotations

import random
from typing import Optional

from cocotb.triggers import FallingEdge, ReadOnly

from nmaccel.spec.sdram import Command, SdramTiming

__all__ = ["SdramModel"]

_NAMES = {c.value: c.name for c in Command}


class SdramModel:
    """The chip (module docstring).

    Parameters
    ----------
    dut
        The cocotb handle of the design.
    prefix
        Name prefix of the pins: ``{prefix}cs_n``, ``ras_n``, ``cas_n``, ``we_n``, ``ba``,
        ``a``, ``dqm``, ``dq_o``, ``dq_oe``, ``dq_i``.
    timing
        The chip's real timing at the bench's clock (what it checks against).
    seed
        Seed of the junk driven on idle data cycles.
    """

    def __init__(self, dut, prefix: str, timing: SdramTiming, seed: int = 0):
        self.dut, self.t = dut, timing
        self.pin = {n: getattr(dut, prefix + n) for n in (
            "cs_n", "ras_n", "cas_n", "we_n", "ba", "a", "dqm", "dq_o", "dq_oe", "dq_i")}
        self.rng = random.Random(seed)
        self.memory: dict[tuple[int, int, int], int] = {}
        self.violations: list[str] = []
        self.cycle = 0
        banks = 1 << timing.bank_bits
        self.open = [False] * banks
        self.row = [0] * banks
        never = -(1 << 40)
        self.t_act = [never] * banks
        self.t_pre = [never] * banks
        self.t_write = [never] * banks
        self.t_act_any = never
        self.t_refresh: Optional[int] = None
        self.t_mode = never
        self.refreshes = 0
        self.cas_latency: Optional[int] = None
        self.due: dict[int, int] = {}            # cycle -> word the chip drives on dq_i
        self.counts = {c.name: 0 for c in Command}
        self._overdue_reported = False

    def load(self, words, base: int = 0) -> None:
        """Put ``words`` into the memory from word address ``base`` (no commands, no time)."""
        for i, word in enumerate(words):
            self.memory[self.t.split_address(base + i)] = int(word)

    def _fail(self, rule: str, text: str) -> None:
        self.violations.append(f"cycle {self.cycle}: {rule}: {text}")

    def _since(self, then: int, need: int, rule: str, what: str) -> None:
        if self.cycle - then < need:
            self._fail(rule, f"{what} {self.cycle - then} cycles after, needs {need}")

    async def run(self, clk) -> None:
        """Watch the pins forever (start with ``cocotb.start_soon``)."""
        width = self.t.data_bits
        while True:
            await FallingEdge(clk)
            self.cycle += 1
            word = self.due.pop(self.cycle, None)
            self.pin["dq_i"].value = word if word is not None \
                else self.rng.getrandbits(width)
            await ReadOnly()
            self._step(word is not None)

    def _step(self, chip_drives: bool) -> None:
        p = {n: int(h.value) for n, h in self.pin.items() if n != "dq_i"}
        t, k = self.t, self.cycle
        if p["dq_oe"] and chip_drives:
            self._fail("bus", "the controller drives dq while the chip returns read data")
        for b, is_open in enumerate(self.open):
            if is_open and k - self.t_act[b] > t.t_ras_max:
                self._fail("tRAS max", f"bank {b} open for {k - self.t_act[b]} cycles, at "
                           f"most {t.t_ras_max}")
                self.t_act[b] = k                  # report once per period
        if self.t_refresh is not None and k - self.t_refresh > t.t_refi \
                and not self._overdue_reported:
            self._fail("tREFI", f"no AUTO REFRESH for {k - self.t_refresh} cycles, at most "
                       f"{t.t_refi}")
            self._overdue_reported = True
        code = 0b1000 if p["cs_n"] else (p["ras_n"] << 2) | (p["cas_n"] << 1) | p["we_n"]
        if code in (Command.INHIBIT, Command.NOP):
            return
        cmd = Command(code)
        self.counts[cmd.name] += 1
        name = _NAMES[code]
        if k <= t.init_wait:
            self._fail("power-up", f"{name} in cycle {k}, before the {t.init_wait}-cycle "
                       "wait ended")
        self._since(self.t_refresh if self.t_refresh is not None else -(1 << 40), t.t_rfc,
                    "tRFC", f"{name}")
        self._since(self.t_mode, t.t_mrd, "tMRD", f"{name}")
        bank, a = p["ba"], p["a"]
        if cmd in (Command.ACTIVE, Command.READ, Command.WRITE) and self.cas_latency is None:
            self._fail("power-up", f"{name} before LOAD MODE")
        if p["dqm"]:
            self._fail("unsupported", f"{name} with byte mask {p['dqm']:#x}")
        if cmd == Command.ACTIVE:
            if self.open[bank]:
                self._fail("state", f"ACTIVE on bank {bank}, whose row {self.row[bank]} is "
                           "open")
            self._since(self.t_pre[bank], t.t_rp, "tRP", f"ACTIVE bank {bank}")
            self._since(self.t_act[bank], t.t_rc, "tRC", f"ACTIVE bank {bank}")
            self._since(self.t_act_any, t.t_rrd, "tRRD", f"ACTIVE bank {bank}")
            self.open[bank], self.row[bank] = True, a
            self.t_act[bank] = self.t_act_any = k
        elif cmd in (Command.READ, Command.WRITE):
            if not self.open[bank]:
                self._fail("state", f"{name} on closed bank {bank}")
                return
            self._since(self.t_act[bank], t.t_rcd, "tRCD", f"{name} bank {bank}")
            if a & (1 << 10):
                self._fail("unsupported", f"{name} with auto-precharge")
            addr = (bank, self.row[bank], a & ((1 << t.col_bits) - 1))
            if cmd == Command.WRITE:
                if not p["dq_oe"]:
                    self._fail("bus", "WRITE without data driven (dq_oe low)")
                self.memory[addr] = p["dq_o"]
                self.t_write[bank] = k
            else:
                when = k + (self.cas_latency or t.cas_latency)
                self.due[when] = self.memory.get(addr, self.rng.getrandbits(t.data_bits))
        elif cmd == Command.PRECHARGE:
            for b in (range(len(self.open)) if a & (1 << 10) else [bank]):
                if self.open[b]:
                    self._since(self.t_act[b], t.t_ras, "tRAS", f"PRECHARGE bank {b}")
                    self._since(self.t_write[b], t.t_wr, "tWR", f"PRECHARGE bank {b} "
                                "(from the last write data)")
                    self.open[b] = False
                    self.t_pre[b] = k
        elif cmd in (Command.AUTO_REFRESH, Command.LOAD_MODE):
            for b, is_open in enumerate(self.open):
                if is_open:
                    self._fail("state", f"{name} with bank {b} open")
                self._since(self.t_pre[b], t.t_rp, "tRP", f"{name} (bank {b})")
            if cmd == Command.AUTO_REFRESH:
                self.t_refresh = k
                self._overdue_reported = False
                self.refreshes += 1
            else:
                if self.refreshes < t.init_refreshes:
                    self._fail("power-up", f"LOAD MODE after {self.refreshes} AUTO REFRESH, "
                               f"needs {t.init_refreshes}")
                burst, cl = a & 0b111, (a >> 4) & 0b111
                if burst != 0:
                    self._fail("unsupported", f"burst length code {burst} (only 1 is modelled)")
                if cl not in (2, 3) or cl < t.cas_latency:
                    self._fail("CL", f"CAS latency {cl}; at {t.clk_mhz:g} MHz this chip needs "
                               + ("2 or 3" if t.cas_latency == 2 else "3"))
                self.cas_latency = cl
                self.t_mode = k
        else:
            self._fail("unsupported", f"{name}")
