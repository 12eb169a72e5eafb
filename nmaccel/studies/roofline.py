"""Weights from SDRAM: MiniLM-L6 layer latency against sequence length, and where each
weight pattern turns from bandwidth-bound to compute-bound → ``nmaccel bench roofline``
(``reports/roofline.{md,json,png}``), also a section of ``nmaccel report``.

The layer is compiled for a core with the board's SDRAM (``StaConfig.sdram_mhz``): its
weights and per-feature parameters lie in the SDRAM, and the program fetches them itself
(FETCH commands, :func:`nmaccel.model.sta_layer.compile_layer`): each fill of half of WBUF
and PBUF arrives while the other half computes (double buffering). The cycles come from the
cycle model (:func:`~nmaccel.model.sta_cycles.program_cycles`: exact for the compute, the
SDRAM stream of :mod:`nmaccel.model.sdram_cycles` for the fetches), which tests hold to the
RTL running with the checking SDRAM model (all six MiniLM-L6 layers within 0.03%)::

    latency = compute + stall,   stall = the cycles FETCHes wait for the engine

so ``stall`` is the fetch time the compute does not hide. A layer is *bandwidth-bound* when
the engine works longer than the core computes. The SDRAM runs on the core clock; times are
at ``clk_mhz`` (default 100 MHz, the ULX3S target). Activations stay on chip between layers.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from nmaccel.files import save_figure, write_study
from nmaccel.spec.sdram import ULX3S_SDRAM

__all__ = ["layer_schedule", "study", "markdown", "plot", "run", "PATTERNS", "SEQS"]

PATTERNS = (None, (2, 4), (1, 4))
#: 8..128 tokens, and 160 (the most the ``ulx3s`` buffers hold) to show the crossovers
SEQS = (8, 16, 32, 64, 128, 160)


def _label(nm) -> str:
    return "dense int8" if nm is None else f"{nm[0]}:{nm[1]}"


def layer_schedule(cfg, nm, seq: int, clk_mhz: float) -> dict:
    """One MiniLM-L6 layer (all six have the same shapes) at ``seq`` tokens with its weights
    in the SDRAM at ``clk_mhz`` (module docstring): compute, fetch and stall cycles, bytes."""
    import math

    from nmaccel.model.pipeline import QuantizedMiniLM
    from nmaccel.model.sta_cycles import program_cycles
    from nmaccel.model.sta_layer import compile_layer
    from nmaccel.model.sta_workloads import minilm_tokens
    from nmaccel.spec import sta_isa
    ext = cfg.replace(sdram_mhz=math.ceil(clk_mhz))
    if nm is not None:
        ext = ext.replace(n=nm[0], m=nm[1])
    qm = QuantizedMiniLM(ext, nm, num_layers=1)
    lp = compile_layer(qm.layers[0], qm.quantize_input(minilm_tokens(seq)), ext)
    reps = [program_cycles(ext, s.commands) for s in lp.segments]
    total = sum(r.total for r in reps)
    stall = sum(r.fetch_wait for r in reps)
    fetch = sum(r.fetch_busy for r in reps)
    word_bytes = ext.sdram_timing.data_bits // 8
    wbytes = pbytes = 0
    for c in lp.commands():
        if isinstance(c, sta_isa.FetchCommand):
            wbytes += c.wlen * sta_isa.ext_words_per_entry(ext, "WBUF") * word_bytes
            pbytes += c.plen * sta_isa.ext_words_per_entry(ext, "PBUF") * word_bytes
    compute = total - stall
    return {"pattern": _label(nm), "seq": seq, "segments": len(lp.segments),
            "fills": sum(1 for c in lp.commands() if isinstance(c, sta_isa.FetchCommand)
                         and (c.wlen or c.plen)),
            "compute_cycles": compute, "fetch_cycles": fetch,
            "latency_cycles": total, "stall_cycles": stall,
            "bytes": wbytes + pbytes, "weight_bytes": wbytes, "param_bytes": pbytes,
            "useful_macs": lp.useful_macs, "serial_cycles": compute + fetch,
            "bound": "bandwidth" if fetch > compute else "compute"}


def study(preset: str = "ulx3s", chip: str = ULX3S_SDRAM.name, clk_mhz: float = 100.0,
          seqs=SEQS, patterns=PATTERNS, progress=None) -> dict:
    from nmaccel.model.sdram_cycles import bytes_per_second, words_per_cycle
    from nmaccel.spec.config import sta_preset
    from nmaccel.spec.sdram import sdram_chip
    cfg = sta_preset(preset)
    if sdram_chip(chip) is not ULX3S_SDRAM:
        raise ValueError(f"the STA's external memory is the {ULX3S_SDRAM.name} "
                         f"(StaConfig sdram_mhz), not {chip}")
    timing = cfg.replace(sdram_mhz=math.ceil(clk_mhz)).sdram_timing
    rows, skipped = [], []
    for nm in patterns:
        for seq in seqs:
            try:
                row = layer_schedule(cfg, nm, seq, clk_mhz)
            except ValueError as exc:         # the half buffers do not hold this length
                skipped.append({"pattern": _label(nm), "seq": seq, "reason": str(exc)})
                continue
            row["latency_us"] = round(row["latency_cycles"] / clk_mhz, 2)
            row["compute_us"] = round(row["compute_cycles"] / clk_mhz, 2)
            rows.append(row)
            if progress:
                progress(f"{row['pattern']} seq {seq}: compute {row['compute_cycles']} "
                         f"fetch {row['fetch_cycles']} cycles ({row['bound']}-bound)")
    return {"preset": preset, "config": cfg.to_dict(), "chip": chip, "clk_mhz": clk_mhz,
            "sdram": timing.to_dict(), "words_per_cycle": round(words_per_cycle(timing), 4),
            "mb_per_s": round(bytes_per_second(timing) / 1e6, 1), "rows": rows,
            "crossover": crossovers(rows), "skipped": skipped}


def crossovers(rows) -> dict:
    """Per pattern: the first sequence length at which the layer is compute-bound (None: it
    stays bandwidth-bound over the range)."""
    out = {}
    for r in rows:
        out.setdefault(r["pattern"], None)
        if r["bound"] == "compute" and out[r["pattern"]] is None:
            out[r["pattern"]] = r["seq"]
    return out


def markdown_section(res: dict, level: str = "##") -> list[str]:
    rows = res["rows"]
    out = [f"{level} Weights from SDRAM: layer latency against sequence length", "",
           f"`{res['preset']}` STA, weights and per-feature parameters streamed from the "
           f"{res['chip']} SDRAM at {res['clk_mhz']:g} MHz ({res['words_per_cycle']} words per "
           f"cycle sustained, {res['mb_per_s']} MB/s: `nmaccel.model.sdram_cycles`, within 1% "
           "of the SDRAM controller's RTL) into the free half of WBUF/PBUF while the other "
           "half computes: the layer's program fetches them itself (FETCH commands); its "
           "cycles from the cycle model, which tests hold to the RTL running with the checking "
           "SDRAM model (six MiniLM-L6 layers within 0.03%). One MiniLM-L6 layer; six are six "
           "times this. Compute cycles: the layer's cycles less those its FETCHes waited "
           "(stall); fetch cycles: the engine at work.", "",
           "| pattern | tokens | fills | weight KB | compute cycles | fetch cycles | "
           "stall cycles | latency µs | bound |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        out.append(f"| {r['pattern']} | {r['seq']} | {r['fills']} | {r['bytes'] / 1024:.0f} "
                   f"| {r['compute_cycles']} | {r['fetch_cycles']} | {r['stall_cycles']} | "
                   f"{r['latency_us']} | {r['bound']} |")
    out.append("")
    for sk in res.get("skipped", []):
        out.append(f"- not shown: {sk['pattern']} at {sk['seq']} tokens ({sk['reason']})")
    for pat, seq in res["crossover"].items():
        top = max(r["seq"] for r in rows if r["pattern"] == pat)
        out.append(f"- {pat}: " + (f"bandwidth-bound below {seq} tokens, compute-bound from "
                                   f"{seq}" if seq is not None else
                                   f"bandwidth-bound up to {top} tokens (the longest shown)"))
    dense = {r["seq"]: r for r in rows if r["pattern"] == "dense int8"}
    for pat in res["crossover"]:
        if pat == "dense int8":
            continue
        pr = {r["seq"]: r for r in rows if r["pattern"] == pat}
        common = [s for s in pr if s in dense]
        if not common:
            continue
        lo, hi = min(common), max(common)

        def gain(s: int, pr=pr) -> float:
            return dense[s]["latency_cycles"] / pr[s]["latency_cycles"]
        out.append(f"- {pat} against dense int8: {pr[lo]['bytes'] / dense[lo]['bytes']:.2f}× "
                   f"the bytes; latency {gain(lo):.2f}× faster at {lo} tokens, "
                   f"{gain(hi):.2f}× at {hi}")
    return out + [""]


def markdown(res: dict) -> str:
    head = ["# Weights from SDRAM", "",
            f"Command: `{res['command']}` ({res['wall_seconds']:.0f} s).", ""]
    return "\n".join(head + markdown_section(res)[2:]) + "\n"


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, pat in enumerate(res["crossover"]):
        rs = [r for r in res["rows"] if r["pattern"] == pat]
        x = [r["seq"] for r in rs]
        color = f"C{i}"
        ax.plot(x, [r["latency_us"] for r in rs], "o-", color=color,
                label=f"{pat}: weights from SDRAM")
        ax.plot(x, [r["compute_us"] for r in rs], "--", color=color, alpha=0.7,
                label=f"{pat}: compute only")
        for r in rs:
            if r["bound"] == "bandwidth":
                ax.plot([r["seq"]], [r["latency_us"]], "s", color=color, ms=9, mfc="none")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("tokens")
    ax.set_ylabel(f"one layer, µs at {res['clk_mhz']:g} MHz")
    ax.set_title(f"{res['preset']}: weights from {res['chip']} (squares: bandwidth-bound)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def run(preset: str = "ulx3s", out="reports", chip: str = ULX3S_SDRAM.name,
        clk_mhz: float = 100.0, command: str = "nmaccel bench roofline",
        progress: bool = True) -> int:
    import sys
    t0 = time.perf_counter()
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else None
    res = study(preset, chip, clk_mhz, progress=say)
    res["command"] = command
    res["wall_seconds"] = round(time.perf_counter() - t0, 1)
    md = markdown(res)
    write_study(out, "roofline", res, md, plot)
    print(md)
    return 0
