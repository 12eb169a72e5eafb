"""Post-route fmax of each STA and conv-engine block placed and routed alone on a board's FPGA.

Every block is synthesized with the board's options and placed and routed alone by
:func:`nmaccel.boards.block_timing.place_route_block`: on the ULX3S 85F out of context
(nextpnr-ecp5 ``--out-of-context``, speed grade of the board), on the iCEBreaker's UP5K behind
a serial harness (its flip-flops are counted in the LUT/FF columns and given apart). A block
below the target alone has register-to-register logic that is too deep; a block above it alone
but slow in the full build loses its time to routing across the chip. On the iCEBreaker the
STA blocks are those of the memory-lean STA (:mod:`nmaccel.hw.sta_lean`).

Writes ``reports/<stem>.{json,md,png}``, one table per setting: the stem is ``block_fmax``,
followed by the board, the STA preset, ``conv_<preset>`` and ``<freq>mhz`` wherever these are
not the board's defaults (:func:`study_stem`), so a second preset never replaces the first's
table. With ``--only`` the blocks run replace their rows in the table of the same setting and
the other rows stay; every row names the commit it was built from.

Usage: ``nmaccel bench block-fmax [--board ulx3s] [--sta-preset P] [--conv-preset P]
[--freq MHZ] [--only NAME ...] [--whole]`` (``--whole`` adds the whole STA core and conv
engine, tens of minutes each; ECP5 only).
"""

from __future__ import annotations

import json
from pathlib import Path

from nmaccel.boards.block_timing import place_route_block
from nmaccel.boards.blocks import conv_blocks, lean_sta_blocks, sta_blocks
from nmaccel.boards.targets import board_target
from nmaccel.files import save_figure, write_study
from nmaccel.revision import git_rev
from nmaccel.spec.config import conv_preset, sta_preset

#: Per board: the default STA and conv presets, the target MHz, whether the STA is the lean one.
BOARDS = {"ulx3s": ("ulx3s_lite", "ulx3s", 100.0, False),
          "icebreaker": ("icebreaker", "icebreaker", 24.0, True)}


def study_stem(board: str, sta_preset_name: str, conv_preset_name: str, freq: float) -> str:
    """File stem of the table of one setting: ``block_fmax`` plus each choice that is not the
    board's default (``block_fmax_ulx3s_lut_125mhz`` for the ``ulx3s_lut`` STA at 125 MHz)."""
    d_sta, d_conv, d_freq, _ = BOARDS[board]
    parts = ["block_fmax"]
    parts += [board] if board != "ulx3s" else []
    parts += [sta_preset_name] if sta_preset_name != d_sta else []
    parts += [f"conv_{conv_preset_name}"] if conv_preset_name != d_conv else []
    parts += [f"{freq:g}mhz".replace(".", "p")] if freq != d_freq else []
    return "_".join(parts)


def merge_rows(previous: dict | None, res: dict, order: list) -> list:
    """Rows of ``res`` over those of ``previous``, the table of an earlier run: kept only when
    it has the same board, presets and target; a block run now replaces its earlier row. Rows
    come in ``order`` (``(design, block)`` of every block); any other earlier row is dropped."""
    same = previous is not None and all(
        previous.get(k) == res[k] for k in ("board", "sta_preset", "conv_preset", "freq_mhz"))
    rows = {(r["design"], r["block"]): r for r in (previous["rows"] if same else [])}
    rows.update({(r["design"], r["block"]): r for r in res["rows"]})
    return [rows[k] for k in order if k in rows]


def _earlier_table(path: Path) -> dict | None:
    """The table an ``--only`` run merges into, read before any block is built: ``None`` when
    there is none, a ``ValueError`` naming the file when it cannot be read as one."""
    if not path.exists():
        return None
    try:
        table = json.loads(path.read_text())
        if not (isinstance(table, dict) and isinstance(table.get("rows"), list)
                and all(isinstance(r, dict) and "design" in r and "block" in r
                        for r in table["rows"])):
            raise ValueError("no list of rows with design and block")
    except (OSError, ValueError) as e:
        raise ValueError(f"--only merges into {path}, which is not a block-fmax table ({e}); "
                         "move it aside or run without --only") from None
    return table


def block_list(sta_cfg, conv_cfg, whole: bool, lean: bool = False):
    """``(design, name, count, factory, cfg)`` of every block to place and route."""
    blocks = lean_sta_blocks(sta_cfg) if lean else sta_blocks(sta_cfg)
    out = [("sta", name, count, make, sta_cfg) for name, count, make, _ in blocks]
    out += [("conv", name, count, make, conv_cfg)
            for name, count, make, _ in conv_blocks(conv_cfg)]
    if whole:
        from nmaccel.hw.conv.engine import ConvEngine
        from nmaccel.hw.sta.core import StaCore
        out += [("sta", "StaCore", 1, lambda: StaCore(sta_cfg), sta_cfg),
                ("conv", "ConvEngine", 1, lambda: ConvEngine(conv_cfg), conv_cfg)]
    return out


