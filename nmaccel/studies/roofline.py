"""Weights from SDRAM: MiniLM-L6 layer latency against sequence length, and where each
weight pattern turns from bandwidth-bound to compute-bound → ``nmaccel bench roofline``
(``reports/roofline.{md,json,png}``), also a section of ``nmaccel report``.

Model, not simulation. A layer's weights (WBUF entries: ``rows × lanes`` (value, index)
pairs for N:M, ``rows × lanes`` int8 values dense; PBUF per-feature parameters) stream from
the board's SDRAM through :class:`~nmaccel.hw.common.sdram.SdramController` at the rate of
:mod:`nmaccel.model.sdram_cycles` (held within 1% of the RTL with the checking SDRAM model).
Double buffering: the layer is compiled for half of WBUF and PBUF (the other half receives the
next segment's weights), each segment's compute cycles come from the exact cycle model
(:func:`~nmaccel.model.sta_cycles.program_cycles`), and a segment starts when its weights
are in and the previous segment is done::

    latency = fetch(0) + Σ_i max(compute(i), fetch(i + 1))

so ``stall`` = latency − Σ compute is the fetch time the compute does not hide. A layer is
*bandwidth-bound* when Σ fetch > Σ compute. The SDRAM runs on the core clock; times are at
``clk_mhz`` (default 100 MHz, the ULX3S target). Activations stay on chip between layers.
The SDRAM controller and the fetch data path (:class:`~nmaccel.hw.sta.fetch.WeightFetch`)
exist and are tested on RTL, but the STA does not issue fetches itself yet: these figures are
a projection from two models that tests hold to RTL.
"""

from __future__ import annotations

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


def segment_bits(cfg, segment, sparse: bool) -> tuple[int, int]:
    """Bits of weights and of parameters one segment needs from SDRAM: each WBUF entry as
    ``rows`` rows of ``lanes`` (value, index) pairs (N:M) or int8 values (dense), each PBUF
    entry whole; every entry padded to whole SDRAM words is left to the fetch model."""
    from nmaccel.spec import sta_isa
    w_bits = sta_isa.space_width(cfg, "WBUF") if sparse else \
        cfg.rows * cfg.lanes * cfg.weight_bits
    p_bits = sta_isa.space_width(cfg, "PBUF")
    return len(segment.images.get("WBUF", {})) * w_bits, \
        len(segment.images.get("PBUF", {})) * p_bits


def layer_schedule(cfg, nm, seq: int, timing) -> dict:
    """One MiniLM-L6 layer (all six have the same shapes) at ``seq`` tokens, double-buffered
    (module docstring): per-segment compute and fetch cycles and the totals."""
    from nmaccel.model.pipeline import QuantizedMiniLM
    from nmaccel.model.sdram_cycles import fetch_cycles
    from nmaccel.model.sta_cycles import program_cycles
    from nmaccel.model.sta_layer import compile_layer
    from nmaccel.model.sta_workloads import minilm_tokens
    half = cfg.replace(wbuf_depth=cfg.wbuf_depth // 2, pbuf_depth=cfg.pbuf_depth // 2)
    if nm is not None:
        half = half.replace(n=nm[0], m=nm[1])
    qm = QuantizedMiniLM(half, nm, num_layers=1)
    lp = compile_layer(qm.layers[0], qm.quantize_input(minilm_tokens(seq)), half)
    compute = [program_cycles(half, s.commands).total for s in lp.segments]
    parts = [segment_bits(half, s, nm is not None) for s in lp.segments]
    bits = [w + p for w, p in parts]
    fetch = [fetch_cycles(timing, b) for b in bits]
    latency = fetch[0] + sum(max(c, f) for c, f in zip(compute, fetch[1:] + [0]))
    return {"pattern": _label(nm), "seq": seq, "segments": len(lp.segments),
            "compute_cycles": sum(compute), "fetch_cycles": sum(fetch),
            "latency_cycles": latency, "stall_cycles": latency - sum(compute),
            "bytes": sum(bits) // 8, "weight_bytes": sum(w for w, _ in parts) // 8,
            "param_bytes": sum(p for _, p in parts) // 8, "useful_macs": lp.useful_macs,
            "serial_cycles": sum(compute) + sum(fetch),
            "bound": "bandwidth" if sum(fetch) > sum(compute) else "compute"}


def study(preset: str = "ulx3s", chip: str = ULX3S_SDRAM.name, clk_mhz: float = 100.0,
          seqs=SEQS, patterns=PATTERNS, progress=None) -> dict:
    from nmaccel.model.sdram_cycles import bytes_per_second, words_per_cycle
    from nmaccel.spec.config import sta_preset
    from nmaccel.spec.sdram import sdram_chip
    cfg = sta_preset(preset)
    timing = sdram_chip(chip).at(clk_mhz)
    rows, skipped = [], []
    for nm in patterns:
        for seq in seqs:
            try:
                row = layer_schedule(cfg, nm, seq, timing)
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
           "half computes (double buffering; the layer compiled for half buffers, its cycles "
           "from the exact cycle model). One MiniLM-L6 layer; six are six times this. "
           "A projection: the SDRAM controller and the fetch data path exist and are tested "
           "on RTL, but the STA does not issue fetches itself yet.", "",
           "| pattern | tokens | segments | weight KB | compute cycles | fetch cycles | "
           "stall cycles | latency µs | bound |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        out.append(f"| {r['pattern']} | {r['seq']} | {r['segments']} | {r['bytes'] / 1024:.0f} "
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
    head = ["# Weights from SDRAM (projection)", "",
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
