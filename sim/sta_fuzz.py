"""Random command streams for :class:`~nmaccel.hw.sta.core.StaCore`: whatever the command
words say, every run ends with done or a defined error code within a stated cycle bound, and a
good program runs bit-exact after them.

:func:`random_word` draws one command word (fully random, or field by field with a bias to
small sizes so that some commands pass the checks and run); :func:`random_programs` draws
programs of 1..4 such words; :func:`fuzz` runs them in batches in one simulator process per
batch, a known-good sparse GEMM after every few of them, and returns a :class:`FuzzSummary`.
Used by ``tests/hw/test_sta_fuzz.py`` (a fixed seed, 120 programs) and by
``nmaccel bench fuzz`` (thousands, recorded in ``reports/fuzz.*``).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nmaccel.model.sta_program import StaProgram
from nmaccel.model.sta_workloads import random_sparse_gemm
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig

__all__ = ["FuzzSummary", "checked_word", "cycle_bound", "fuzz", "random_programs",
           "random_word"]


def cycle_bound(program: StaProgram) -> int:
    """The stated bound on a run: START to done or error within the bench's limit,
    :func:`nmaccel.sim.sta_rtl.cycle_limit` of the cycle model's prediction
    (:func:`nmaccel.sim.sta_rtl.predicted_cycles`: the commands before the first one the
    checks reject)."""
    from nmaccel.sim.sta_rtl import cycle_limit, predicted_cycles
    return cycle_limit(predicted_cycles(program))


def checked_word(cfg: StaConfig, rng: random.Random, tries: int = 200) -> int:
    """A command word that passes the host-side checks (``GemmCommand.check`` /
    ``VectorCommand.check``, which mirror the core's): random sizes (1..4 tiles, 1..8 steps),
    ranges (bases anywhere in the buffers), mode, format, destination and post-op, drawn
    until one passes (a NOP if none of ``tries`` does)."""
    I = sta_isa
    for _ in range(tries):
        try:
            if rng.random() < 0.75:
                dest = rng.choice([I.Dest.OBUF] * 3 + list(I.Dest))
                m_tiles = 1 if dest == I.Dest.SOFTMAX else rng.randint(1, 4)
                n_tiles = rng.randint(1, 4)
                cmd = I.GemmCommand(
                    mode=rng.choice(list(I.Mode)), m_tiles=m_tiles, n_tiles=n_tiles,
                    k_steps=rng.randint(1, 8),
                    w_base=rng.randrange(cfg.wbuf_depth), a_base=rng.randrange(cfg.abuf_depth),
                    o_base=rng.randrange(cfg.obuf_depth // 2), p_base=rng.randrange(cfg.pbuf_depth),
                    osel=rng.choice([I.Osel.ACT, I.Osel.VEC, I.Osel.ACC]), dest=dest,
                    post=rng.choice([I.Post.NONE] * 3 + list(I.Post)),
                    barrier=rng.randint(0, 1), wait_sm=rng.randint(0, 2),
                    length=rng.randint(1, n_tiles * cfg.cols) if dest == I.Dest.SOFTMAX else 0)
            else:
                cmd = I.VectorCommand(
                    op=rng.choice([I.Opcode.LAYERNORM, I.Opcode.REQUANT]),
                    n_tiles=rng.randint(1, 4), length=rng.randint(1, 3 * cfg.cols),
                    a_base=rng.randrange(cfg.vbuf_depth // 2), a_stride=rng.randint(0, 8),
                    o_base=rng.randrange(cfg.abuf_depth // 2), o_stride=rng.randint(0, 8),
                    p_base=rng.randrange(cfg.pbuf_depth // 2), dest=rng.choice(list(I.Dest)[:2]),
                    barrier=rng.randint(0, 1))
            return cmd.check(cfg).encode(cfg)
        except ValueError:
            continue
    return I.encode_command(cfg, op=I.Opcode.NOP)


def random_word(cfg: StaConfig, rng: random.Random) -> int:
    """One command word: 30% fully random bits; 30% :func:`checked_word` (runs to done unless
    it meets a dependency the checks do not see); otherwise each field random, 80% of them
    limited to 1..4 low bits (small tile counts and bases), the opcode biased to GEMM."""
    kind = rng.random()
    if kind < 0.3:
        return rng.getrandbits(sta_isa.command_bits(cfg))
    if kind < 0.6:
        return checked_word(cfg, rng)
    fields = {}
    for name, width in sta_isa.command_fields(cfg):
        small = min(width, rng.choice([1, 2, 3, 4]))
        fields[name] = rng.getrandbits(small if rng.random() < 0.8 else width)
    fields["op"] = rng.choice([0, 1, 1, 1, 2, 3, rng.getrandbits(4)])
    return sta_isa.encode_command(cfg, **fields)


def random_programs(cfg: StaConfig, count: int, rng: random.Random) -> list[StaProgram]:
    """``count`` programs of 1..4 :func:`random_word` commands each."""
    return [StaProgram(cfg, commands=[random_word(cfg, rng) for _ in range(rng.randint(1, 4))])
            for _ in range(count)]


@dataclass
class FuzzSummary:
    """What a fuzz run saw. ``outcomes``: ``"done"`` or the error name, with counts;
    ``max_cycles``: the longest run; ``max_bound_share``: the largest run / bound ratio;
    ``model_exact``: done runs whose cycles (total and per command) equal the cycle model's."""

    programs: int = 0
    words: int = 0
    outcomes: Counter = field(default_factory=Counter)
    max_cycles: int = 0
    max_bound_share: float = 0.0
    model_exact: int = 0
    model_off: list = field(default_factory=list)
    good_runs: int = 0
    good_exact: int = 0
    hung: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.hung == 0 and self.good_exact == self.good_runs
                and self.max_bound_share <= 1.0 and not self.model_off)

    def to_dict(self) -> dict:
        return {"programs": self.programs, "words": self.words,
                "outcomes": dict(self.outcomes.most_common()), "max_cycles": self.max_cycles,
                "max_bound_share": round(self.max_bound_share, 4),
                "model_exact": self.model_exact, "model_off": self.model_off[:20],
                "good_runs": self.good_runs,
                "good_exact": self.good_exact, "hung": self.hung,
                "seconds": round(self.seconds, 1)}


