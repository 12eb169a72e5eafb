"""Post-route fmax of each STA and conv-engine block placed and routed alone on the ULX3S 85F.

Every block is synthesized with the board's options and placed and routed out of context by
:func:`nmaccel.boards.block_timing.place_route_block` (nextpnr-ecp5 ``--out-of-context``,
speed grade of the board). A block below the target alone has register-to-register logic
that is too deep; a block above it alone but slow in the full build loses its time to
routing across the chip. Writes ``reports/block_fmax.{json,md,png}``.

Usage: ``nmaccel bench block-fmax [--sta-preset ulx3s_lite] [--conv-preset ulx3s]
[--freq 100] [--only NAME ...] [--whole]`` (``--whole`` adds the whole STA core and conv
engine, tens of minutes each).
"""

from __future__ import annotations

from pathlib import Path

from nmaccel.boards.block_timing import place_route_block
from nmaccel.boards.blocks import conv_blocks, sta_blocks
from nmaccel.files import save_figure, write_study
from nmaccel.spec.config import conv_preset, sta_preset


def block_list(sta_cfg, conv_cfg, whole: bool):
    """``(design, name, count, factory, cfg)`` of every block to place and route."""
    out = [("sta", name, count, make, sta_cfg) for name, count, make, _ in sta_blocks(sta_cfg)]
    out += [("conv", name, count, make, conv_cfg)
            for name, count, make, _ in conv_blocks(conv_cfg)]
    if whole:
        from nmaccel.hw.conv.engine import ConvEngine
        from nmaccel.hw.sta.core import StaCore
        out += [("sta", "StaCore", 1, lambda: StaCore(sta_cfg), sta_cfg),
                ("conv", "ConvEngine", 1, lambda: ConvEngine(conv_cfg), conv_cfg)]
    return out


def markdown(res: dict) -> str:
    lines = [f"# Block fmax on the ULX3S 85F (ECP5 LFE5U-85F, speed {res['speed']})", "",
             f"Each block placed and routed alone (nextpnr-ecp5 `--out-of-context`, "
             f"{res['router']}, target {res['freq_mhz']:g} MHz) by `{res['command']}`; STA "
             f"preset `{res['sta_preset']}`, conv preset `{res['conv_preset']}`. The full "
             "board builds (reports/boards/) reach less: their blocks share the chip and its "
             "routing.", "",
             "| design | block | fmax MHz | met | LUT | FF | DSP | BRAM | critical path "
             "(ns: logic + routing) | its logic comes from |",
             "|---|---|---:|---|---:|---:|---:|---:|---|---|"]
    for r in res["rows"]:
        cp = r.get("critical_path") or {}
        rs = r["resources"]
        src = ", ".join(f"`{s}`" for s in cp.get("sources", [])[:4])
        path = (f"{cp['delay_ns']:.1f} ({cp['logic_ns']:.1f} + {cp['routing_ns']:.1f})"
                if cp else "")
        lines.append(f"| {r['design']} | {r['block']} | {r['fmax_mhz']:.1f} | "
                     f"{'yes' if r['timing_met'] else '**no**'} | {rs.get('LUT', [0])[0]} | "
                     f"{rs.get('FF', [0])[0]} | {rs.get('DSP', [0])[0]} | "
                     f"{rs.get('BRAM', [0])[0]} | {path} | {src} |")
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
    ax.set_title(f"Blocks alone on the LFE5U-85F (STA {res['sta_preset']}, conv "
                 f"{res['conv_preset']})")
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def run(sta_preset_name: str = "ulx3s_lite", conv_preset_name: str = "ulx3s",
        freq: float = 100.0, only=None, whole: bool = False, out="reports",
        progress: bool = True) -> int:
    """Place and route every block alone; writes ``out/block_fmax.{json,md,png}``."""
    from tqdm import tqdm
    sta_cfg, conv_cfg = sta_preset(sta_preset_name), conv_preset(conv_preset_name)
    todo = block_list(sta_cfg, conv_cfg, whole)
    if only is not None:
        known = {name for _, name, *_ in todo}
        bad = sorted(set(only) - known)
        if bad:
            raise ValueError(f"--only names unknown blocks {bad}; known: {sorted(known)}")
        todo = [t for t in todo if t[1] in only]
    rows = []
    bar = tqdm(todo, unit="block", disable=not progress)
    for design, name, count, make, cfg in bar:
        bar.set_description(f"{design} {name}")
        r = place_route_block(make(), name, "ulx3s", design, cfg, freq)
        r.update(design=design, count=count)
        rows.append(r)
        tqdm.write(f"{design:4s} {name:18s} {r['fmax_mhz']:7.1f} MHz  "
                   f"LUT {r['resources'].get('LUT', [0])[0]:6d}  ({r['seconds']['total']} s)")
    from nmaccel.boards.targets import board_target
    plat = board_target("ulx3s").platform()
    cmd = "nmaccel bench block-fmax" + "".join(
        f" {k} {v}" for k, v, d in (("--sta-preset", sta_preset_name, "ulx3s_lite"),
                                   ("--conv-preset", conv_preset_name, "ulx3s"),
                                   ("--freq", f"{freq:g}", "100")) if v != d) + (
        " --whole" if whole else "")
    res = {"command": cmd, "sta_preset": sta_preset_name, "conv_preset": conv_preset_name,
           "freq_mhz": freq, "device": f"{plat.device}-{plat.package}",
           "speed": plat.speed, "router": board_target("ulx3s").router(), "rows": rows}
    md = markdown(res)
    write_study(out, "block_fmax", res, md, plot)
    print(md)
    return 0

