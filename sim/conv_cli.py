"""``nmaccel verilog conv`` and ``nmaccel sim conv``: the adder / binary conv engine.

``nmaccel verilog conv [--preset NAME | --config FILE] [-o OUT.v]``
    Verilog of :class:`~nmaccel.hw.conv.engine.ConvEngine` for a :class:`ConvConfig`.
``nmaccel sim conv --net adder|binary --images K --seed S --json out.json``
    Runs K digits test images (drawn without replacement with seed S from the fixed
    360-image test split) through the RTL (cocotb + Verilator), layer by layer with each
    layer's input being the RTL's own output of the previous layer, and compares the logits
    with the integer golden model bit for bit. Writes the verdict, accuracy (RTL, golden,
    float) on those images, measured vs predicted cycles per image and PE utilization.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["HELP", "add_verilog_arguments", "run_verilog", "add_sim_arguments", "run_sim",
           "select_images", "simulate_net"]

HELP = "adder / binary convolution engine (AdderNet + AdaBin PEs, int8 first/last layers)"


def _preset(name: str):
    from nmaccel.spec.config import ConfigError, conv_preset
    try:
        return conv_preset(name)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    from nmaccel.model.digits import TEST_IMAGES
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"images must be an integer, not {text!r}") from None
    if not 1 <= k <= TEST_IMAGES:
        raise argparse.ArgumentTypeError(f"images must be in [1, {TEST_IMAGES}], not {k}")
    return k


def _seed(text: str) -> int:
    try:
        s = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be an integer, not {text!r}") from None
    if s < 0:
        raise argparse.ArgumentTypeError(f"seed must be >= 0, not {s}")
    return s


def _prob(text: str) -> float:
    try:
        p = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
    if not 0.0 <= p < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), not {p}")
    return p


def _config(args):
    from nmaccel.spec.config import ConfigError, ConvConfig
    from nmaccel.sim.cli import CommandError
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
    p.add_argument("--preset", type=_preset, default="digits",
                   help="ConvConfig preset (small, digits, ulx3s)")
    p.add_argument("--config", help="ConvConfig JSON file (overrides --preset)")
    p.add_argument("-o", "--output", help="write the Verilog here (default: stdout)")


def run_verilog(args) -> int:
    from nmaccel.sim.conv_harness import verilog_text
    text = verilog_text(_config(args))
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output} ({len(text.splitlines())} lines)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


# ----------------------------------------------------------------------------- sim
def add_sim_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--net", choices=("adder", "binary"), required=True, help="digits workload")
    p.add_argument("--images", type=_count, default=20, help="number of test images (K)")
    p.add_argument("--seed", type=_seed, default=0, help="seed drawing the K test images")
    p.add_argument("--bits", type=int, choices=(4, 6, 8), default=4,
                   help="adder layers' weight/activation bits (adder net)")
    p.add_argument("--preset", type=_preset, default="digits", help="ConvConfig preset")
    p.add_argument("--config", help="ConvConfig JSON file (overrides --preset)")
    p.add_argument("--simulator", choices=("verilator", "icarus"), default="verilator")
    p.add_argument("--chunk", type=int, default=60,
                   help="images per simulator invocation (progress granularity)")
    p.add_argument("--stall", type=_prob, default=0.0,
                   help="probability the output drops ready (back-pressure) each cycle")
    p.add_argument("--gaps", type=_prob, default=0.0,
                   help="probability the input idles each cycle")
    p.add_argument("--im2col-first", action="store_true",
                   help="run the first conv (C_in = 1) as a 1x1 layer on host-expanded 3x3 "
                        "windows (9 lanes busy instead of 1)")
    p.add_argument("--json", help="write the results here")


def select_images(k: int, seed: int):
    """Indices (sorted) of ``k`` test images drawn without replacement with ``seed``."""
    from nmaccel.model.digits import TEST_IMAGES
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(TEST_IMAGES, size=k, replace=False))


def simulate_net(net: str, cfg, images: int, seed: int = 0, bits: int = 4,
                 simulator: str = "verilator", chunk: int = 60, stall: float = 0.0,
                 gaps: float = 0.0, progress: bool = True, im2col_first: bool = False) -> dict:
    """RTL vs golden vs float on ``images`` digits test images; the result dictionary of
    ``nmaccel sim conv``."""
    from tqdm import tqdm

    from nmaccel.model.conv_nets import build_workload, float_accuracy, run_int_net
    from nmaccel.model.conv_ref import get_exp_cycles
    from nmaccel.model.digits import load_digits_split
    from nmaccel.sim.conv_harness import build, run_net

    if chunk < 1:
        raise ValueError(f"chunk must be a positive integer, not {chunk}")
    split = load_digits_split()
    idx = select_images(images, seed)
    x, y = split.test_images[idx], split.test_labels[idx]
    t0 = time.time()
    wl = build_workload(net, bits=bits, im2col_first=im2col_first)
    golden = run_int_net(wl.qnet, x)
    build(cfg, simulator)
    t1 = time.time()
    logits, counters = [], []
    for s in tqdm(range(0, len(x), chunk), desc=f"RTL {net}", unit="chunk",
                  disable=not progress):
        r = run_net(cfg, wl.qnet, x[s:s + chunk], simulator, seed=seed, stall=stall, gaps=gaps)
        logits.append(r["logits"])
        counters.extend(r["counters"])
    t2 = time.time()
    rtl = np.concatenate(logits)
    pred = [get_exp_cycles(j, cfg) for j in wl.qnet.jobs]
    names = [j.name for j in wl.qnet.jobs]
    measured = np.array([sum(c["cyc_total"] for c in per) for per in counters])
    predicted = sum(p["total"] for p in pred)
    macs = sum(p["macs"] for p in pred)
    pes = cfg.p_out * cfg.p_in
    layers = []
    for li, (name, p) in enumerate(zip(names, pred)):
        m = np.array([per[li]["cyc_total"] for per in counters])
        layers.append({
            "name": name, "mode": wl.qnet.jobs[li].mode, "predicted": p["total"],
            "measured_mean": float(m.mean()), "measured_max": int(m.max()),
            "compute": p["compute"], "load": p["load"], "overhead": p["overhead"],
            "finn_compute": p["compute"],
            "stall_cycles_mean": float(np.mean([per[li]["cyc_stall"] for per in counters])),
            "macs": p["macs"],
            "pe_utilization": p["macs"] / (pes * float(m.mean())),
            "pe_utilization_compute": p["macs"] / p["pe_slots"],
        })
    rtl_pred, gold_pred = rtl.argmax(1), golden.argmax(1)
    result = {
        "net": net, "bits": wl.qnet.bits, "im2col_first": im2col_first,
        "images": int(images), "seed": int(seed),
        "image_indices": idx.tolist(), "simulator": simulator, "config": cfg.to_dict(),
        "stall": stall, "gaps": gaps,
        "verdict": "PASS" if np.array_equal(rtl, golden) else "FAIL",
        "logits_identical": bool(np.array_equal(rtl, golden)),
        "predictions_identical": bool(np.array_equal(rtl_pred, gold_pred)),
        "accuracy": {"rtl": float((rtl_pred == y).mean()),
                     "golden": float((gold_pred == y).mean()),
                     "float": float_accuracy(wl.net, x, y)},
        "cycles_per_image": {"predicted": int(predicted), "measured_mean": float(measured.mean()),
                             "measured_min": int(measured.min()),
                             "measured_max": int(measured.max()),
                             "error": float(abs(measured.mean() - predicted) / predicted)},
        "pe_utilization": macs / (pes * float(measured.mean())),
        "layers": layers,
        "seconds": {"workload": t1 - t0, "rtl": t2 - t1},
        "rtl_cycles_per_second": float(measured.sum() / max(t2 - t1, 1e-9)),
    }
    return result


def run_sim(args) -> int:
    from nmaccel.sim.cli import CommandError
    from nmaccel.sim.simulators import SimulatorNotFound
    cfg = _config(args)
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
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
        print(f"  wrote {args.json}")
    return 0 if res["verdict"] == "PASS" else 1
