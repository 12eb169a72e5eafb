"""``nmaccel verilog sta`` and ``nmaccel sim sta``.

``verilog sta`` writes the Verilog of :class:`~nmaccel.hw.sta.core.StaCore` for a preset,
optionally with the array shape and N:M pattern overridden.

``sim sta`` runs whole MiniLM-L6 encoder layers on the RTL (Verilator by default): every
command of the layer (GEMMs, on-chip attention with the streaming softmax, LayerNorm, GELU,
residual adds) runs on chip (:mod:`nmaccel.sim.sta_encoder`). It reports the cycles per
command class from the hardware counters next to the analytic model, the bit-exact verdict
against the integer golden layer and, with ``--layers all``, the sentence-embedding cosine
against the float model. ``--gemms-only`` runs the layer's GEMMs one by one instead (Q, K, V,
O, FFN1, FFN2 and per-head Q·Kᵀ from host memory; the MAC-array study).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from nmaccel.spec.config import STA_PRESETS, ConfigError, StaConfig, sta_preset
from nmaccel.sim.cli import nm, positive_int

__all__ = ["HELP", "add_verilog_arguments", "run_verilog", "add_sim_arguments", "run_sim",
           "config_from_args", "run_layer_gemms"]

HELP = "STA N:M sparse Transformer accelerator"
VERILOG_DESCRIPTION = ("Write the Verilog of the STA core (MAC array, buffers, controller, host "
                       "port) for a preset; --rows/--cols/--lanes/--n/--m override the preset.")
SIM_DESCRIPTION = ("Run MiniLM-L6 encoder layers entirely on the STA RTL (GEMMs, on-chip "
                   "attention and softmax, LayerNorm, GELU, residuals); report cycles per command "
                   "class (hardware counters and analytic model), the bit-exact verdict and, "
                   "with --layers all, the sentence-embedding cosine vs the float model.")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="ulx3s", help=f"STA preset ({', '.join(STA_PRESETS)})")
    for name in ("rows", "cols", "lanes", "n", "m"):
        p.add_argument(f"--{name}", type=positive_int, default=None,
                       help=f"override the preset's {name}")


def config_from_args(args) -> StaConfig:
    """The preset with the command line's overrides applied (a ``ValueError`` explains bad ones)."""
    cfg = sta_preset(args.preset)
    changes = {k: getattr(args, k) for k in ("rows", "cols", "lanes", "n", "m")
               if getattr(args, k, None) is not None}
    return cfg.replace(**changes) if changes else cfg


def add_verilog_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="write the Verilog here (default: standard output)")
    p.add_argument("--name", default="sta_core", help="top-level module name")


def run_verilog(args) -> int:
    cfg = config_from_args(args)
    from amaranth.back import verilog
    from nmaccel.hw.sta.core import StaCore
    text = verilog.convert(StaCore(cfg), name=args.name)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output} ({len(text.splitlines())} lines; {cfg.rows}x{cfg.cols} PEs "
              f"x {cfg.lanes} lanes, {cfg.n}:{cfg.m})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def add_sim_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--layer", type=int, default=None, help="MiniLM-L6 layer index (0..5)")
    p.add_argument("--layers", default=None,
                   help="'all' or a comma list of layer indices (consecutive layers chain on chip)")
    p.add_argument("--seq", type=positive_int, default=32, help="sequence length (real tokens)")
    p.add_argument("--text", action="append", default=None, metavar="TEXT",
                   help="embed this sentence instead of the packaged prose (repeatable)")
    p.add_argument("--gemms-only", action="store_true",
                   help="run the layer's GEMMs one by one from host memory (MAC-array study)")
    p.add_argument("--nm", type=nm, default="2:4",
                   help="weight pattern: N:M (the STA is built for it) or 'dense'")
    p.add_argument("--heads", type=int, default=12, help="heads whose Q·Kᵀ to run (0..12)")
    p.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"],
                   help="HDL simulator")
    p.add_argument("--json", default=None, metavar="PATH", help="write the results as JSON")
    p.add_argument("--waves", default=None, metavar="FILE", help="write an FST waveform")
    p.add_argument("--no-progress", action="store_true", help="hide progress output")