def _check_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return value


def fuzz(cfg: StaConfig, programs: int, seed: int = 0, simulator: str = "verilator",
         batch: int = 1000, good_every: int = 10,
         progress: Callable[[FuzzSummary], None] | None = None) -> FuzzSummary:
    """Run ``programs`` random programs (seeded) in batches of ``batch``, each batch in one
    simulator process; a known-good sparse GEMM runs after every ``good_every`` random
    programs and after the last one of a batch, and must be exact.

    ``simulator``: ``"amaranth"`` (Python simulation of the Amaranth design), ``"verilator"``
    or ``"icarus"`` (the generated Verilog under cocotb). Each run's limit is its
    :func:`cycle_bound`; a run over it fails the bench with a message naming the program. A
    run that ends with done must take exactly the cycle model's cycles, in total and per
    command (``model_off`` lists those that do not). ``progress`` gets the running summary
    after each batch.
    """
    from nmaccel.model.sta_cycles import program_cycles
    _check_count("programs", programs)
    _check_count("batch", batch)
    _check_count("good_every", good_every)
    if simulator not in ("amaranth", "verilator", "icarus"):
        raise ValueError(f"simulator must be amaranth, verilator or icarus, not {simulator!r}")
    rng = random.Random(seed)
    good = random_sparse_gemm(cfg, 3, 4, 8, seed=3)
    summary = FuzzSummary()
    t0 = time.perf_counter()
    while summary.programs < programs:
        batch_programs = random_programs(cfg, min(batch, programs - summary.programs), rng)
        runs, is_good = [], []
        for i, program in enumerate(batch_programs):
            runs.append(program)
            is_good.append(False)
            if (i + 1) % good_every == 0 or i == len(batch_programs) - 1:
                runs.append(good)
                is_good.append(True)
        bounds = [cycle_bound(p) for p in runs]
        if simulator == "amaranth":
            from nmaccel.sim.sta_amaranth import run_amaranth_programs
            results = run_amaranth_programs(runs, max_cycles=max(bounds),
                                            raise_on_error=False, stop_on_error=False)
        else:                                     # limits: cycle_bound of each program
            from nmaccel.sim.sta_rtl import run_programs
            results = run_programs(runs, simulator=simulator, raise_on_error=False,
                                   backdoor=True)
        if len(results) != len(runs):
            raise RuntimeError(f"the simulator returned {len(results)} results for "
                               f"{len(runs)} programs")
        for program, result, bound, known in zip(runs, results, bounds, is_good):
            status = sta_isa.decode_status(result.status)
            if known:
                summary.good_runs += 1
                summary.good_exact += int(status.done and not status.error
                                          and np.array_equal(result.outputs.get("y"),
                                                             good.expected["y"]))
                continue
            summary.programs += 1
            summary.words += len(program.commands)
            summary.max_cycles = max(summary.max_cycles, result.cycles)
            summary.max_bound_share = max(summary.max_bound_share, result.cycles / bound)
            if status.busy or status.done == status.error:
                summary.hung += 1
            elif status.error:
                summary.outcomes[f"error {result.error_code}: "
                                 f"{sta_isa.error_name(result.error_code)}"] += 1
            else:
                summary.outcomes["done"] += 1
                want = program_cycles(cfg, program.commands)
                if (result.cycles, result.per_command) == (want.total, want.per_command):
                    summary.model_exact += 1
                else:
                    summary.model_off.append({"program": summary.programs - 1,
                                              "commands": [hex(w) for w in program.commands],
                                              "rtl": result.cycles, "model": want.total,
                                              "rtl_per_command": result.per_command,
                                              "model_per_command": want.per_command})
        summary.seconds = time.perf_counter() - t0
        if progress is not None:
            progress(summary)
    return summary
