"""``nmaccel demo``: real workloads on the RTL next to PyTorch (:mod:`nmaccel.studies.demo`)."""

from __future__ import annotations

import argparse
import sys

from nmaccel.cli.args import (
    CommandError,
    board,
    check_output_file,
    check_shipped,
    jobs,
    layer,
    nm,
    positive_int,
    preset,
)
from nmaccel.files import write_json
from nmaccel.model.pruning_methods import WEIGHT_CHOICES
from nmaccel.spec.config import STA_PRESETS

__all__ = ["HELP", "DESCRIPTION", "add_arguments", "run"]

HELP = "MiniLM-L6 (2:4 and dense) and digits conv nets on the RTL vs PyTorch CPU"
DESCRIPTION = ("Runs MiniLM-L6 layer 0 (32 tokens) on the STA RTL in an N:M pattern and in "
               "dense mode, and digits test images through the adder and binary conv nets on "
               "the conv engine RTL (Verilator); prints bit-exact verdicts, cycles, "
               "utilization, projected time at the board's post-route fmax and PyTorch CPU "
               "time for the same work, and draws one PNG. --golden adds the golden-pipeline "
               "embedding table (cosine of int8 dense / N:M vs float).")


def _images(text: str) -> int:
    from nmaccel.model.digits import TEST_IMAGES
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--images must be an integer, not {text!r}") from None
    if not 0 <= v <= TEST_IMAGES:
        raise argparse.ArgumentTypeError(f"--images must be in 0..{TEST_IMAGES}, not {v}")
    return v


def add_arguments(p) -> None:
    p.add_argument("--preset", type=preset, default="ulx3s_board",
                   help=f"STA preset ({', '.join(STA_PRESETS)})")
    p.add_argument("--nm", type=nm, default="2:4",
                   help="N:M pattern of the sparse STA run (its RTL is built for it)")
    p.add_argument("--weights", choices=WEIGHT_CHOICES, default="auto",
                   help="weights of the N:M run: 'shipped' the distilled student (2:4, 1:4), "
                        "'magnitude' the dense model magnitude-pruned (baseline), 'auto' "
                        "shipped where one ships, else magnitude")
    p.add_argument("--layer", type=layer, default=0, help="MiniLM-L6 layer")
    p.add_argument("--seq", type=positive_int, default=32, help="sequence length (real tokens)")
    p.add_argument("--images", type=_images, default=50,
                   help="digits test images per conv net (0 skips the conv engine)")
    p.add_argument("--board", type=board, default="ulx3s",
                   help="board whose post-route fmax projects time")
    p.add_argument("--jobs", type=jobs, default=2, help="parallel simulator processes")
    p.add_argument("--png", default="nmaccel_demo.png", help="where to draw the PNG")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON")
    p.add_argument("--golden", action="store_true",
                   help="also embed 8 sentences through the golden pipelines (float, int8 "
                        "dense, int8 N:M) and print their cosine to float")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _preset_name(cfg) -> str:
    return next(name for name, c in STA_PRESETS.items() if c == cfg)


def _check_fits(cfg, nm_pattern, seq: int) -> None:
    """The layer must map onto the preset in both runs (sparse and dense), before any work."""
    from nmaccel.model.minilm import MiniLMConfig
    from nmaccel.model.sta_layer import layer_fit_problem
    for pattern in (nm_pattern, None):
        run_cfg = cfg if pattern is None else cfg.replace(n=pattern[0], m=pattern[1])
        why = layer_fit_problem(MiniLMConfig(), run_cfg, seq, pattern)
        if why:
            raise CommandError(why)


def run(args) -> int:
    from nmaccel.model.minilm import DEMO_SENTENCES
    from nmaccel.sim.simulators import SimulatorNotFound
    from nmaccel.studies.demo import (
        CONV_PRESET,
        demo_results,
        format_rtl_table,
        format_sdram_line,
        format_table,
        plot_demo,
        rtl_demo,
    )
    if args.nm is None:
        raise CommandError("--nm must be an N:M pattern (the dense run is always included), "
                           "not 'dense'")
    if args.weights == "shipped":
        check_shipped(args.nm)
    png = check_output_file(args.png, "--png") if args.png else None
    out = check_output_file(args.json, "--json") if args.json else None
    _check_fits(args.preset, args.nm, args.seq)
    name = _preset_name(args.preset)
    try:
        res = rtl_demo(name, args.nm, args.layer, args.seq, args.images, args.board,
                       args.jobs, progress=not args.no_progress, weights=args.weights)
    except SimulatorNotFound as exc:
        raise CommandError(str(exc)) from None
    r0 = res["rows"][0]
    print(f"STA {name} ({args.preset.rows}x{args.preset.cols} PEs x {args.preset.lanes} "
          f"lanes) and conv engine `{CONV_PRESET}` on Verilator; PyTorch "
          f"{r0['torch_fp32_us']:.0f} µs is the best of the timed calls on this machine's CPU:")
    print(format_rtl_table(res))
    fmax = r0["fmax_mhz"]
    print(f"{res['nm']} speedup over dense on the same array: {r0['speedup_vs_dense']:.2f}x; "
          + (f"time @ fmax = cycles / {fmax:.1f} MHz (post-route, {args.board} board build)"
             if fmax else f"fmax not measured: {res.get('fmax_note') or 'no board build'}")
          + f"; wall {res['seconds']['total']:.0f} s (build {res['seconds']['build']:.0f} s).")
    print(f"One layer {format_sdram_line(res)}.")
    if png:
        plot_demo(res, png)
        print(f"wrote {png}")
    if args.golden:
        texts = DEMO_SENTENCES
        gold = demo_results(args.preset, [args.nm], texts, progress=not args.no_progress)
        print(f"\nGolden pipelines, MiniLM-L6, {len(texts)} sentences "
              f"({sum(gold['tokens'])} tokens); cos = cosine to the float32 dense embedding; "
              "N:M magnitude: pruned without fine-tuning (baseline), shipped: the distilled "
              "student that ships with nmaccel:")
        print(format_table(gold))
        res["golden"] = gold
    if out:
        write_json(out, res)
        print(f"wrote {out}")
    ok = all(r["bit_exact"] for r in res["rows"])
    if not ok:
        print("NOT bit-exact: see the rows marked NO", file=sys.stderr)
    return 0 if ok else 1