def run_layer_gemms(cfg: StaConfig, nm, layer: int, seq: int, heads: int = 12,
                    simulator: str = "verilator", waves=None, progress: bool = True) -> dict:
    """Run the layer's GEMMs on RTL; returns a JSON-ready dict (see module docstring)."""
    from nmaccel.model.sta_workloads import minilm_layer_gemms
    from nmaccel.sim.sta_rtl import run_gemms
    if nm is not None:
        cfg = cfg.replace(n=nm[0], m=nm[1])
    if not 0 <= heads <= 12:
        raise ValueError(f"heads must be in [0, 12], not {heads}")
    t0 = time.perf_counter()
    wl = minilm_layer_gemms(cfg, nm, seq, index=layer, heads=heads,
                            include=("linear", "scores") if heads else ("linear",))
    if progress:
        print(f"running {len(wl.gemms)} GEMMs on {simulator} ...", file=sys.stderr)
    runs = run_gemms(cfg, wl.gemms, wl.references, simulator=simulator, backdoor=True,
                     waves=waves)
    rows, totals = [], {"sparse": 0, "dense": 0, "stalls": 0, "cycles": 0, "predicted": 0}
    for r in runs:
        rows.append({"gemm": r["name"], "mode": r["mode"], "shape": list(r["shape"]),
                     "cycles": r["cycles"], "predicted": r["predicted"], "stalls": r["stalls"],
                     "utilization": round(r["utilization"], 4), "bit_exact": r["bit_exact"],
                     "programs": r["programs"]})
        totals[r["mode"]] += r["cycles"]
        totals["stalls"] += r["stalls"]
        totals["cycles"] += r["cycles"]
        totals["predicted"] += r["predicted"]
    all_exact = all(r["bit_exact"] for r in runs)
    run_s = sum(r["run_seconds"] for r in runs)
    total_cycles = totals["cycles"]
    return {"config": cfg.to_dict(), "layer": layer, "seq": seq,
            "nm": "dense" if nm is None else f"{nm[0]}:{nm[1]}", "simulator": simulator,
            "bit_exact": all_exact, "gemms": rows, "totals": totals,
            "sim_cycles_per_second": round(total_cycles / run_s) if run_s else None,
            "wall_seconds": round(time.perf_counter() - t0, 2)}


def format_gemm_table(res: dict) -> str:
    lines = [f"{'GEMM':8} {'mode':6} {'T x F x K':>16} {'cycles':>9} {'model':>9} {'stalls':>7} "
             f"{'util':>6} exact"]
    for r in res["gemms"]:
        shape = "x".join(str(v) for v in r["shape"])
        lines.append(f"{r['gemm']:8} {r['mode']:6} {shape:>16} {r['cycles']:>9} {r['predicted']:>9} "
                     f"{r['stalls']:>7} {r['utilization']:>6.3f} {'yes' if r['bit_exact'] else 'NO'}")
    t = res["totals"]
    lines.append(f"total cycles {t['cycles']} (model {t['predicted']}): sparse GEMM {t['sparse']}, "
                 f"dense GEMM {t['dense']}, stalls {t['stalls']}; "
                 f"simulation {res['sim_cycles_per_second']} cycles/s")
    return "\n".join(lines)


def parse_layers(args) -> list[int]:
    if args.layers is not None and args.layer is not None:
        raise ValueError("give either --layer or --layers, not both")
    if args.layers is None:
        layers = [0 if args.layer is None else args.layer]
    elif args.layers.strip().lower() == "all":
        layers = list(range(6))
    else:
        try:
            layers = [int(v) for v in args.layers.split(",")]
        except ValueError:
            raise ValueError(f"--layers must be 'all' or a comma list of integers, not "
                             f"{args.layers!r}") from None
    bad = [i for i in layers if not 0 <= i <= 5]
    if bad:
        raise ValueError(f"MiniLM-L6 layers are 0..5, not {bad}")
    return layers


def run_sim(args) -> int:
    try:
        cfg = config_from_args(args)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    layers = parse_layers(args)
    if not args.gemms_only:
        from nmaccel.sim.sta_encoder import format_encoder_table, run_encoder
        res = run_encoder(cfg, args.nm, layers, args.seq, args.text, args.simulator, args.waves,
                          progress=not args.no_progress)
        c = res["config"]
        print(f"MiniLM-L6 layers {res['layers']} ({res['nm']}) on STA {c['rows']}x{c['cols']}x"
              f"{c['lanes']} ({args.simulator}), whole layers on chip:")
        print(format_encoder_table(res))
        print("bit-exact vs integer golden layers: " + ("yes" if res["bit_exact"] else "NO"))
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2))
            print(f"wrote {args.json}")
        return 0 if res["bit_exact"] else 1
    if len(layers) != 1 or args.text:
        raise ValueError("--gemms-only runs one --layer on --seq tokens (no --layers/--text)")
    args.layer = layers[0]
    res = run_layer_gemms(cfg, args.nm, args.layer, args.seq, args.heads, args.simulator,
                          args.waves, progress=not args.no_progress)
    print(f"MiniLM-L6 layer {args.layer}, seq {args.seq}, {res['nm']} on STA "
          f"{cfg.rows}x{cfg.cols}x{cfg.lanes} ({args.simulator}):")
    print(format_gemm_table(res))
    print("bit-exact vs integer golden layer: " + ("yes" if res["bit_exact"] else "NO"))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
        print(f"wrote {args.json}")
    return 0 if res["bit_exact"] else 1
