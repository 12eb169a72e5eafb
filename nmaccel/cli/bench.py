"""``nmaccel bench STUDY``: the benchmark studies that regenerate figures in ``reports/``.

Each study lives in :mod:`nmaccel.studies` and writes its JSON, Markdown and (where it has
one) PNG under ``--out`` (default: ``reports`` in the current folder). ``benchmarks/*.py`` in a
source checkout are thin wrappers around these commands.
"""

from __future__ import annotations

from nmaccel.cli.args import (
    CommandError,
    Formatter,
    check_output_dir,
    nm_list,
    positive_float,
    positive_int,
    preset_names,
)
from nmaccel.spec.config import CONV_PRESETS, STA_PRESETS

__all__ = ["HELP", "DESCRIPTION", "add_arguments", "run", "STUDIES"]

HELP = "benchmark studies: sta-layer, sta-mac-array, conv-report, conv-resources, ..."
DESCRIPTION = __doc__


def _sta_layer(p):
    p.add_argument("--seq", type=positive_int, default=32, help="real tokens")
    p.add_argument("--nm", type=nm_list, default="dense,2:4", help="weight patterns")
    p.add_argument("--preset", choices=list(STA_PRESETS), default="ulx3s", help="STA preset")
    p.add_argument("--out", default="reports", help="output folder")


def _run_sta_layer(args, command):
    from nmaccel.studies.sta_layer import run
    return run(seq=args.seq, nm=args.nm, preset=args.preset, out=args.out / "sta_layer",
               command=command)


def _points(text: str) -> list[tuple[str, int, int]]:
    import argparse
    points = []
    for item in text.split(","):
        try:
            preset, n, m = item.split(":")
            points.append((preset_names(preset)[0], int(n), int(m)))
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(f"--points entries must look like ulx3s:2:4, "
                                             f"not {item!r}") from None
    return points


def _sta_mac_array(p):
    p.add_argument("--seq", type=positive_int, default=128, help="real tokens")
    p.add_argument("--heads", type=positive_int, default=2, help="heads whose Q·Kᵀ is run")
    p.add_argument("--quick", action="store_true", help="ulx3s 2:4 only, seq 32")
    p.add_argument("--points", type=_points, default=None,
                   help="comma-separated PRESET:N:M points (default: the study's four)")
    p.add_argument("--append", action="store_true",
                   help="add the points to the existing JSON instead of starting anew")
    p.add_argument("--out", default="reports", help="output folder")


def _run_sta_mac_array(args, command):
    from nmaccel.studies.sta_mac_array import run
    if args.append and not args.points:
        raise CommandError("--append needs --points (the points to add)")
    return run(seq=args.seq, heads=args.heads, quick=args.quick,
               out=args.out / "sta_mac_array", points=args.points, append=args.append,
               command=command)


def _conv_report(p):
    p.add_argument("--train-timing", action="store_true",
                   help="retrain both nets from scratch and time it")
    p.add_argument("--ptq", action="store_true",
                   help="also the adder net's golden accuracy at 4/6/8 bits and without BN "
                        "re-estimation")
    p.add_argument("--out", default="reports",
                   help="folder with conv_digits_*.json and conv_resources.json; output folder")


def _run_conv_report(args, command):
    from nmaccel.studies.conv_report import run
    return run(reports=args.out, train_timing=args.train_timing, ptq=args.ptq)


def _conv_resources(p):
    p.add_argument("--p-out", type=positive_int, default=8, help="PE array rows")
    p.add_argument("--p-in", type=positive_int, default=8, help="PE array columns")
    p.add_argument("--no-engine", action="store_true", help="skip the full-engine synthesis")
    p.add_argument("--out", default="reports", help="output folder")


def _run_conv_resources(args, command):
    from nmaccel.studies.conv_resources import run
    run(p_out=args.p_out, p_in=args.p_in, out=args.out, engine=not args.no_engine)
    return 0