def markdown(res: dict) -> str:
    ice40 = res.get("board", "ulx3s") != "ulx3s"
    how = ("behind a serial harness (every input from one shift register, every output "
           "XORed into one pin; the LUT and FF columns include its flip-flops, given apart)"
           if ice40 else "(nextpnr-ecp5 `--out-of-context`, " + res["router"] + ")")
    lines = [f"# Block fmax on the {res.get('board_name', 'ULX3S 85F')}: {res['device']}"
             + ("" if ice40 else f", speed {res['speed']}"), "",
             f"Each block placed and routed alone {how}, target {res['freq_mhz']:g} MHz, by "
             f"`{res['command']}`; STA preset `{res['sta_preset']}`"
             + (" (the memory-lean STA's blocks)" if ice40 else "")
             + f", conv preset `{res['conv_preset']}`. The full board builds (reports/boards/) "
             "reach less: their blocks share the chip and its routing.", "",
             "| design | block | fmax MHz | met | LUT | FF | DSP | BRAM | critical path "
             "(ns: logic + routing) | its logic comes from |"
             + (" harness FF |" if ice40 else "") + " commit |",
             "|---|---|---:|---|---:|---:|---:|---:|---|---|" + ("---:|" if ice40 else "")
             + "---|"]
    for r in res["rows"]:
        cp = r.get("critical_path") or {}
        rs = r["resources"]
        src = ", ".join(f"`{s}`" for s in cp.get("sources", [])[:4])
        path = (f"{cp['delay_ns']:.1f} ({cp['logic_ns']:.1f} + {cp['routing_ns']:.1f})"
                if cp else "")
        lines.append(f"| {r['design']} | {r['block']} | {r['fmax_mhz']:.1f} | "
                     f"{'yes' if r['timing_met'] else '**no**'} | {rs.get('LUT', [0])[0]} | "
                     f"{rs.get('FF', [0])[0]} | {rs.get('DSP', [0])[0]} | "
                     f"{rs.get('BRAM', [0])[0]} | {path} | {src} |"
                     + (f" {r.get('harness_ff', 0)} |" if ice40 else "")
                     + f" {r.get('commit', '?')} |")
    slow = [r for r in res["rows"] if not r["timing_met"]]
    lines += ["", f"{len(slow)} of {len(res['rows'])} blocks miss {res['freq_mhz']:g} MHz "
                  "alone" + (": " + ", ".join(f"{r['design']} {r['block']} "
                                              f"({r['fmax_mhz']:.1f} MHz)" for r in slow)
                             if slow else "") + "."]
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = res["rows"]
    names = [f"{r['design']}: {r['block']}" for r in rows]
    fmax = [r["fmax_mhz"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.2))
    colors = ["tab:green" if r["timing_met"] else "tab:red" for r in rows]
    ax.barh(names, fmax, color=colors)
    ax.axvline(res["freq_mhz"], color="k", linestyle="--", label=f"target {res['freq_mhz']:g} MHz")
    ax.invert_yaxis()
    ax.set_xlabel("post-route fmax alone (MHz)")
    ax.set_title(f"Blocks alone on the {res['device']} (STA {res['sta_preset']}, conv "
                 f"{res['conv_preset']})")
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def run(sta_preset_name: str | None = None, conv_preset_name: str | None = None,
        freq: float | None = None, only=None, whole: bool = False, out="reports",
        progress: bool = True, board: str = "ulx3s") -> int:
    """Place and route every block alone (or those named in ``only``); writes
    ``out/<study_stem>.{json,md,png}``, merging into that table's earlier rows with ``only``."""
    from tqdm import tqdm
    if board not in BOARDS:
        raise ValueError(f"board must be one of {sorted(BOARDS)}, not {board!r}")
    d_sta, d_conv, d_freq, lean = BOARDS[board]
    if whole and lean:
        raise ValueError("--whole needs an ECP5 board (the lean STA has no core yet)")
    sta_preset_name = sta_preset_name or d_sta
    conv_preset_name = conv_preset_name or d_conv
    freq = d_freq if freq is None else freq
    sta_cfg, conv_cfg = sta_preset(sta_preset_name), conv_preset(conv_preset_name)
    todo = block_list(sta_cfg, conv_cfg, whole, lean)
    if only is not None:
        known = {name for _, name, *_ in todo}
        bad = sorted(set(only) - known)
        if bad:
            raise ValueError(f"--only names unknown blocks {bad}; known: {sorted(known)}")
        todo = [t for t in todo if t[1] in only]
    stem = study_stem(board, sta_preset_name, conv_preset_name, freq)
    previous = _earlier_table(Path(out) / f"{stem}.json") if only is not None else None
    target = board_target(board)
    plat = target.platform()
    cmd = "nmaccel bench block-fmax" + (f" --board {board}" if board != "ulx3s" else "") + "".join(
        f" {k} {v}" for k, v, d in (("--sta-preset", sta_preset_name, d_sta),
                                   ("--conv-preset", conv_preset_name, d_conv),
                                   ("--freq", f"{freq:g}", f"{d_freq:g}")) if v != d) + (
        " --whole" if whole else "")
    res = {"command": cmd, "board": board, "board_name": target.title,
           "sta_preset": sta_preset_name, "conv_preset": conv_preset_name,
           "freq_mhz": freq, "device": f"{plat.device}-{plat.package}",
           "speed": getattr(plat, "speed", None),
           "router": target.router() if not lean else "router1", "rows": []}
    commit = git_rev()
    bar = tqdm(todo, unit="block", disable=not progress)
    for design, name, count, make, cfg in bar:
        bar.set_description(f"{design} {name}")
        r = place_route_block(make(), name, board, design, cfg, freq)
        r.update(design=design, count=count, commit=commit)
        res["rows"].append(r)
        tqdm.write(f"{design:4s} {name:18s} {r['fmax_mhz']:7.1f} MHz  "
                   f"LUT {r['resources'].get('LUT', [0])[0]:6d}  ({r['seconds']['total']} s)")
    if only is not None:
        order = [(d, n) for d, n, *_ in block_list(sta_cfg, conv_cfg, not lean, lean)]
        res["rows"] = merge_rows(previous, res, order)
    md = markdown(res)
    write_study(out, stem, res, md, plot)
    print(md)
    return 0
