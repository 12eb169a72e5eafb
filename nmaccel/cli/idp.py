"""``nmaccel idp``: IDP vs one-shot magnitude pruning vs SR-STE (:mod:`nmaccel.studies.idp`)."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

from nmaccel.cli.args import (
    CommandError,
    check_output_file,
    nm_list,
    nonneg_int,
    positive_int,
    preset,
)
from nmaccel.files import write_atomic, write_json
from nmaccel.model.pruning_methods import (
    BATCHINGS,
    DEFAULT_PATTERNS,
    METHOD_SPECS,
    OBJECTIVE_DEFAULTS,
    objective_changes,
)

__all__ = ["HELP", "DESCRIPTION", "add_arguments", "run", "command_line"]

HELP = "N:M pruning study: IDP vs one-shot vs SR-STE (digits Transformer, MiniLM-L6)"
DESCRIPTION = """IDP vs one-shot magnitude pruning vs SR-STE at equal fine-tuning budgets.

Digits study (default): per seed, train the dense digits Transformer, prune a copy per N:M
pattern and method for the same number of optimizer steps, measure test accuracy (and the
integer golden model's at --int-pattern). MiniLM study (--study minilm or both): layer-wise then
end-to-end quantization-aware distillation of N:M MiniLM-L6 students per pattern, method and
seed; cosine and retrieval agreement with the dense model (float and integer pipeline) on the
held-out corpus sentences, the shipped students' metrics and (--minilm-rtl-sentences) the
shipped students on the STA RTL. --study minilm-ship trains one student (--minilm-patterns,
the first of --methods, --minilm-seed) and writes it into the package (--minilm-ship-dir).
RTL study (--study rtl): one IDP model classified on the STA RTL. See nmaccel.studies.idp."""



def _method_list(text: str) -> list[str]:
    methods = [p.strip() for p in text.split(",") if p.strip()]
    for meth in methods:
        if meth not in METHOD_SPECS:
            raise argparse.ArgumentTypeError(
                f"unknown method {meth!r}; expected some of: {', '.join(METHOD_SPECS)}")
    if not methods:
        raise argparse.ArgumentTypeError("methods must name at least one method")
    return methods


def _sparse_patterns(text: str) -> list[tuple[int, int]]:
    pats = nm_list(text)
    if any(p is None for p in pats) or not pats:
        raise argparse.ArgumentTypeError("patterns must be N:M patterns such as 2:4 (not 'dense')")
    return pats


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", choices=("digits", "minilm", "both", "rtl", "minilm-ship"),
                   default="digits",
                   help="which study to run; 'rtl': train one IDP model at --int-pattern "
                        "(seed --rtl-seed) and classify the digits test set on the STA RTL")
    p.add_argument("--patterns", type=_sparse_patterns, default=DEFAULT_PATTERNS,
                   help="target N:M patterns (digits)")
    p.add_argument("--methods", type=_method_list, default="idp,oneshot,srste",
                   help=f"pruning methods, some of {', '.join(METHOD_SPECS)}")
    p.add_argument("--seeds", type=positive_int, default=3,
                   help="number of seeds (0..S-1): each trains its own dense model")
    p.add_argument("--budget", type=int, default=1000,
                   help="fine-tuning budget per pruned model, in optimizer steps "
                        "(batch --batch-size); IDP splits it over its phases")
    p.add_argument("--dense-steps", type=positive_int, default=3000,
                   help="optimizer steps to train each dense model")
    p.add_argument("--batch-size", type=positive_int, default=64, help="mini-batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate (AdamW, "
                   "cosine decay per phase)")
    p.add_argument("--layers", type=positive_int, default=2, help="encoder layers")
    p.add_argument("--idp-final-share", type=float, default=None, metavar="F",
                   help="give IDP's target phase this fraction of the budget (the earlier phases "
                        "share the rest equally); default: equal split over all phases")
    p.add_argument("--int-pattern", type=nm_list, default="2:4",
                   help="run the integer golden model of the IDP model at this pattern "
                        "('' to skip)")
    p.add_argument("--preset", type=preset, default="ulx3s",
                   help="STA preset whose number formats the integer model follows")
    p.add_argument("--json", type=pathlib.Path, default=pathlib.Path("reports/idp_digits.json"),
                   help="digits results JSON")
    p.add_argument("--md", type=pathlib.Path, default=pathlib.Path("reports/idp_digits.md"),
                   help="digits results Markdown")
    p.add_argument("--png", type=pathlib.Path, default=pathlib.Path("reports/idp_digits.png"),
                   help="digits accuracy-vs-sparsity plot")
    g = p.add_argument_group("MiniLM study")
    g.add_argument("--minilm-patterns", type=_sparse_patterns, default="2:4,1:4",
                   help="target N:M patterns (MiniLM)")
    g.add_argument("--minilm-layer-budget", type=nonneg_int, default=100,
                   help="layer-wise stage: optimizer steps per layer (batch 8; 0 skips it)")
    g.add_argument("--minilm-layer-texts", type=positive_int, default=1000,
                   help="layer-wise stage: training sentences it uses (the first N)")
    g.add_argument("--minilm-budget", type=int, default=300,
                   help="end-to-end stage: optimizer steps over the whole student")
    g.add_argument("--minilm-lr", type=float, default=1e-4,
                   help="end-to-end learning rate (AdamW, cosine decay)")
    g.add_argument("--minilm-batch-size", type=positive_int, default=16,
                   help="sentences per end-to-end mini-batch")
    g.add_argument("--minilm-batching", choices=BATCHINGS,
                   default=OBJECTIVE_DEFAULTS["batching"],
                   help="end-to-end batches: sentences of similar length, or a sentence and its "
                        "nearest training sentences under the teacher")
    g.add_argument("--minilm-rank-weight", type=float,
                   default=OBJECTIVE_DEFAULTS["rank_weight"],
                   help="weight of the listwise term that distils each sentence's in-batch "
                        "neighbour order (0: off)")
    g.add_argument("--minilm-rank-tau", type=float, default=OBJECTIVE_DEFAULTS["rank_tau"],
                   help="temperature of the neighbour-order term")
    g.add_argument("--minilm-seeds", type=positive_int, default=3, help="number of seeds")
    g.add_argument("--minilm-no-qat", action="store_true",
                   help="end-to-end stage in float (no int8 fake quantization)")
    g.add_argument("--minilm-no-int8", action="store_true",
                   help="measure the compared students in float only (the integer pipeline "
                        "takes ~3 min per student; the shipped students are always measured "
                        "both ways)")
    g.add_argument("--minilm-rtl-sentences", type=nonneg_int, default=0,
                   help="run every shipped student on the STA RTL (ulx3s: the ulx3s_board "
                        "array with buffers for 64-token layers; all six layers) for this "
                        "many held-out sentences (0: skip)")
    g.add_argument("--minilm-seed", type=nonneg_int, default=0,
                   help="--study minilm-ship: the seed of the shipped student")
    g.add_argument("--minilm-continue", action="store_true",
                   help="--study minilm-ship: continue from the student file already in "
                        "--minilm-ship-dir (--minilm-budget more end-to-end steps, no "
                        "layer-wise stage: give --minilm-layer-budget 0); the file's "
                        "provenance keeps the chain of runs")
    g.add_argument("--minilm-ship-dir", type=pathlib.Path, default=pathlib.Path("model/trained"),
                   help="--study minilm-ship: folder to write the student file into (in the "
                        "source tree, model/trained is where the package's files live)")
    g.add_argument("--minilm-json", type=pathlib.Path,
                   default=pathlib.Path("reports/idp_minilm.json"), help="MiniLM results JSON")
    g.add_argument("--minilm-md", type=pathlib.Path,
                   default=pathlib.Path("reports/idp_minilm.md"), help="MiniLM results Markdown")
    g = p.add_argument_group("RTL study (--study rtl)")
    g.add_argument("--rtl-seed", type=int, default=0, help="seed of the dense + IDP model")
    g.add_argument("--rtl-images", type=positive_int, default=360,
                   help="test images to classify on the RTL (the test set has 360)")
    g.add_argument("--simulator", choices=("verilator", "icarus"), default="verilator",
                   help="HDL simulator (cocotb)")
    g.add_argument("--rtl-link", choices=("backdoor", "uart"), default="backdoor",
                   help="backdoor: the core alone, buffers loaded directly; uart: the board top, "
                        "every word through the host driver and the simulated UART")
    g.add_argument("--rtl-json", type=pathlib.Path,
                   default=pathlib.Path("reports/idp_digits_rtl.json"), help="RTL results JSON")
    g.add_argument("--rtl-md", type=pathlib.Path,
                   default=pathlib.Path("reports/idp_digits_rtl.md"), help="RTL results Markdown")
    p.add_argument("--render", type=pathlib.Path, default=None, metavar="JSON",
                   help="rewrite --md/--png (digits) or --minilm-md (MiniLM) from a saved "
                        "study JSON (no training)")
    p.add_argument("--baseline", type=pathlib.Path, default=None, metavar="JSON",
                   help="digits: add paired per-seed differences of this run's IDP against the "
                        "methods of a saved digits JSON (e.g. an --idp-final-share ablation vs "
                        "the main table)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted digits or MiniLM study from <json>.partial "
                        "(the seeds it finished are not trained again)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def command_line(args, study: str) -> str:
    """The ``nmaccel idp`` command that reproduces ``args`` for ``study`` (every option spelled
    out)."""
    def pats(ps):
        return ",".join(f"{n}:{m}" for n, m in ps)
    parts = ["nmaccel idp", f"--study {study}", f"--threads {args.threads}"]
    if study == "digits":
        ip = [p for p in args.int_pattern if p is not None]
        parts += [f"--patterns {pats(args.patterns)}", f"--methods {','.join(args.methods)}",
                  f"--seeds {args.seeds}", f"--budget {args.budget}",
                  f"--dense-steps {args.dense_steps}", f"--batch-size {args.batch_size}",
                  *([f"--idp-final-share {args.idp_final_share:g}"]
                    if args.idp_final_share is not None else []),
                  f"--lr {args.lr:g}", f"--layers {args.layers}",
                  f"--int-pattern '{pats(ip)}'", f"--preset {args._preset_name}",
                  f"--json {args.json}", f"--md {args.md}", f"--png {args.png}"]
    else:
        parts += [f"--methods {','.join(args.methods)}",
                  f"--minilm-patterns {pats(args.minilm_patterns)}",
                  f"--minilm-layer-budget {args.minilm_layer_budget}",
                  f"--minilm-layer-texts {args.minilm_layer_texts}",
                  f"--minilm-budget {args.minilm_budget}", f"--minilm-lr {args.minilm_lr:g}",
                  f"--minilm-batch-size {args.minilm_batch_size}",
                  *(["--minilm-no-qat"] if args.minilm_no_qat else [])]
        objective = _objective(args)
        if "batching" in objective:
            parts.append(f"--minilm-batching {objective['batching']}")
        if "rank_weight" in objective or "rank_tau" in objective:
            parts += [f"--minilm-rank-weight {args.minilm_rank_weight:g}",
                      f"--minilm-rank-tau {args.minilm_rank_tau:g}"]
        if study != "minilm-ship" and args.minilm_no_int8:
            parts.append("--minilm-no-int8")
        if study == "minilm-ship":
            parts += [f"--minilm-seed {args.minilm_seed}",
                      *(["--minilm-continue"] if args.minilm_continue else [])]
        else:
            parts += [f"--minilm-seeds {args.minilm_seeds}",
                      f"--minilm-rtl-sentences {args.minilm_rtl_sentences}",
                      f"--minilm-json {args.minilm_json}", f"--minilm-md {args.minilm_md}"]
    return " ".join(parts)


def _objective(args) -> dict:
    """The end-to-end objective options that differ from the defaults (checked)."""
    try:
        return objective_changes({"batching": args.minilm_batching,
                                  "rank_weight": args.minilm_rank_weight,
                                  "rank_tau": args.minilm_rank_tau})
    except ValueError as exc:
        raise CommandError(f"--minilm-batching/--minilm-rank-weight/--minilm-rank-tau: {exc}") \
            from None


def run(args) -> int:
    from nmaccel.model.idp import check_budget
    from nmaccel.studies.idp import digits_markdown, digits_plot, digits_study
    try:
        check_budget(args.budget, "--budget")
        check_budget(args.minilm_budget, "--minilm-budget")
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    _objective(args)
    for opt in ("lr", "minilm_lr"):
        if not getattr(args, opt) > 0:
            raise CommandError(f"--{opt.replace('_', '-')} must be a positive number, "
                               f"not {getattr(args, opt)}")
    baseline = None
    if args.baseline is not None:
        baseline = _read_json(args.baseline, "--baseline")
        if baseline.get("study") != "digits":
            raise CommandError(f"--baseline: {args.baseline} is not a digits study JSON")
    if args.render is not None:
        res = _read_json(args.render, "--render")
        check_output_file(args.md if res.get("study") == "digits" else args.minilm_md)
        if res.get("study") == "digits":
            write_atomic(args.md, digits_markdown(res, res["command"], res["wall_seconds"],
                                                  baseline, str(args.baseline)))
            digits_plot(res, args.png)
            print(f"wrote {args.md} and {args.png} from {args.render}")
        elif res.get("study") == "minilm":
            from nmaccel.model.minilm_study import minilm_markdown
            write_atomic(args.minilm_md, minilm_markdown(res, res["command"], res["wall_seconds"],
                                                         res.get("shipped"), res.get("rtl")))
            print(f"wrote {args.minilm_md} from {args.render}")
        else:
            raise CommandError(f"--render: {args.render} is not a digits or MiniLM study JSON")
        return 0
    _check_outputs(args)
    import torch
    torch.set_num_threads(args.threads)
    args._preset_name = next((name for name, c in _presets().items() if c == args.preset),
                             "ulx3s")
    ip = [p for p in args.int_pattern if p is not None]
    if len(ip) > 1:
        raise CommandError("--int-pattern takes one pattern")
    if args.study == "rtl":
        return _run_rtl(args, ip)
    if args.study == "minilm-ship":
        return _run_minilm_ship(args)
    if args.study in ("digits", "both"):
        start = time.perf_counter()
        partial = args.json.with_name(args.json.name + ".partial")
        if partial.exists() and not args.resume:
            print(f"note: {partial} holds an interrupted run; --resume continues it",
                  file=sys.stderr)
        try:
            res = digits_study(args.patterns, args.methods, args.seeds, args.budget,
                               args.dense_steps, args.batch_size, args.lr, args.layers,
                               ip[0] if ip else None, args.preset,
                               progress=not args.no_progress,
                               idp_final_share=args.idp_final_share, checkpoint=partial,
                               resume=args.resume)
        except KeyboardInterrupt:
            raise CommandError(f"interrupted; the finished seeds are in {partial} "
                               "(run again with --resume)") from None
        partial.unlink(missing_ok=True)
        wall = time.perf_counter() - start
        command = command_line(args, "digits")
        res["command"], res["wall_seconds"] = command, wall
        write_json(args.json, res, indent=1)
        md = digits_markdown(res, command, wall, baseline, str(args.baseline))
        write_atomic(args.md, md)
        digits_plot(res, args.png)
        print(md)
    if args.study in ("minilm", "both"):
        _run_minilm(args)
    return 0


def _read_json(path: pathlib.Path, option: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CommandError(f"{option}: cannot read {path}: {exc}") from None


def _presets() -> dict:
    from nmaccel.spec.config import STA_PRESETS
    return STA_PRESETS


def _check_outputs(args) -> None:
    """Every file the chosen study writes must be writable before it starts (a study runs
    for minutes to hours)."""
    files = {"rtl": ("rtl_json", "rtl_md"), "digits": ("json", "md", "png"),
             "minilm": ("minilm_json", "minilm_md"), "minilm-ship": ()}
    studies = ("digits", "minilm") if args.study == "both" else (args.study,)
    for study in studies:
        for name in files[study]:
            check_output_file(getattr(args, name), "--" + name.replace("_", "-"))


def _uart_runner():
    from nmaccel.boards.simulated import run_over_uart
    return run_over_uart


def _run_rtl(args, ip) -> int:
    """``--study rtl``: the IDP-pruned digits Transformer classified on the STA RTL."""
    from nmaccel.model.digits_transformer import digits_int_program, predict
    from nmaccel.sim.digits_rtl import format_digits_rtl, run_digits_rtl, train_idp_digits
    from nmaccel.studies.idp import rtl_markdown
    if not ip:
        raise CommandError("--study rtl needs one --int-pattern (the N:M the RTL runs)")
    nm = ip[0]
    if not isinstance(args.rtl_seed, int) or args.rtl_seed < 0:
        raise CommandError(f"--rtl-seed must be a non-negative integer, not {args.rtl_seed}")
    cfg = args.preset.replace(n=nm[0], m=nm[1])
    from nmaccel.spec import sta_isa
    why = sta_isa.attention_supported(cfg)
    if why:
        raise CommandError(f"--preset: {why}")
    start = time.perf_counter()
    dense, model, data = train_idp_digits(nm, seed=args.rtl_seed, dense_steps=args.dense_steps,
                                          budget=args.budget, layers=args.layers,
                                          batch_size=args.batch_size, lr=args.lr,
                                          progress=not args.no_progress)
    train_s = time.perf_counter() - start
    n = min(args.rtl_images, len(data.x_test))
    images, labels = data.x_test[:n], data.y_test[:n]
    prog = digits_int_program(model, cfg, nm)
    res = run_digits_rtl(prog, images.numpy(), labels.numpy(), simulator=args.simulator,
                         progress=not args.no_progress,
                         float_predictions=predict(model, images).numpy(), link=args.rtl_link,
                         runner=_uart_runner() if args.rtl_link == "uart" else None)
    res["dense_float_accuracy"] = float((predict(dense, images).numpy() == labels.numpy()).mean())
    # PyTorch on this CPU: the float (pruned) model on the same images in one batch
    from nmaccel.studies.baselines import machine, time_call
    t = time_call(lambda: predict(model, images), repeats=20, warmup=3)
    res["torch"] = {"images": n, "fp32": t, "machine": machine(),
                    "images_per_s": round(n / t["min_s"])}
    res["train_seconds"] = round(train_s, 1)
    res["wall_seconds"] = round(time.perf_counter() - start, 1)
    res["macs_per_image"] = prog.macs()
    res["command"] = (f"nmaccel idp --study rtl --int-pattern {nm[0]}:{nm[1]} "
                      f"--preset {args._preset_name} --rtl-seed {args.rtl_seed} "
                      f"--rtl-images {args.rtl_images} --dense-steps {args.dense_steps} "
                      f"--budget {args.budget} --layers {args.layers} --batch-size "
                      f"{args.batch_size} --lr {args.lr:g} --simulator {args.simulator}"
                      + (" --rtl-link uart" if args.rtl_link == "uart" else ""))
    write_json(args.rtl_json, res, indent=1)
    write_atomic(args.rtl_md, rtl_markdown(res))
    print(format_digits_rtl(res))
    return 0 if res["predictions_identical"] and res["bit_exact_layers"] else 1




def _run_minilm(args) -> None:
    """``--study minilm``: the method comparison, the shipped students, the RTL check."""
    from nmaccel.model.minilm_study import minilm_markdown, minilm_study
    from nmaccel.studies.idp import minilm_rtl, shipped_summary
    start = time.perf_counter()
    partial = args.minilm_json.with_name(args.minilm_json.name + ".partial")
    if partial.exists() and not args.resume:
        print(f"note: {partial} holds an interrupted run; --resume continues it",
              file=sys.stderr)

    def say(msg: str) -> None:
        if not args.no_progress:
            print(f"[{time.perf_counter() - start:7.0f} s] {msg}", file=sys.stderr, flush=True)
    try:
        res = minilm_study(args.minilm_patterns, args.methods, args.minilm_seeds,
                           args.minilm_layer_budget, args.minilm_budget, lr=args.minilm_lr,
                           batch_size=args.minilm_batch_size,
                           layer_texts=args.minilm_layer_texts, qat=not args.minilm_no_qat,
                           int8=not args.minilm_no_int8, checkpoint=partial,
                           resume=args.resume, objective=_objective(args), say=say)
    except KeyboardInterrupt:
        raise CommandError(f"interrupted; the finished runs are in {partial} "
                           "(run again with --resume)") from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    from nmaccel.model.minilm_sparse import SHIPPED
    res["shipped"] = shipped_summary(list(SHIPPED))
    if args.minilm_rtl_sentences:
        say(f"shipped students on the RTL, {args.minilm_rtl_sentences} sentences")
        res["rtl"] = minilm_rtl(list(SHIPPED), args.minilm_rtl_sentences,
                                progress=not args.no_progress)
    wall = time.perf_counter() - start
    command = command_line(args, "minilm")
    res["command"], res["wall_seconds"] = command, wall
    write_json(args.minilm_json, res, indent=1)
    md = minilm_markdown(res, command, wall, res["shipped"], res.get("rtl"))
    write_atomic(args.minilm_md, md)
    partial.unlink(missing_ok=True)
    print(md)


def _run_minilm_ship(args) -> int:
    """``--study minilm-ship``: train one student per pattern and write it into the package."""
    from nmaccel.model.minilm_sparse import SHIPPED, shipped_path
    from nmaccel.model.minilm_study import ship_student
    if len(args.methods) != 1:
        raise CommandError("--study minilm-ship takes one --methods entry (the method of the "
                           "shipped student)")
    for nm in args.minilm_patterns:
        if tuple(nm) not in SHIPPED:
            raise CommandError(f"--study minilm-ship: {nm[0]}:{nm[1]} has no shipped file name "
                               f"(shipped patterns: {', '.join(f'{a}:{b}' for a, b in SHIPPED)})")
    folder = args.minilm_ship_dir
    if not folder.is_dir():
        raise CommandError(f"--minilm-ship-dir {folder} is not a folder")
    if args.minilm_continue:
        if args.minilm_layer_budget:
            raise CommandError("--minilm-continue has no layer-wise stage: give "
                               f"--minilm-layer-budget 0, not {args.minilm_layer_budget}")
        for nm in args.minilm_patterns:
            if not (folder / shipped_path(nm).name).is_file():
                raise CommandError(f"--minilm-continue: {folder / shipped_path(nm).name} does "
                                   "not exist (nothing to continue from)")
    elif args.minilm_budget == 0 and args.minilm_layer_budget == 0:
        raise CommandError("--study minilm-ship with --minilm-layer-budget 0 and "
                           "--minilm-budget 0 would ship magnitude pruning untrained")
    start = time.perf_counter()

    def say(msg: str) -> None:
        if not args.no_progress:
            print(f"[{time.perf_counter() - start:7.0f} s] {msg}", file=sys.stderr, flush=True)
    command = command_line(args, "minilm-ship")
    for nm in args.minilm_patterns:
        path = folder / shipped_path(nm).name
        check_output_file(path, "--minilm-ship-dir")
        prov = ship_student(nm, args.methods[0], args.minilm_seed, args.minilm_layer_budget,
                            args.minilm_budget, path, command=command, lr=args.minilm_lr,
                            batch_size=args.minilm_batch_size,
                            layer_texts=args.minilm_layer_texts, qat=not args.minilm_no_qat,
                            init=path if args.minilm_continue else None,
                            objective=_objective(args), say=say)
        m = prov["metrics"]
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): {nm[0]}:{nm[1]} "
              f"{args.methods[0]} seed {args.minilm_seed}, trained in "
              f"{prov['train_seconds'] / 60:.0f} min; held-out cosine float "
              f"{m['float']['cos_mean']:.4f} int8 {m['int8']['cos_mean']:.4f} (min "
              f"{m['int8']['cos_min']:.4f}), int8 top-1 {100 * m['int8']['top1']:.1f}%, "
              f"top-10 {100 * m['int8']['top10_overlap']:.1f}%")
    return 0