def _sta_resources(p):
    p.add_argument("--preset", choices=list(STA_PRESETS), default="ulx3s_board")
    p.add_argument("--out", default="reports", help="output folder")


def _run_sta_resources(args, command):
    from nmaccel.studies.sta_resources import run
    return run(preset=args.preset, out=args.out)


def _block_fmax(p):
    p.add_argument("--board", choices=["ulx3s", "icebreaker"], default="ulx3s",
                   help="the FPGA the blocks are placed on (icebreaker: the lean STA's blocks)")
    p.add_argument("--sta-preset", choices=list(STA_PRESETS), default=None,
                   help="STA preset (default: ulx3s_lite, on icebreaker icebreaker)")
    p.add_argument("--conv-preset", choices=list(CONV_PRESETS), default=None,
                   help="conv preset (default: the board's: ulx3s, icebreaker)")
    p.add_argument("--freq", type=float, default=None,
                   help="target MHz (default: 100, on icebreaker 24)")
    p.add_argument("--only", nargs="*", default=None, help="block names to run")
    p.add_argument("--whole", action="store_true",
                   help="also the whole StaCore and ConvEngine (tens of minutes each)")
    p.add_argument("--out", default="reports", help="output folder")
    p.add_argument("--no-progress", action="store_true")


def _run_block_fmax(args, command):
    from nmaccel.studies.block_fmax import run
    return run(sta_preset_name=args.sta_preset, conv_preset_name=args.conv_preset,
               freq=args.freq, only=args.only, whole=args.whole, out=args.out,
               progress=not args.no_progress, board=args.board)


def _simspeed(p):
    p.add_argument("--presets", type=preset_names, default="tiny,ulx3s_board,large",
                   help="comma-separated STA presets")
    p.add_argument("--out", default="reports", help="output folder")


def _run_simspeed(args, command):
    from nmaccel.studies.simspeed_layer import run
    return run(presets=args.presets, out=args.out, command=command)


def _fuzz(p):
    p.add_argument("--programs", type=positive_int, default=10_000,
                   help="random programs to run")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--preset", choices=list(STA_PRESETS), default="tiny", help="STA preset")
    p.add_argument("--simulator", choices=("verilator", "icarus", "amaranth"),
                   default="verilator")
    p.add_argument("--batch", type=positive_int, default=1000,
                   help="programs per simulator process")
    p.add_argument("--good-every", type=positive_int, default=10,
                   help="a known-good program after every this many random ones")
    p.add_argument("--out", default="reports", help="output folder")


def _run_fuzz(args, command):
    from nmaccel.studies.fuzz import run
    return run(programs=args.programs, seed=args.seed, preset=args.preset,
               simulator=args.simulator, batch=args.batch, good_every=args.good_every,
               out=args.out, command=command)


def _roofline(p):
    from nmaccel.spec.sdram import CHIPS, ULX3S_SDRAM
    p.add_argument("--preset", choices=list(STA_PRESETS), default="ulx3s", help="STA preset")
    p.add_argument("--chip", choices=sorted(CHIPS), default=ULX3S_SDRAM.name,
                   help="the board's SDRAM chip")
    p.add_argument("--clk-mhz", type=positive_float, default=100.0,
                   help="core and SDRAM clock, MHz")
    p.add_argument("--out", default="reports", help="output folder")


def _run_roofline(args, command):
    from nmaccel.spec.sdram import sdram_chip
    from nmaccel.studies.roofline import run
    try:
        sdram_chip(args.chip).at(args.clk_mhz)
    except ValueError as exc:
        raise CommandError(f"--clk-mhz: {exc}") from None
    check_output_dir(args.out, "--out")
    return run(preset=args.preset, out=args.out, chip=args.chip, clk_mhz=args.clk_mhz,
               command=command)


