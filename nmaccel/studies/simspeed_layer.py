"""Where the wall time of a whole-layer RTL run goes: ``nmaccel bench simspeed``.

For each preset (default ``tiny``, ``ulx3s_board``, ``large``) one MiniLM-L6 layer runs on the
STA RTL (Verilator) twice through :func:`nmaccel.sim.sta_encoder.run_encoder`, as ``nmaccel
sim sta --layer 0`` does: the first run builds the simulation model if the cache has none, the
second finds it. Each run's wall time is split into Python before the simulator (quantize,
compile), the model build (or its cache lookup), the simulator process (start-up, backdoor
loading, the run, read-back) and Python after it (golden checks); cycles per second are given
free-running (clock cycles ÷ the run's own seconds) and end to end (÷ the whole wall time).
Writes ``<out>/simspeed.{json,md,png}``.
"""

from __future__ import annotations

import time
from pathlib import Path

from nmaccel.files import save_figure, write_study

__all__ = ["run", "measure", "markdown", "plot", "PRESETS"]

#: the presets the study measures by default: smallest, the board's, the biggest
PRESETS = ("tiny", "ulx3s_board", "large")
PARTS = ("prepare", "build", "simulator", "check")


#: sequence lengths tried, longest first: a small preset's buffers hold only a short layer
SEQS = (32, 16, 8, 4)


def measure(preset: str, nm=(2, 4)) -> dict:
    """Two runs of MiniLM-L6 layer 0 on ``preset`` at the longest sequence of :data:`SEQS`
    its buffers hold (the first run may build the model)."""
    from nmaccel.model.pipeline import QuantizedMiniLM
    from nmaccel.model.sta_layer import compile_layer
    from nmaccel.model.sta_workloads import minilm_tokens
    from nmaccel.sim.sta_encoder import run_encoder
    from nmaccel.spec.config import sta_preset
    cfg = sta_preset(preset)
    layer = QuantizedMiniLM(cfg.replace(n=nm[0], m=nm[1]), nm, num_layers=1)
    for seq in SEQS:
        try:
            compile_layer(layer.layers[0], layer.quantize_input(minilm_tokens(seq)),
                          cfg.replace(n=nm[0], m=nm[1]))
            break
        except ValueError:
            continue
    else:
        raise ValueError(f"no sequence of {SEQS} fits preset {preset!r}")
    runs = []
    for _ in range(2):
        t0 = time.perf_counter()
        res = run_encoder(cfg, nm, [0], seq, progress=False)
        r = res["runs"][0]
        runs.append({"wall_seconds": round(time.perf_counter() - t0, 2),
                     "seconds": res["seconds"], "cycles": r["cycles"]["total"],
                     "bit_exact": res["bit_exact"],
                     "free_running_cycles_per_second": res["sim_cycles_per_second"],
                     "end_to_end_cycles_per_second": res["end_to_end_cycles_per_second"]})
    c = res["config"]
    return {"preset": preset, "array": [c["rows"], c["cols"], c["lanes"]],
            "nm": f"{nm[0]}:{nm[1]}", "seq": seq, "first": runs[0], "cached": runs[1]}


def markdown(res: dict) -> str:
    lines = ["# Simulation speed: one MiniLM-L6 layer on the STA RTL", "",
             f"Command: `{res['command']}` on {res['machine']} ({res['wall_seconds']:.0f} s). "
             "Each preset runs layer 0 (2:4; 32 tokens, or the longest of 16, 8, 4 its buffers "
             "hold) twice, as `nmaccel sim sta --layer 0` does: *first* builds the Verilator "
             "model if the cache had none, *cached* finds it (the presets run one after "
             "another in one process: only the first preset's *first* run pays the process's "
             "one-time costs; `nmaccel sim sta` in a fresh process is such a run). The "
             "simulator process starts at once (model from the build "
             "cache) and waits for its programs, so its start-up overlaps the preparation. "
             "Seconds: `prepare` = Python before the programs are ready (quantization from the "
             "calibration cache, compiling the layer), `build` = what the model build or "
             "lookup took beyond the preparation, `simulator` = from then until the results "
             "are back (start-up the preparation did not hide, backdoor loading, the run, "
             "read-back, exit), `check` = golden comparison after it. Free-running cycles/s = "
             "clock cycles ÷ the run's own seconds; end to end = ÷ the whole wall time; "
             "e2e/free = their ratio.", "",
             "| preset | array | tokens | run | cycles | bit-exact | wall s | prepare | build | "
             "simulator | check | free-running cycles/s | end-to-end cycles/s | e2e/free |",
             "|---|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in res["presets"]:
        for which in ("first", "cached"):
            r, s = p[which], p[which]["seconds"]
            ratio = r["end_to_end_cycles_per_second"] / r["free_running_cycles_per_second"]
            lines.append(f"| {p['preset']} | {'×'.join(map(str, p['array']))} | {p['seq']} | "
                         f"{which} | "
                         f"{r['cycles']} | {'yes' if r['bit_exact'] else 'NO'} | "
                         f"{r['wall_seconds']:.1f} | {s['prepare']:.1f} | {s['build']:.1f} | "
                         f"{s['simulator']:.1f} | {s['check']:.1f} | "
                         f"{r['free_running_cycles_per_second']} | "
                         f"{r['end_to_end_cycles_per_second']} | "
                         f"{ratio:.1%} |")
    lines += ["", "Inside the simulator process (cached runs; seconds): start-up (process, "
              "embedded Python, cocotb, the bench module; from the spawn, beside the "
              "preparation), waiting for the programs' job files (written while earlier "
              "programs simulate), backdoor loading of the memory images, the free-running "
              "runs, reading results back, exit.", "",
              "| preset | start-up | wait | load | run | read-back | exit |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for p in res["presets"]:
        parts = p["cached"]["seconds"].get("simulator_parts")
        if parts:
            lines.append(f"| {p['preset']} | {parts['start']:.2f} | "
                         f"{parts.get('wait', 0.0):.2f} | {parts['load']:.2f} | "
                         f"{parts['run']:.2f} | {parts['read']:.2f} | {parts['exit']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    """Stacked wall seconds per part, first and cached run of each preset."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3.6))
    bars = [(p["preset"], w, p[w]["seconds"]) for p in res["presets"]
            for w in ("first", "cached")]
    labels = [f"{name}\n{w}" for name, w, _ in bars]
    bottoms = [0.0] * len(bars)
    for part in PARTS:
        vals = [s[part] for _, _, s in bars]
        ax.bar(labels, vals, bottom=bottoms, label=part)
        bottoms = [b + v for b, v in zip(bottoms, vals)]
    ax.set_ylabel("wall seconds")
    ax.set_title("MiniLM-L6 layer 0 (2:4) on the STA RTL, Verilator")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def run(presets=PRESETS, out="reports", command: str = "nmaccel bench simspeed") -> int:
    import platform
    t0 = time.perf_counter()
    res = {"command": command, "machine": f"{platform.machine()} "
           f"{platform.processor() or ''}".strip(),
           "presets": [measure(p) for p in presets]}
    res["wall_seconds"] = round(time.perf_counter() - t0, 1)
    md = markdown(res)
    write_study(out, "simspeed", res, md, plot)
    print(md)
    return 0 if all(p[w]["bit_exact"] for p in res["presets"] for w in ("first", "cached")) \
        else 1
