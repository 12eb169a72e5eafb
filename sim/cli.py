"""The ``nmaccel`` command line.

Subcommands
    ``demo``    embed sentences with MiniLM-L6: float reference vs the integer golden
                pipelines (int8 dense and N:M sparse); prints a table, optional JSON.
    ``config``  print a hardware preset (``StaConfig``) as JSON.

Every subcommand has ``--help`` with defaults shown. Bad arguments end with a one-line
error and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

__all__ = ["main", "build_parser"]


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _nm_list(text: str) -> list[Optional[tuple[int, int]]]:
    from nmaccel.model.encoder_int import parse_nm
    try:
        return [parse_nm(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _preset(name: str):
    from nmaccel.hw.config import ConfigError, sta_preset
    try:
        return sta_preset(name)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nmaccel", formatter_class=_Formatter,
        description="nmaccel: N:M sparse Transformer (STA) and adder/binary conv accelerator kit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser(
        "demo", formatter_class=_Formatter,
        help="MiniLM-L6 sentence embeddings: float vs int8 dense vs int8 N:M golden pipelines",
        description="Embeds sentences with the float MiniLM-L6 reference, the int8 dense integer "
                    "pipeline and int8 N:M sparse pipelines (magnitude-pruned, no fine-tuning), "
                    "and prints cosine similarity to the float embeddings, storage bits per "
                    "weight and multiply-accumulate counts.")
    demo.add_argument("--preset", type=_preset, default="ulx3s",
                      help="STA hardware preset whose number formats the integer pipelines use "
                           "(tiny, ulx3s, large)")
    demo.add_argument("--nm", type=_nm_list, default="2:4,1:4",
                      help="comma-separated N:M patterns for the sparse pipelines")
    demo.add_argument("--text", action="append", default=None, metavar="SENTENCE",
                      help="a sentence to embed (repeatable); default: 8 built-in sentences")
    demo.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")

    cfg = sub.add_parser("config", formatter_class=_Formatter,
                         help="print an STA hardware preset as JSON")
    cfg.add_argument("--preset", type=_preset, default="ulx3s", help="preset name")
    return parser


def _cmd_config(args) -> int:
    print(args.preset.to_json(indent=2))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from nmaccel.sim.demo import run_demo
            return run_demo(args)
        if args.command == "config":
            return _cmd_config(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"nmaccel {args.command}: error: {exc}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
