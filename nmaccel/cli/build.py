"""``nmaccel build``: bitstream plus resource/fmax report for a board, with the YoWASP tools.

Examples::

    nmaccel build --board icebreaker --design sta --preset tiny --json ib.json
    nmaccel build --board ulx3s --design sta --preset ulx3s --freq 100 --out build/ulx3s
    nmaccel build --board ulx3s --design conv --program

Writes into ``--out``: the Amaranth build tree (``top.bin``/``top.bit``, tool logs, nextpnr's
``top.report.json``), ``report.json`` and ``report.md``; ``--json`` copies the JSON elsewhere.
Exit status 0 when timing is met, 1 when the design routed but missed the target frequency,
2 for bad arguments or a failed tool. ``--pack-only`` stops after nextpnr's packing: a fit
check in minutes (exit status 0 when the design fits, 1 when it does not; no bitstream).
"""

from __future__ import annotations

import shlex

from nmaccel.boards.targets import BOARDS, DESIGNS, PLACERS, ROUTERS
from nmaccel.cli.args import CommandError, check_output_dir, check_output_file, positive_int
from nmaccel.files import write_atomic, write_json
from nmaccel.spec.uart_protocol import DEFAULT_BAUD

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "run"]

HELP = "build a design for an FPGA board (YoWASP yosys/nextpnr): bitstream, resources, fmax"
DESCRIPTION = __doc__


def add_arguments(p) -> None:
    p.add_argument("--board", required=True,
                   help=f"target board, one of: {', '.join(BOARDS)}")
    p.add_argument("--design", dest="build_design", metavar="DESIGN", default="sta",
                   help=f"design, one of: {', '.join(DESIGNS)}")
    p.add_argument("--preset", default=None,
                   help="hardware preset of the design (default: the board's preset)")
    p.add_argument("--freq", type=float, default=None, metavar="MHZ",
                   help="target clock frequency (default: the board's target for the design)")
    p.add_argument("--baud", type=positive_int, default=DEFAULT_BAUD, help="UART baud rate")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    p.add_argument("--router", choices=ROUTERS, default=None,
                   help="nextpnr router (default: the board's, router1 on ulx3s)")
    p.add_argument("--placer", choices=sorted({p for ps in PLACERS.values() for p in ps}),
                   default=None,
                   help="nextpnr placer (default: the board's: static on ulx3s, heap on the "
                        "iCE40 boards, which have no static placer)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="build directory (default: build/boards/BOARD-DESIGN-PRESET)")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the report JSON here")
    p.add_argument("--baseline", metavar="REPORTS", default=None,
                   help="also record the result as the committed baseline (the package's "
                        "measured builds, boards/measured/ in a source checkout) and refresh "
                        "REPORTS/boards.md and REPORTS/boards/")
    p.add_argument("--pack-only", action="store_true",
                   help="stop after nextpnr's packing: does the design fit the device? "
                        "(minutes; no placement, fmax or bitstream)")
    p.add_argument("--program", action="store_true",
                   help="program the board with openFPGALoader after the build (only a "
                        "bitstream that meets timing; see --force)")
    p.add_argument("--force", action="store_true",
                   help="with --program: program the bitstream even if it misses timing (its "
                        "clock then runs faster than its fmax: results may be wrong)")


def run(args) -> int:
    from nmaccel.boards.build_report import markdown
    from nmaccel.boards.flow import BuildFailed, build, plan_build
    from nmaccel.boards.program import ProgramError, find_loader, program_board
    from nmaccel.boards.targets import BoardError

    try:   # validate everything before the (long) build
        board, preset, _, _ = plan_build(args.board, args.build_design, args.preset,
                                            args.freq, args.baud)
        board.placer(args.placer)
    except BoardError as exc:
        raise CommandError(str(exc)) from None
    if args.force and not args.program:
        raise CommandError("--force only applies with --program")
    if args.pack_only and args.program:
        raise CommandError("--program needs a bitstream; --pack-only builds none")
    if args.program:
        try:
            find_loader()
        except ProgramError as exc:
            raise CommandError(str(exc)) from None
    out = check_output_dir(args.out or f"build/boards/{board.name}-{args.build_design}-{preset}",
                           "--out")
    json_out = check_output_file(args.json, "--json") if args.json else None
    if args.baseline:
        check_output_dir(args.baseline, "--baseline")
        from nmaccel.boards.baselines import check_replaces
        try:
            check_replaces(board.name, args.build_design, preset, args.pack_only)
        except BoardError as exc:
            raise CommandError(str(exc)) from None
    cmd = "nmaccel build " + " ".join(shlex.quote(a) for a in _argv(args, board.name, preset))
    print(f"building {args.build_design} `{preset}` for {board.title} into {out} ...", flush=True)
    try:
        result = build(board.name, args.build_design, args.preset, args.freq, out, baud=args.baud,
                       seed=args.seed, command=cmd, router=args.router,
                       pack_only=args.pack_only, placer=args.placer)
    except BuildFailed as exc:
        raise CommandError(str(exc)) from None
    write_json(out / "report.json", result)
    write_atomic(out / "report.md", markdown(result))
    if json_out:
        write_json(json_out, result)
    if args.baseline:
        from nmaccel.boards.baselines import write_baseline
        print(f"baseline: {write_baseline(result, args.baseline)}")
    r = result["resources"]
    used = ", ".join(f"{k} {u}/{a}" for k, (u, a) in r.items())
    if not result.get("fits", True):
        print(f"{board.title}: does NOT fit ({', '.join(result['overused'])}); {used}; "
              f"{result['build_seconds']:.0f} s; no bitstream")
        return 1
    if args.pack_only:
        print(f"{board.title}: fits after packing; {used}; {result['build_seconds']:.0f} s "
              f"(--pack-only: not placed or routed, no fmax or bitstream)")
        return 0
    print(f"{board.title}: fmax {result['fmax_mhz']:.2f} MHz (target {result['target_mhz']:g}, "
          f"timing {'met' if result['timing_met'] else 'NOT met'}); {used}"
          f"; {result['build_seconds']:.0f} s; bitstream {result['bitstream']}")
    if not result["timing_met"]:
        safe = result.get("safe_freq_mhz")
        print(f"warning: this bitstream clocks the design at {result['target_mhz']:g} MHz, "
              f"above its {result['fmax_mhz']:.2f} MHz fmax: it can compute wrong results. " +
              (f"Rebuild with --freq {safe:g} for a clock below the fmax (the rebuild's report "
               "says whether it meets timing)." if safe else
               "No clock the board's PLL can make is that slow."))
        if args.program and not args.force:
            raise CommandError("not programming a bitstream that misses timing; rebuild at a "
                               "lower --freq, or pass --force to program it anyway")
    if args.program:
        try:
            program_board(board.name, result["bitstream"])
        except ProgramError as exc:
            raise CommandError(str(exc)) from None
    return 0 if result["timing_met"] else 1


def _argv(args, board: str, preset: str) -> list[str]:
    argv = ["--board", board, "--design", args.build_design, "--preset", preset]
    if args.freq is not None:
        argv += ["--freq", f"{args.freq:g}"]
    if args.baud != DEFAULT_BAUD:
        argv += ["--baud", str(args.baud)]
    if args.seed != 1:
        argv += ["--seed", str(args.seed)]
    if args.router is not None:
        argv += ["--router", args.router]
    if args.placer is not None:
        argv += ["--placer", args.placer]
    if args.pack_only:
        argv.append("--pack-only")
    return argv
