"""``nmaccel verilog conv`` and ``nmaccel sim conv``: the adder / binary conv engine.

``nmaccel verilog conv [--preset NAME | --config FILE] [-o OUT.v]``
    Verilog of :class:`~nmaccel.hw.conv.engine.ConvEngine` for a :class:`ConvConfig`.
``nmaccel sim conv --net adder|binary --images K --seed S --json out.json``
    Runs K digits test images through the RTL (:mod:`nmaccel.sim.conv_digits`) and compares
    the logits with the integer golden model bit for bit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nmaccel.cli.args import (
    CommandError,
    check_output_file,
    conv_preset,
    nonneg_int,
    positive_int,
    probability,
)
from nmaccel.files import write_atomic, write_json

__all__ = ["HELP", "add_verilog_arguments", "run_verilog", "add_sim_arguments", "run_sim"]

HELP = "adder / binary convolution engine (AdderNet + AdaBin PEs, int8 first/last layers)"


def _count(text: str) -> int:
    from nmaccel.model.digits import TEST_IMAGES
    k = positive_int(text)
    if k > TEST_IMAGES:
        raise argparse.ArgumentTypeError(f"images must be in [1, {TEST_IMAGES}], not {k}")
    return k


def _config(args):
    from nmaccel.spec.config import ConfigError, ConvConfig
    if getattr(args, "config", None):
        try:
            return ConvConfig.from_json(Path(args.config).read_text())
        except OSError as exc:
            raise CommandError(f"cannot read --config {args.config}: {exc.strerror}") from None
        except ConfigError as exc:
            raise CommandError(f"--config {args.config}: {exc}") from None
    return args.preset


# ----------------------------------------------------------------------------- verilog
def add_verilog_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", type=conv_preset, default="digits",
                   help="ConvConfig preset (small, digits, ulx3s)")
    p.add_argument("--config", help="ConvConfig JSON file (overrides --preset)")
    p.add_argument("-o", "--output", help="write the Verilog here (default: stdout)")


def run_verilog(args) -> int:
    from nmaccel.sim.conv_harness import verilog_text
    cfg = _config(args)
    out = check_output_file(args.output, "--output") if args.output else None
    text = verilog_text(cfg)
    if out:
        write_atomic(out, text)
        print(f"wrote {out} ({len(text.splitlines())} lines)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


# ----------------------------------------------------------------------------- sim
def add_sim_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--net", choices=("adder", "binary"), required=True, help="digits workload")
    p.add_argument("--images", type=_count, default=20, help="number of test images (K)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed drawing the K test images")
    p.add_argument("--bits", type=int, choices=(4, 6, 8), default=4,
                   help="adder layers' weight/activation bits (adder net)")
    p.add_argument("--preset", type=conv_preset, default="digits", help="ConvConfig preset")
    p.add_argument("--config", help="ConvConfig JSON file (overrides --preset)")
    p.add_argument("--simulator", choices=("verilator", "icarus"), default="verilator")
    p.add_argument("--chunk", type=positive_int, default=60,
                   help="images per simulator invocation (progress granularity)")
    p.add_argument("--stall", type=probability, default=0.0,
                   help="probability the output drops ready (back-pressure) each cycle")
    p.add_argument("--gaps", type=probability, default=0.0,
                   help="probability the input idles each cycle")
    p.add_argument("--im2col-first", action="store_true",
                   help="run the first conv (C_in = 1) as a 1x1 layer on host-expanded 3x3 "
                        "windows (9 lanes busy instead of 1)")
    p.add_argument("--json", help="write the results here")


def run_sim(args) -> int:
    from nmaccel.sim.conv_digits import simulate_net
    from nmaccel.sim.simulators import SimulatorNotFound
    cfg = _config(args)
    out = check_output_file(args.json, "--json") if args.json else None
    try:
        res = simulate_net(args.net, cfg, args.images, args.seed, args.bits, args.simulator,
                           args.chunk, args.stall, args.gaps, im2col_first=args.im2col_first)
    except SimulatorNotFound as exc:
        raise CommandError(str(exc)) from None
    acc, cyc = res["accuracy"], res["cycles_per_image"]
    print(f"conv {res['net']} net (bits {res['bits']}), {res['images']} images (seed "
          f"{res['seed']}) on {res['simulator']}, engine {cfg.p_out}x{cfg.p_in} PEs")
    print(f"  RTL vs golden logits: {res['verdict']} "
          f"(predictions identical: {res['predictions_identical']})")
    print(f"  accuracy  RTL {acc['rtl']:.4f}  golden {acc['golden']:.4f}  "
          f"float {acc['float']:.4f}")
    print(f"  cycles/image measured {cyc['measured_mean']:.1f} predicted {cyc['predicted']} "
          f"(error {100 * cyc['error']:.2f}%), PE utilization "
          f"{100 * res['pe_utilization']:.1f}%")
    for lay in res["layers"]:
        print(f"    {lay['name']:6s} {lay['mode']:7s} cycles {lay['measured_mean']:8.1f} "
              f"(pred {lay['predicted']}, FINN compute {lay['finn_compute']}) "
              f"util {100 * lay['pe_utilization']:.1f}%")
    if out:
        write_json(out, res)
        print(f"  wrote {out}")
    return 0 if res["verdict"] == "PASS" else 1