def _logic_depth(p):
    p.add_argument("--netlist", required=True,
                   help="a Yosys JSON netlist after synth_ice40/synth_ecp5, or an `nmaccel "
                        "build` --out folder (its top.json)")
    p.add_argument("--count", type=positive_int, default=40, help="endpoints to list")
    p.add_argument("--path", default=None,
                   help="also print the cells of the deepest path into the first endpoint "
                        "whose name contains this")
    p.add_argument("--out", default=None,
                   help="folder for logic_depth.json/.md (default: the netlist's folder)")


def _run_logic_depth(args, command):
    from pathlib import Path

    from nmaccel.boards.logic_depth import run
    if args.out is None:                      # beside the netlist: check it like --out
        src = Path(args.netlist)
        args.out = check_output_dir(src if src.is_dir() else src.parent, "--netlist's folder")
    try:
        return run(args.netlist, out=args.out, count=args.count, path=args.path,
                   command=command)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _congestion(p):
    p.add_argument("--build", default=None,
                   help="an `nmaccel build` --out folder whose synthesis finished: placed "
                        "here with its nextpnr options, placement only (tens of minutes on the "
                        "85F)")
    p.add_argument("--placed", default=None, help="or: a nextpnr JSON written after placement")
    p.add_argument("--placer", choices=("heap", "static", "sa"), default=None,
                   help="with --build: nextpnr placer (default: the build's)")
    p.add_argument("--depth", type=positive_int, default=3,
                   help="parts of the net names that make a hierarchy")
    p.add_argument("--out", default=None,
                   help="folder for congestion.json/.md/.png (default: the placed JSON's)")


def _run_congestion(args, command):
    from nmaccel.boards.congestion import run
    try:
        return run(build=args.build, placed=args.placed, out=args.out, placer=args.placer,
                   depth=args.depth, command=command)
    except (ValueError, RuntimeError) as exc:
        raise CommandError(str(exc)) from None


#: study name -> (one-line help, add_arguments, run(args, command))
STUDIES = {
    "sta-layer": ("all six MiniLM-L6 layers on the STA RTL -> sta_layer.*",
                  _sta_layer, _run_sta_layer),
    "sta-mac-array": ("MAC-array utilization and sparse speedup on RTL -> sta_mac_array.*",
                      _sta_mac_array, _run_sta_mac_array),
    "conv-report": ("conv-engine summary of the digits runs -> conv_summary.*",
                    _conv_report, _run_conv_report),
    "conv-resources": ("ECP5 resources of the conv PE array per mode -> conv_resources.*",
                       _conv_resources, _run_conv_resources),
    "sta-resources": ("ECP5 resources of each STA block -> sta_resources.*",
                      _sta_resources, _run_sta_resources),
    "block-fmax": ("each block placed and routed alone on a board's FPGA -> block_fmax*.*",
                   _block_fmax, _run_block_fmax),
    "simspeed": ("where the wall time of a whole-layer RTL run goes -> simspeed.*",
                 _simspeed, _run_simspeed),
    "fuzz": ("random command streams end with done or an error, bounded -> fuzz.*",
             _fuzz, _run_fuzz),
    "logic-depth": ("LUT levels into every register of a synthesized netlist -> "
                    "logic_depth.*", _logic_depth, _run_logic_depth),
    "congestion": ("estimated wire demand of a placed design: where routing congests, which "
                   "nets fill it -> congestion.*", _congestion, _run_congestion),
    "roofline": ("layer latency with weights from SDRAM against tokens (model) -> roofline.*",
                 _roofline, _run_roofline),
}


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="study", metavar="STUDY")
    sub.required = True
    for name, (help_, add, _) in STUDIES.items():
        sp = sub.add_parser(name, formatter_class=Formatter, help=help_, description=help_)
        add(sp)


def run(args) -> int:
    import sys
    if args.out is not None:
        args.out = check_output_dir(args.out, "--out")
    command = "nmaccel bench " + " ".join(sys.argv[2:]) \
        if len(sys.argv) > 2 and sys.argv[1] == "bench" else f"nmaccel bench {args.study}"
    return int(STUDIES[args.study][2](args, command) or 0)
