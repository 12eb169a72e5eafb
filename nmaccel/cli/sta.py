"""``nmaccel verilog sta`` and ``nmaccel sim sta``.

``verilog sta`` writes the Verilog of :class:`~nmaccel.hw.sta.core.StaCore` for a preset,
optionally with the array shape and N:M pattern overridden.

``sim sta`` runs whole MiniLM-L6 encoder layers on the RTL (Verilator by default): every
command of the layer (GEMMs, on-chip attention with the streaming softmax, LayerNorm, GELU,
residual adds) runs on chip (:mod:`nmaccel.sim.sta_encoder`). It reports the cycles per
command class from the hardware counters next to the analytic model, the bit-exact verdict
against the integer golden layer and, with ``--layers all``, the sentence-embedding cosine
against the float model. ``--gemms-only`` runs the layer's GEMMs one by one instead
(:mod:`nmaccel.sim.sta_gemms`; the MAC-array study).
"""

from __future__ import annotations

import argparse
import sys

from nmaccel.cli.args import (
    CommandError,
    check_output_file,
    check_shipped,
    layer,
    nm,
    positive_int,
)
from nmaccel.files import write_atomic, write_json
from nmaccel.model.pruning_methods import WEIGHT_CHOICES
from nmaccel.spec.config import STA_PRESETS, ConfigError, StaConfig, sta_preset

__all__ = ["HELP", "add_verilog_arguments", "run_verilog", "add_sim_arguments", "run_sim",
           "config_from_args", "parse_layers"]

HELP = "STA N:M sparse Transformer accelerator"
VERILOG_DESCRIPTION = ("Write the Verilog of the STA core (MAC array, buffers, controller, host "
                       "port) for a preset; --rows/--cols/--lanes/--n/--m override the preset.")
SIM_DESCRIPTION = ("Run MiniLM-L6 encoder layers entirely on the STA RTL (GEMMs, on-chip "
                   "attention and softmax, LayerNorm, GELU, residuals); report cycles per command "
                   "class (hardware counters and analytic model), the bit-exact verdict and, "
                   "with --layers all, the sentence-embedding cosine vs the float model.")


#: ``--nm``'s default (2:4); an ``--nm`` given explicitly may adjust the preset's array.
NM_DEFAULT = (2, 4)

#: StaConfig fields that have their own flag (``--softmax-lanes`` for softmax_lanes).
OVERRIDES = ("rows", "cols", "lanes", "n", "m", "softmax_lanes", "sdram_mhz")


OVERRIDE_HELP = {"sdram_mhz": "weights and parameters in the ULX3S's SDRAM at this clock (MHz): "
                              "the core gets the SDRAM controller and the weight-fetch engine, "
                              "and the program fetches them itself (StaConfig sdram_mhz)"}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="ulx3s", help=f"STA preset ({', '.join(STA_PRESETS)})")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="StaConfig JSON file (as `nmaccel config` prints; replaces --preset): "
                        "sets any field, e.g. act_bits or softmax_out_bits")
    for name in OVERRIDES:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=positive_int,
                       default=None, help=OVERRIDE_HELP.get(name, f"override the preset's {name}"))


def base_config(args) -> StaConfig:
    """``--config``'s StaConfig, else the ``--preset`` (a ``CommandError`` explains bad
    ones)."""
    try:
        if getattr(args, "config", None):
            from pathlib import Path
            try:
                text = Path(args.config).read_text()
            except OSError as exc:
                raise CommandError(f"--config {args.config}: {exc.strerror or exc}") from None
            return StaConfig.from_json(text)
        return sta_preset(args.preset)
    except ConfigError as exc:
        raise CommandError(f"--config {args.config}: {exc}" if getattr(args, "config", None)
                           else str(exc)) from None


def _base_name(args) -> str:
    return f"--config {args.config}" if getattr(args, "config", None) else args.preset


def explicit_overrides(args) -> dict:
    return {k: getattr(args, k) for k in OVERRIDES if getattr(args, k, None) is not None}


