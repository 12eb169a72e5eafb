"""Random command streams on the STA, thousands at a time: the record that every run ends.

Runs :func:`nmaccel.sim.sta_fuzz.fuzz` (random command words in programs of 1..4, batches of
1,000 per simulator process, a known-good sparse GEMM after every 10) and writes
``reports/fuzz.{json,md}``: programs, words, outcome counts (done or each error code), the
longest run against the stated cycle bound, and whether every good program after the errors
was exact.

Usage: ``nmaccel bench fuzz [--programs 10000] [--seed 0] [--preset tiny]
[--simulator verilator] [--out reports]``
"""

from __future__ import annotations

from pathlib import Path

from nmaccel.files import write_atomic, write_json
from nmaccel.sim.sta_fuzz import FuzzSummary, fuzz
from nmaccel.spec.config import sta_preset

__all__ = ["run"]


def run(programs: int = 10_000, seed: int = 0, preset: str = "tiny",
        simulator: str = "verilator", batch: int = 1000, good_every: int = 10, out="reports",
        command: str = "nmaccel bench fuzz") -> int:
    """Fuzz ``programs`` random programs; returns 0 if every run ended within the bound and
    every good program was exact, else 1."""
    cfg = sta_preset(preset)

    def progress(s: FuzzSummary) -> None:
        print(f"[{s.seconds:7.0f} s] {s.programs}/{programs} programs, {s.words} words, "
              f"done {s.outcomes['done']}, errors {s.programs - s.outcomes['done'] - s.hung}, "
              f"hung {s.hung}, longest {s.max_cycles} cycles, cycle model exact on "
              f"{s.model_exact} of {s.outcomes['done']} done", flush=True)

    summary = fuzz(cfg, programs, seed=seed, simulator=simulator, batch=batch,
                   good_every=good_every, progress=progress)
    res = {"command": command, "preset": preset, "seed": seed, "simulator": simulator,
           "batch": batch, "good_every": good_every, **summary.to_dict(), "ok": summary.ok}
    out = Path(out)
    write_json(out / "fuzz.json", res)
    lines = [f"# Random command streams on the STA (`{preset}`)", "",
             f"`{command}`: {summary.programs:,} random programs ({summary.words:,} command "
             f"words, 1..4 per program; seed {seed}) on {simulator}, {batch:,} per simulator "
             f"process; a known-good sparse GEMM after every {good_every} random programs. "
             f"{summary.seconds:.0f} s.", "",
             f"- Every run ended with done or an error: **{summary.hung} hung** "
             f"(busy, or neither/both of done and error).",
             f"- Longest run: **{summary.max_cycles:,} cycles**. Each run's bound: 2 x the "
             "cycle model's prediction (of the commands before the first one the checks "
             "reject) + 10,000 cycles, the limit of every bench wait; the largest run/bound "
             f"ratio seen: **{summary.max_bound_share:.3f}**.",
             f"- Runs that ended with done: {summary.outcomes['done']:,}; cycles equal to the "
             f"cycle model's: **{summary.model_exact:,}** ({len(summary.model_off)} differ).",
             f"- Good programs between the random ones: {summary.good_exact:,} of "
             f"{summary.good_runs:,} exact.", "",
             "| outcome | programs |", "|---|---:|"]
    lines += [f"| {name} | {count:,} |" for name, count in summary.outcomes.most_common()]
    write_atomic(out / "fuzz.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if summary.ok else 1
