"""Boards the build flow supports, with what each one builds by default.

A :class:`BoardTarget` names an amaranth-boards platform, its FPGA family (which picks the
PLL in :mod:`nmaccel.hw.common.pll`), the clock input, the LEDs that show busy/done/error, the
UART resource (added here where the board has none) and, per design, the default preset and
target frequency. Look boards up with :func:`board_target`; bad names raise
:class:`BoardError` listing the valid ones.

Boards
    ``icebreaker`` iCEBreaker v1.0 (iCE40UP5K-SG48): STA ``icebreaker`` (the memory-lean core)
    and conv ``icebreaker``
    (the conv preset that fits the UP5K; it must meet 24 MHz) at 24 MHz; 12 MHz clock on
    the PLL pad (``SB_PLL40_PAD``); UART over the FTDI (pins 6/9); red/green LEDs and the
    break-off PMOD's LED.
    ``upduino3`` UPduino v3.x (iCE40UP5K-SG48): the same ``icebreaker`` STA and conv
    engine on the cheapest UP5K board; the 12 MHz oscillator reaches pin 20 once the OSC
    jumper is soldered, which is not the PLL pad, so the PLL is ``SB_PLL40_CORE`` fed from
    fabric; the board has no FPGA UART: one is added on header J5 pins 23 (rx) / 25 (tx) for a
    3.3 V USB-serial adapter; RGB LED.
    ``ulx3s`` ULX3S with an LFE5U-85F (ECP5, CABGA381, speed 6): STA ``ulx3s`` at 100 MHz and
    the conv engine ``ulx3s``; 25 MHz clock into ``EHXPLLL``; UART over the FTDI; LEDs 0–2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BOARDS", "DESIGNS", "BoardError", "BoardTarget", "board_target"]

#: design name -> what it is
DESIGNS = {
    "sta": "STA N:M sparse Transformer accelerator (StaCore) behind the UART bridge",
    "conv": "adder/binary conv engine (ConvEngine) with its ports on registered serial pins",
}


class BoardError(ValueError):
    """Unknown board, or a design/preset/frequency the board does not support."""


#: nextpnr's routers (``nmaccel build --router``).
ROUTERS = ("router1", "router2")
#: nextpnr's placers per FPGA family (``nmaccel build --placer``; ``heap``, HeAP, is nextpnr's
#: default). nextpnr-ecp5 runs HeAP at a fixed maximum density of 0.75 (``--placer-heap-beta``
#: is ignored), so a design using 41% of the 85F sat in its left 62% at ~70% density;
#: ``static`` (electrostatic, filler cells up to 70% of the whole device) spreads it over the
#: chip.
PLACERS = {"ecp5": ("heap", "static", "sa"), "ice40": ("heap", "sa")}


@dataclass(frozen=True)
class BoardTarget:
    name: str
    title: str
    platform_module: str
    platform_class: str
    family: str                      # "ice40" | "ecp5"
    clock: str                       # clock resource name
    pll: str                         # "pad" (SB_PLL40_PAD) | "core" (SB_PLL40_CORE) | "ehxplll"
    leds: tuple                      # (resource, number[, subsignal]) for busy, done, error
    presets: dict                    # design -> default preset
    freqs_mhz: dict                  # design -> default target frequency (MHz)
    extra_resources: str = ""        # name of a function below that returns resources to add
    notes: str = ""
    timing_floor_mhz: dict = field(default_factory=dict)   # design -> required fmax (issue)
    synth_opts: dict = field(default_factory=dict)         # design -> extra synth_* options
    nextpnr_opts: tuple = ()                               # extra nextpnr options
    dsp_blocks: int = 0              # hard multipliers of the device (MULT18X18D, SB_MAC16)
    #: the board's SDRAM chip (a :data:`nmaccel.spec.sdram.CHIPS` name; "" for none): an STA
    #: config with ``sdram_mhz`` keeps its weights there (at the build's clock)
    sdram: str = ""
    loader_board: str = ""           # openFPGALoader's -b name for this board
    #: a register stage on each host stream between the UART bridge and the core
    #: (:class:`~nmaccel.boards.uart_top.UartTop`'s ``host_stage``): on a large device they
    #: are placed far apart; the iCE40UP5K has no room for its flip-flops
    host_stage: bool = False
    #: nextpnr's placer for a whole-chip build (``nmaccel build --placer`` overrides it; the
    #: out-of-context block builds of ``nmaccel bench block-fmax`` keep nextpnr's default)
    default_placer: str = "heap"

    def synth_options(self, design: str, cfg) -> list:
        """Extra synth options for ``design`` built with ``cfg``: an STA whose array has no
        more multipliers than the device has DSP blocks drops ``-nodsp`` (its multipliers and
        the post-ops' go to DSPs), and so does one whose array builds its products in LUTs
        (``array_lut``: only the post-ops' products are left for the DSPs); a bigger array
        keeps every multiplier in LUTs."""
        opts = list(self.synth_opts.get(design, ()))
        if (design == "sta" and "-nodsp" in opts
                and (cfg.array_lut or cfg.multipliers <= self.dsp_blocks)):
            opts.remove("-nodsp")
        return opts

    def router(self, override: str | None = None) -> str:
        """The nextpnr router a build uses (``override`` if given)."""
        opts = dict(zip(self.nextpnr_opts[::2], self.nextpnr_opts[1::2]))
        return override or opts.get("--router", "router1")

    def placer(self, override: str | None = None) -> str:
        """The nextpnr placer a build uses (``override`` if given; checked against
        :data:`PLACERS` of the board's family)."""
        opts = dict(zip(self.nextpnr_opts[::2], self.nextpnr_opts[1::2]))
        placer = override or opts.get("--placer", self.default_placer)
        if placer not in PLACERS[self.family]:
            raise BoardError(f"placer must be one of {', '.join(PLACERS[self.family])} on "
                             f"{self.title}, not {placer!r}")
        return placer

    def platform(self):
        """A fresh amaranth-boards platform instance with this project's resource additions."""
        import importlib
        cls = getattr(importlib.import_module(self.platform_module), self.platform_class)
        plat = cls()
        if self.extra_resources:
            plat.add_resources(globals()[self.extra_resources](plat))
        return plat


def _icebreaker_extra(plat):
    # The break-off PMOD's five LEDs become led 2..6 (busy shows on led 2).
    return plat.break_off_pmod


def _upduino3_extra(plat):
    from amaranth.build import Attrs
    from amaranth_boards.resources import UARTResource
    # Header J5 ("j" 0): connector pin 7 = FPGA pin 23 (rx), pin 8 = FPGA pin 25 (tx).
    return [UARTResource(0, rx="7", tx="8", conn=("j", 0),
                         attrs=Attrs(IO_STANDARD="SB_LVCMOS", PULLUP=1))]


BOARDS: dict[str, BoardTarget] = {
    "icebreaker": BoardTarget(
        name="icebreaker", title="iCEBreaker (iCE40UP5K)", loader_board="ice40_generic",
        platform_module="amaranth_boards.icebreaker", platform_class="ICEBreakerPlatform",
        family="ice40", clock="clk12", pll="pad",
        leds=(("led", 2), ("led_g", 0), ("led_r", 0)),
        presets={"sta": "icebreaker", "conv": "icebreaker"}, freqs_mhz={"sta": 24.0, "conv": 24.0},
        extra_resources="_icebreaker_extra", timing_floor_mhz={"sta": 24.0, "conv": 24.0},
        synth_opts={"sta": ["-dsp"], "conv": ["-dsp"]}),
    "upduino3": BoardTarget(
        name="upduino3", title="UPduino v3 (iCE40UP5K)", loader_board="ice40_generic",
        platform_module="amaranth_boards.upduino_v3", platform_class="UpduinoV3Platform",
        family="ice40", clock="clk12", pll="core",
        leds=(("rgb_led", 0, "b"), ("rgb_led", 0, "g"), ("rgb_led", 0, "r")),
        presets={"sta": "icebreaker", "conv": "icebreaker"}, freqs_mhz={"sta": 24.0, "conv": 24.0},
        extra_resources="_upduino3_extra", synth_opts={"sta": ["-dsp"], "conv": ["-dsp"]},
        notes="solder the OSC jumper (12 MHz to pin 20); UART on J5 pins 23/25"),
    "ulx3s": BoardTarget(
        name="ulx3s", title="ULX3S 85F (ECP5 LFE5U-85F)", loader_board="ulx3s",
        platform_module="amaranth_boards.ulx3s", platform_class="ULX3S_85F_Platform",
        family="ecp5", clock="clk25", pll="ehxplll",
        leds=(("led", 0), ("led", 1), ("led", 2)),
        # ulx3s_lite is the STA that fits the 85F (the 8x8x4 ulx3s_board does not:
        # reports/boards.md); a bigger preset can still be named with --preset.
        presets={"sta": "ulx3s_lite", "conv": "ulx3s"},
        freqs_mhz={"sta": 100.0, "conv": 100.0},
        timing_floor_mhz={"sta": 100.0},
        # The STA's R*C*L int8 multipliers (256 for ulx3s) outnumber the 156 MULT18X18D:
        # Yosys would map every one to a DSP and nextpnr could not place them, so the STA's
        # multipliers go to LUTs.
        synth_opts={"sta": ["-nodsp"]}, dsp_blocks=156,
        # router1, nextpnr's default: router2 is faster but converged on neither the
        # ulx3s_lite STA (overuse 992 wires at iteration 30, 5,314 at 54) nor the pipelined
        # conv engine (overuse stuck near 11,000 from iteration 8 to 16); router1 routed both
        # (40 and 63 min under WebAssembly on a loaded 2-core machine).
        nextpnr_opts=("--router", "router1"), sdram="IS42S16160G-7",
        # the bridge -> host-port paths were the conv build's critical path (14.36 ns, 11 ns
        # routing) and the ulx3s_lite STA's (bridge state -> VBUF read, 15.27 ns)
        host_stage=True,
        # nextpnr-ecp5 runs HeAP at a fixed density of 0.75: the conv engine with its read
        # stage (22% of the 85F) and ulx3s_lite (41%) sat in the chip's left part and router1
        # stalled on both; the electrostatic placer spreads them (conv: 86.04 MHz, 1,303 s)
        default_placer="static"),
}


def board_target(name: str) -> BoardTarget:
    """The board called ``name``; :class:`BoardError` lists the valid names otherwise."""
    try:
        return BOARDS[name]
    except (KeyError, TypeError):
        raise BoardError(f"unknown board {name!r}; expected one of: {', '.join(BOARDS)}") from None


def check_design(board: BoardTarget, design: str) -> None:
    if design not in DESIGNS:
        raise BoardError(f"unknown design {design!r}; expected one of: {', '.join(DESIGNS)}")
    if design not in board.presets:
        raise BoardError(f"design {design!r} is not supported on board {board.name!r}; "
                         f"it supports: {', '.join(board.presets)}")


__all__ += ["check_design"]
