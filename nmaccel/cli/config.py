"""``nmaccel config``: print an STA hardware preset as JSON."""

from __future__ import annotations

from nmaccel.cli.args import preset

__all__ = ["HELP", "add_arguments", "run"]

HELP = "print an STA hardware preset as JSON"


def add_arguments(p) -> None:
    p.add_argument("--preset", type=preset, default="ulx3s", help="preset name")


def run(args) -> int:
    print(args.preset.to_json(indent=2))
    return 0