def config_from_args(args) -> StaConfig:
    """The preset with the command line's overrides applied (a ``CommandError`` explains
    bad ones)."""
    cfg = base_config(args)
    try:
        changes = explicit_overrides(args)
        return cfg.replace(**changes) if changes else cfg
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def fitted_config(args, pattern, layer: bool = True, extra=None,
                  derive: bool = True) -> StaConfig:
    """The config ``sim sta`` runs: the preset (or ``--config``) with the command line's
    overrides and the N:M ``pattern`` (``None``: the config's own). With ``derive`` (an
    ``--nm`` given) made consistent in one step by :func:`~nmaccel.spec.sta_isa.fit_pattern`
    (``layer``: with the rules of an encoder layer on chip; ``extra``: a further rule, see
    there), changing only fields not set explicitly, and what it changed is printed as one
    note on standard error. If that is impossible, or (without ``derive``) the config breaks
    a rule, one ``CommandError`` lists every rule broken."""
    import dataclasses

    from nmaccel.spec.sta_isa import config_problems, fit_pattern
    base = base_config(args)
    explicit = explicit_overrides(args)
    values = dict(dataclasses.asdict(base), **explicit)
    n, m = pattern if pattern is not None else (values["n"], values["m"])
    where = _base_name(args) + "".join(f" --{k.replace('_', '-')} {v}"
                                       for k, v in explicit.items())
    what = f"--nm {n}:{m} on {where}" if pattern is not None and derive else where
    if not derive:
        values.update(n=n, m=m)
        why = config_problems(values, layer)
        if not why and extra is not None:
            why = [w for w in [extra(StaConfig(**values))] if w]
        if why:
            raise CommandError(f"{what}: every rule broken: " + "; ".join(why))
        return StaConfig(**values)
    try:
        cfg, changes = fit_pattern(values, n, m, fixed=explicit, layer=layer, extra=extra)
    except ConfigError as exc:
        raise CommandError(f"{what}: {exc}") from None
    if changes:
        print(f"note: {what}: {', '.join(changes)}", file=sys.stderr)
    return cfg


def add_verilog_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="write the Verilog here (default: standard output)")
    p.add_argument("--name", default="sta_core", help="top-level module name")


def run_verilog(args) -> int:
    cfg = config_from_args(args)
    out = check_output_file(args.output, "--output") if args.output else None
    from nmaccel.sim.build_cache import sta_verilog
    text = sta_verilog(cfg, name=args.name)
    if out:
        write_atomic(out, text)
        print(f"wrote {out} ({len(text.splitlines())} lines; {cfg.rows}x{cfg.cols} PEs "
              f"x {cfg.lanes} lanes, {cfg.n}:{cfg.m})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def add_sim_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--layer", type=layer, default=None, help="MiniLM-L6 layer index")
    p.add_argument("--layers", default=None,
                   help="'all' or a comma list of layer indices (consecutive layers chain on chip)")
    p.add_argument("--seq", type=positive_int, default=32, help="sequence length (real tokens)")
    p.add_argument("--text", action="append", default=None, metavar="TEXT",
                   help="embed this sentence instead of the packaged prose (repeatable); one "
                        "longer than the config's max_seq tokens is refused unless --truncate")
    p.add_argument("--truncate", action="store_true",
                   help="cut each --text longer than max_seq tokens to max_seq (one warning "
                        "line per cut text)")
    p.add_argument("--gemms-only", action="store_true",
                   help="run the layer's GEMMs one by one from host memory (MAC-array study)")
    p.add_argument("--nm", type=nm, default=NM_DEFAULT,
                   help="weight pattern: N:M (the STA is built for it; an array that does not "
                        "fit it is adjusted, with a note) or 'dense' (default 2:4)")
    p.add_argument("--weights", choices=WEIGHT_CHOICES, default="auto",
                   help="N:M weights: 'shipped' the distilled student shipped for the pattern "
                        "(2:4, 1:4), 'magnitude' the dense model magnitude-pruned (baseline), "
                        "'auto' shipped where one ships, else magnitude")
    p.add_argument("--heads", type=int, default=None,
                   help="with --gemms-only: heads whose Q·Kᵀ to run (default: all)")
    p.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"],
                   help="HDL simulator")
    p.add_argument("--json", default=None, metavar="PATH", help="write the results as JSON")
    p.add_argument("--waves", default=None, metavar="FILE", help="write an FST waveform")
    p.add_argument("--no-progress", action="store_true", help="hide progress output")


