"""``nmaccel report``: the full study (:mod:`nmaccel.studies.report`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nmaccel.cli.args import (
    CommandError,
    board,
    check_output_dir,
    check_output_file,
    jobs,
    layer,
    nm_list,
    nonneg_int,
    positive_int,
    preset_names,
)
from nmaccel.files import write_json

__all__ = ["HELP", "DESCRIPTION", "add_arguments", "run"]

HELP = "the full study: N:M sweep on RTL, software baselines, conv engine -> reports"
DESCRIPTION = (
    "Runs the N:M sweep (every preset x pattern, MiniLM-L6 layer on the STA RTL) in parallel "
    "(--jobs local processes, or a Dask cluster with --dask), measures PyTorch CPU fp32 and "
    "dynamic int8 on the same layer, projects accelerator time from the board's post-route "
    "fmax (the package's measured board builds), runs the conv engine's digits nets, "
    "measures simulator speed, and writes report.md, report.json, report.png to --out and, "
    "with --readme, the README's headline block. --reuse rebuilds everything derived from an "
    "existing report.json.")


def add_arguments(p) -> None:
    from nmaccel.studies.report import REPORT_PATTERNS
    p.add_argument("--presets", type=preset_names, default="ulx3s",
                   help="comma-separated STA presets (the first one is the README headline)")
    p.add_argument("--nm", type=nm_list, default=REPORT_PATTERNS,
                   help="weight patterns of the first preset ('dense' is the speedup baseline)")
    p.add_argument("--nm-others", type=nm_list, default="dense,2:4",
                   help="weight patterns of the other presets (each N:M pattern is one more "
                        "RTL build of that preset)")
    p.add_argument("--layer", type=layer, default=0, help="MiniLM-L6 layer")
    p.add_argument("--seq", type=positive_int, default=32, help="sequence length (real tokens)")
    p.add_argument("--board", type=board, default="ulx3s",
                   help="board whose post-route fmax projects time")
    p.add_argument("--boards", type=_folder, default=None, metavar="DIR",
                   help="folder of board build records (nmaccel build --json) to take fmax "
                        "from (default: the package's measured builds)")
    p.add_argument("--jobs", type=jobs, default=2, help="parallel processes (one per point)")
    p.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="run the points on a Dask distributed scheduler (tcp://host:port)")
    p.add_argument("--conv-images", type=nonneg_int, default=100,
                   help="digits test images per conv net on RTL (0 skips the conv engine)")
    p.add_argument("--no-simspeed", action="store_true",
                   help="skip the simulator speed comparison")
    p.add_argument("--quick", action="store_true",
                   help="small run: ulx3s dense and 2:4 (one RTL build), 10 conv images, no "
                        "simulator-speed section, no re-synthesis")
    p.add_argument("--reuse", action="store_true",
                   help="no simulation: recompute derived columns, Markdown, plot and README "
                        "block from --out/report.json")
    p.add_argument("--out", default="reports", help="output folder")
    p.add_argument("--readme", default=None, metavar="README",
                   help="also regenerate the headline block of this README (e.g. README.md "
                        "in a source checkout)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from --out/report.partial.json (its "
                        "finished points and baselines are kept)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _folder(text: str) -> Path:
    import argparse
    p = Path(text)
    if not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a folder")
    return p


def run(args) -> int:
    from nmaccel.studies.report import ReportSettings, collect, markdown, write_outputs
    from nmaccel.studies.sweep import DaskUnreachable, connect_dask
    out = check_output_dir(args.out, "--out")
    readme = check_output_file(args.readme, "--readme") if args.readme else None
    if args.reuse:
        path = out / "report.json"
        if not path.exists():
            raise CommandError(f"--reuse needs {path} (run nmaccel report first)")
        data = json.loads(path.read_text())
        # weights from SDRAM: a model, no simulation, so it follows the current compiler and
        # cycle model
        from nmaccel.studies.report import roofline_data
        data["roofline"] = roofline_data()
        written = write_outputs(data, out, readme, args.board, args.boards)
        print(f"rewrote {', '.join(written)} from {path} (no simulation)")
        return 0
    settings = ReportSettings(
        presets=args.presets, nm=args.nm, nm_others=args.nm_others, layer=args.layer,
        seq=args.seq, jobs=args.jobs, dask=args.dask, conv_images=args.conv_images,
        no_simspeed=args.no_simspeed, quick=args.quick, out=out,
        command_line="nmaccel report " + " ".join(sys.argv[2:])
        if len(sys.argv) > 1 and sys.argv[1] == "report" else "nmaccel report",
        progress=not args.no_progress, resume=args.resume)
    if args.quick:
        settings.presets, settings.conv_images = ["ulx3s"], min(args.conv_images, 10)
        settings.nm = nm_list("dense,2:4")
        settings.no_simspeed = True
    if None not in settings.nm or (len(settings.presets) > 1 and None not in settings.nm_others):
        raise CommandError("--nm and --nm-others must include 'dense' (the speedup baseline)")
    client = None
    if args.dask:
        try:
            client = connect_dask(args.dask)
        except DaskUnreachable as exc:
            raise CommandError(str(exc)) from None
    try:
        data = collect(settings, client)
    except KeyboardInterrupt:
        raise CommandError(f"interrupted; the finished points are in {out}/report.partial.json "
                           "(run again with --resume)") from None
    finally:
        if client is not None:
            client.close()
    write_json(out / "report.json", data)   # raw, before deriving
    written = write_outputs(data, out, readme, args.board, args.boards)
    print(markdown(data).split("## Software baselines")[0])
    print(f"wrote {', '.join(written)} ({data['meta']['wall_seconds'] / 60:.1f} min)")
    ok = all(p["bit_exact"] for p in data["sweep"]["points"]) and \
        all(n["verdict"] == "PASS" for n in data.get("conv", {}).get("nets", []))
    if not data["headline"]["rows"]:
        return 1
    return 0 if ok else 1

