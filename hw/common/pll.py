"""PLL divider search and PLL clock domains for the FPGA families the board flows target.

One place per family:

``ice40_pll_params(f_in, f_out)`` / :class:`Ice40Pll`
    iCE40 ``SB_PLL40_PAD`` (clock from the PLL pad) or ``SB_PLL40_CORE`` (from fabric), SIMPLE
    feedback:
    ``f_pfd = f_in / (DIVR+1)``, ``f_vco = f_pfd * (DIVF+1)``, ``f_out = f_vco / 2**DIVQ``.
    Limits (iCE40 sysCLOCK PLL technical note TN1251, the same as icepll uses):
    f_in 10–133 MHz, f_pfd 10–133 MHz, f_vco 533–1066 MHz, f_out 16–275 MHz,
    DIVR 0–15, DIVF 0–127, DIVQ 1–6; FILTER_RANGE from f_pfd.
``ecp5_pll_params(f_in, f_out)`` / :class:`Ecp5Pll`
    ECP5 ``EHXPLLL`` with CLKOP feedback: ``f_out = f_in * CLKFB_DIV / CLKI_DIV``,
    ``f_vco = f_out * CLKOP_DIV``. Limits (ECP5 sysCLOCK PLL guide TN1263, as ecppll uses):
    f_in 8–400 MHz, f_pfd ≥ 3.125 MHz, f_vco 400–800 MHz, f_out 3.125–400 MHz,
    CLKI_DIV 1–128, CLKFB_DIV 1–80, CLKOP_DIV 1–128.

Both search exhaustively for the dividers whose output is closest to ``f_out`` (ties: the VCO
nearest the middle of its range) and return the achieved frequency, which the board top uses
as its clock constraint. The PLL components drive clock domain ``sync`` and hold its reset
until the PLL reports lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import (
    ClockDomain,
    Elaboratable,
    Instance,
    Module,
    Signal,
)
from amaranth.lib.cdc import AsyncFFSynchronizer, ResetSynchronizer

__all__ = ["Ecp5Pll", "Ice40Pll", "PllSettings", "ecp5_pll_params", "ice40_pll_params"]


@dataclass(frozen=True)
class PllSettings:
    """Divider values of one PLL solution; ``f_out``/``f_vco`` are the achieved frequencies (Hz)."""

    family: str
    f_in: float
    f_out: float
    f_vco: float
    params: dict

    @property
    def f_out_mhz(self) -> float:
        return self.f_out / 1e6


def _check_freq(name: str, value, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a frequency in [{lo / 1e6:g}, {hi / 1e6:g}] MHz "
                         f"(in Hz), not {value!r}")
    return float(value)


def _ice40_filter_range(f_pfd: float) -> int:
    # Loop filter setting against the phase detector frequency (TN1251; icepll's table).
    for limit, value in ((17e6, 1), (26e6, 2), (44e6, 3), (66e6, 4), (101e6, 5)):
        if f_pfd < limit:
            return value
    return 6


def ice40_pll_params(f_in: float, f_out: float) -> PllSettings:
    """Dividers of an iCE40 PLL (SIMPLE feedback) for ``f_out`` Hz from ``f_in`` Hz."""
    f_in = _check_freq("f_in", f_in, 10e6, 133e6)
    f_out = _check_freq("f_out", f_out, 16e6, 275e6)
    best = None
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not 10e6 <= f_pfd <= 133e6:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533e6 <= f_vco <= 1066e6:
                continue
            for divq in range(1, 7):
                got = f_vco / (1 << divq)
                if not 16e6 <= got <= 275e6:
                    continue
                key = (abs(got - f_out), abs(f_vco - 800e6))
                if best is None or key < best[0]:
                    best = (key, divr, divf, divq, f_vco, got, f_pfd)
    if best is None:
        raise ValueError(f"no iCE40 PLL setting reaches f_out={f_out / 1e6:g} MHz "
                         f"from f_in={f_in / 1e6:g} MHz")
    _, divr, divf, divq, f_vco, got, f_pfd = best
    return PllSettings("ice40", f_in, got, f_vco, {
        "FEEDBACK_PATH": "SIMPLE", "DIVR": divr, "DIVF": divf, "DIVQ": divq,
        "FILTER_RANGE": _ice40_filter_range(f_pfd)})


def ecp5_pll_params(f_in: float, f_out: float) -> PllSettings:
    """Dividers of an ECP5 EHXPLLL (CLKOP feedback) for ``f_out`` Hz from ``f_in`` Hz."""
    f_in = _check_freq("f_in", f_in, 8e6, 400e6)
    f_out = _check_freq("f_out", f_out, 3.125e6, 400e6)
    best = None
    for clki_div in range(1, 129):
        if f_in / clki_div < 3.125e6:
            break
        for clkfb_div in range(1, 81):
            got = f_in * clkfb_div / clki_div
            if not 3.125e6 <= got <= 400e6:
                continue
            for clkop_div in range(1, 129):
                f_vco = got * clkop_div
                if f_vco > 800e6:
                    break
                if f_vco < 400e6:
                    continue
                key = (abs(got - f_out), abs(f_vco - 600e6))
                if best is None or key < best[0]:
                    best = (key, clki_div, clkfb_div, clkop_div, f_vco, got)
    if best is None:
        raise ValueError(f"no ECP5 PLL setting reaches f_out={f_out / 1e6:g} MHz "
                         f"from f_in={f_in / 1e6:g} MHz")
    _, clki_div, clkfb_div, clkop_div, f_vco, got = best
    return PllSettings("ecp5", f_in, got, f_vco, {
        "CLKI_DIV": clki_div, "CLKFB_DIV": clkfb_div, "CLKOP_DIV": clkop_div,
        # zero-degree output phase as ecppll writes it
        "CLKOP_CPHASE": (clkop_div - 1) // 2, "CLKOP_FPHASE": 0})


class Ice40Pll(Elaboratable):
    """iCE40 PLL driving clock domain :attr:`domain` (``sync``) at ``settings.f_out``; its
    reset is held until lock. The parent adds the domain (``m.domains.sync = pll.domain``):
    a domain is defined where its users can see it (Amaranth 0.6 requires it).

    ``pad=True``: ``SB_PLL40_PAD``, ``ref`` is the clock pad port
    (``platform.request(..., dir="-")``), for boards whose oscillator reaches the PLL pad.
    ``pad=False``: ``SB_PLL40_CORE``, ``ref`` is a clock signal from the fabric.
    """

    def __init__(self, ref, settings: PllSettings, *, pad: bool) -> None:
        if not isinstance(settings, PllSettings) or settings.family != "ice40":
            raise TypeError(f"settings must be ice40 PllSettings, not {settings!r}")
        self.ref, self.settings, self.pad = ref, settings, pad
        self.locked = Signal()
        self.domain = ClockDomain("sync")

    def elaborate(self, platform) -> Module:
        m = Module()
        cd_sync = self.domain
        p = self.settings.params
        ref = {"i_PACKAGEPIN": self.ref.io} if self.pad else {"i_REFERENCECLK": self.ref}
        clkout = Signal(attrs=_KEEP)   # the net the clock constraint names (see _KEEP)
        m.submodules.pll = Instance(
            "SB_PLL40_PAD" if self.pad else "SB_PLL40_CORE",
            p_FEEDBACK_PATH=p["FEEDBACK_PATH"], p_DIVR=p["DIVR"], p_DIVF=p["DIVF"],
            p_DIVQ=p["DIVQ"], p_FILTER_RANGE=p["FILTER_RANGE"],
            i_RESETB=1, i_BYPASS=0, o_PLLOUTGLOBAL=clkout, o_LOCK=self.locked, **ref)
        m.d.comb += cd_sync.clk.eq(clkout)
        if platform is not None:
            platform.add_clock_constraint(clkout, self.settings.f_out)
        m.submodules.rst_sync = ResetSynchronizer(~self.locked, domain="sync")
        return m


# Yosys keeps one name per net when it flattens a large design and may drop the PLL output's
# (on the ULX3S STA build the clock net came out as ``accel.bridge.clk``, and nextpnr warned
# "net 'pll.clkop' does not exist in design, ignoring clock constraint"). ``keep`` makes the
# constrained name survive synthesis.
_KEEP = {"keep": 1}


class Ecp5Pll(Elaboratable):
    """``EHXPLLL`` from clock input ``clk_in`` (a signal); drives clock domain
    :attr:`domain` (``sync``, which the parent adds) at ``settings.f_out`` and holds its
    reset until lock.

    The reset (asserted while the PLL is unlocked, released synchronously, as Amaranth's
    ``ResetSynchronizer``) reaches the domain through a ``DCCA``, so nextpnr routes it on one
    of the global lines rather than through the fabric. nextpnr-ecp5 promotes clock nets
    only; on the ULX3S STA (``ulx3s_lite``) the reset was one fabric net to 11,338 flip-flop
    ``LSR`` pins spanning the chip, the largest net of the design after the clock.
    """

    def __init__(self, clk_in, settings: PllSettings) -> None:
        if not isinstance(settings, PllSettings) or settings.family != "ecp5":
            raise TypeError(f"settings must be ecp5 PllSettings, not {settings!r}")
        self.clk_in, self.settings = clk_in, settings
        self.locked = Signal()
        self.domain = ClockDomain("sync")

    def elaborate(self, platform) -> Module:
        m = Module()
        cd_sync = self.domain
        p = self.settings.params
        clkop = Signal(attrs=_KEEP)    # the net the clock constraint names (see _KEEP)
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{self.settings.f_in / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{self.settings.f_out / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
            p_CLKOP_ENABLE="ENABLED", p_FEEDBK_PATH="CLKOP",
            p_CLKI_DIV=p["CLKI_DIV"], p_CLKFB_DIV=p["CLKFB_DIV"], p_CLKOP_DIV=p["CLKOP_DIV"],
            p_CLKOP_CPHASE=p["CLKOP_CPHASE"], p_CLKOP_FPHASE=p["CLKOP_FPHASE"],
            i_CLKI=self.clk_in, i_CLKFB=clkop, i_RST=0, i_STDBY=0,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0,
            o_CLKOP=clkop, o_LOCK=self.locked)
        m.d.comb += cd_sync.clk.eq(clkop)
        if platform is not None:
            platform.add_clock_constraint(clkop, self.settings.f_out)
        rst_local = Signal(init=1)
        m.submodules.rst_sync = AsyncFFSynchronizer(~self.locked, rst_local, o_domain="sync")
        m.submodules.rst_global = Instance("DCCA", i_CLKI=rst_local, i_CE=1,
                                           o_CLKO=cd_sync.rst)
        return m