def parse_layers(args) -> list[int]:
    """The layer indices of ``--layer``/``--layers``."""
    from nmaccel.model.minilm import MiniLMConfig
    n = MiniLMConfig().layers
    if args.layers is not None and args.layer is not None:
        raise CommandError("give either --layer or --layers, not both")
    if args.layers is None:
        return [0 if args.layer is None else args.layer]
    if args.layers.strip().lower() == "all":
        return list(range(n))
    try:
        layers = [int(v) for v in args.layers.split(",")]
    except ValueError:
        raise CommandError(f"--layers must be 'all' or a comma list of integers, not "
                           f"{args.layers!r}") from None
    bad = [i for i in layers if not 0 <= i < n]
    if bad:
        raise CommandError(f"MiniLM-L6 layers are 0..{n - 1}, not {bad}")
    return layers


def _check_pattern(args) -> None:
    """``--n``/``--m`` and ``--nm`` name the same thing: refuse a disagreement."""
    if args.nm is not None and (args.n, args.m) != (None, None):
        want = (args.n, args.m)
        if any(v is not None and v != got for v, got in zip(want, args.nm)):
            raise CommandError(f"--nm {args.nm[0]}:{args.nm[1]} disagrees with "
                               f"--n {args.n} / --m {args.m}: give one of them")


def run_sim(args) -> int:
    _check_pattern(args)
    extra = None
    if not args.gemms_only:                 # an encoder layer's shapes must fit the array
        from nmaccel.model.minilm import MiniLMConfig
        from nmaccel.model.sta_layer import layer_fit_problem

        def extra(c):
            why = layer_fit_problem(MiniLMConfig(), c, min(args.seq, c.max_seq), args.nm)
            return f"MiniLM-L6: {why}" if why else None
    cfg = fitted_config(args, args.nm, layer=not args.gemms_only, extra=extra,
                        derive=args.nm is not NM_DEFAULT)
    layers = parse_layers(args)
    out = check_output_file(args.json, "--json") if args.json else None
    waves = check_output_file(args.waves, "--waves") if args.waves else None
    if args.truncate and not args.text:
        raise CommandError("--truncate applies to --text (the packaged prose has --seq tokens)")
    if not args.gemms_only:
        if args.heads is not None:
            raise CommandError("--heads applies to --gemms-only (a whole layer runs every head)")
        from nmaccel.sim.sta_encoder import format_encoder_table, run_encoder
        if args.weights == "shipped":
            check_shipped(args.nm)
        res = run_encoder(cfg, args.nm, layers, args.seq, args.text, args.simulator, waves,
                          progress=not args.no_progress, weights=args.weights,
                          truncate=args.truncate)
        c = res["config"]
        print(f"MiniLM-L6 layers {res['layers']} ({res['nm']}, {res['weights']} weights) on STA "
              f"{c['rows']}x{c['cols']}x{c['lanes']} ({args.simulator}), whole layers on chip:")
        print(format_encoder_table(res))
        print("bit-exact vs integer golden layers: " + ("yes" if res["bit_exact"] else "NO"))
        s = res["seconds"]
        print(f"simulation {res['sim_cycles_per_second']} cycles/s free-running, "
              f"{res['end_to_end_cycles_per_second']} end to end; {res['wall_seconds']:.1f} s: "
              f"prepare {s['prepare']:.1f}, build {s['build']:.1f}, simulator "
              f"{s['simulator']:.1f}, check {s['check']:.1f}")
    else:
        if len(layers) != 1 or args.text:
            raise CommandError("--gemms-only runs one --layer on --seq tokens "
                               "(no --layers/--text)")
        from nmaccel.sim.sta_gemms import format_gemm_table, run_layer_gemms
        res = run_layer_gemms(cfg, args.nm, layers[0], args.seq, args.heads, args.simulator,
                              waves, progress=not args.no_progress)
        print(f"MiniLM-L6 layer {layers[0]}, seq {args.seq}, {res['nm']} on STA "
              f"{cfg.rows}x{cfg.cols}x{cfg.lanes} ({args.simulator}):")
        print(format_gemm_table(res))
        print("bit-exact vs integer golden layer: " + ("yes" if res["bit_exact"] else "NO"))
    if out:
        write_json(out, res)
        print(f"wrote {out}")
    return 0 if res["bit_exact"] else 1
