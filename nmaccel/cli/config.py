"""``nmaccel config``: print an STA hardware preset as JSON, and where it runs."""

from __future__ import annotations

import sys

from nmaccel.cli.args import preset

__all__ = ["HELP", "add_arguments", "run"]

HELP = "print an STA hardware preset as JSON (and whether a board build exists for it)"


def _statuses() -> str:
    from nmaccel.boards.measured import preset_status
    from nmaccel.spec.config import STA_PRESETS
    return "; ".join(f"{name}: {preset_status('sta', name)}" for name in STA_PRESETS)


def add_arguments(p) -> None:
    p.add_argument("--preset", type=preset, default="ulx3s",
                   help=f"preset name. Presets and the measured board builds: {_statuses()}")


def run(args) -> int:
    from nmaccel.boards.measured import preset_status
    from nmaccel.spec.config import STA_PRESETS
    print(args.preset.to_json(indent=2))
    names = [n for n, c in STA_PRESETS.items() if c == args.preset]
    if names:       # the JSON stays on stdout (a --config file); where it runs on stderr
        print(f"{names[0]}: {preset_status('sta', names[0])}", file=sys.stderr)
    return 0
