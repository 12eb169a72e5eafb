"""Host side of the STA: the transaction script of a run and its result, backend-independent.

A run is: load the program (32-bit host writes), write the command count to CSR START, wait
for ``done``/``error``, read STATUS and the counters, the per-command cycle log and every
output word. :func:`host_script` produces that list of steps once; each backend (Amaranth's
simulator in :mod:`nmaccel.sim.sta_amaranth`, cocotb + Verilator/Icarus in
:mod:`nmaccel.sim.sta_rtl`, a board over UART) executes it and hands the raw read data to
:func:`finish_run`, which decodes status, counters and outputs into a :class:`RunResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nmaccel.model.sta_program import StaProgram
from nmaccel.spec import sta_isa
from nmaccel.spec.sta_isa import COUNTERS, CSR

__all__ = ["RunResult", "StaRunError", "ext_blocks", "finish_run", "host_script"]


class StaRunError(RuntimeError):
    """The accelerator stopped with an error status."""

    def __init__(self, code: int, index: int, message: str) -> None:
        super().__init__(message)
        self.code, self.index = code, index


@dataclass
class RunResult:
    outputs: dict
    counters: dict
    per_command: list
    status: int
    error_code: int = 0
    error_index: int = 0
    backend: str = ""
    wall_seconds: float = 0.0
    run_seconds: float = 0.0       # wall time from START to done (simulation speed)
    extra: dict = field(default_factory=dict)

    @property
    def cycles(self) -> int:
        return self.counters["CYCLES"]

    def check(self, program: StaProgram) -> dict:
        """Compare outputs with the program's golden results; returns per-region verdicts."""
        verdict = {}
        for name, want in program.expected.items():
            got = self.outputs.get(name)
            verdict[name] = bool(got is not None and np.array_equal(got, want))
        return verdict


def host_script(program: StaProgram, writes: bool = True) -> dict:
    """The steps of one run as plain data (JSON-serialisable). ``writes``: include the host
    writes that load the program (the external-memory image too: CSR EXT_*) and the host
    reads of its outputs (a run that loads and reads by backdoor needs neither: it gets the
    memory entries in ``backdoor_reads`` and the external-memory image in ``ext``)."""
    cfg = program.cfg
    n = len(program.commands)
    if n == 0:
        raise ValueError("program has no commands")
    csr = {name: sta_isa.host_address(cfg, "CSR", idx) for name, idx in CSR.items()}
    images = {space.lower(): [[int(e), f"{int(w):x}"] for e, w in sorted(entries.items())]
              for space, entries in program.images.items()}
    images["cbuf"] = [[i, f"{int(w):x}"] for i, w in enumerate(program.commands)]
    backdoor_reads = [(space.lower(), entry) for space, entry in program.output_entries()]
    return {
        "ext": ext_blocks(program) if not writes else [],
        "images": images,
        "backdoor_reads": [list(r) for r in backdoor_reads],
        "writes": program.host_writes() if writes else [],
        "start": [csr["START"], n],
        "status": csr["STATUS"],
        "counters": [csr[name] for name in COUNTERS],
        "cyclog": [sta_isa.host_address(cfg, "CYCLOG", i) for i in range(n)],
        "outputs": [read[0] for read in program.output_reads()] if writes else [],
    }


def ext_blocks(program: StaProgram) -> list[list]:
    """The program's external-memory image as ``[base, hex]`` blocks of consecutive words
    (each word ``data_bits / 4`` hex digits, the lowest address first): compact in a JSON
    job, where a layer holds half a million words."""
    runs = program.ext_runs()
    if not runs:
        return []
    digits = -(-program.cfg.sdram_timing.data_bits // 4)
    return [[base, "".join(f"{w:0{digits}x}" for w in words)] for base, words in runs]


def finish_run(program: StaProgram, script: dict, status: int, counters: list, cyclog: list,
               outputs: list, backend: str, raise_on_error: bool = True,
               obuf_words: dict | None = None, **timing) -> RunResult:
    """Decode raw read data of :func:`host_script`'s reads into a :class:`RunResult`.

    ``outputs`` are the 32-bit reads of ``script["outputs"]``; alternatively ``obuf_words``
    gives whole memory words (``{"space:entry": word}``, from a simulator backdoor).
    """
    st = sta_isa.decode_status(status)
    code, index = st.code, st.command
    if raise_on_error and st.error:
        raise StaRunError(code, index, f"STA stopped with error {code} "
                                       f"({st.message}) at command {index}")
    slices = {}
    if obuf_words is not None:
        for key, word in obuf_words.items():
            space, entry = key.split(":")
            space = space.upper()
            for sub, part in enumerate(sta_isa.split_entry(program.cfg, space, int(word))):
                slices[(space, int(entry), sub)] = part
    if outputs:
        for (_addr, space, entry, sub), data in zip(program.output_reads(), outputs):
            slices[(space, entry, sub)] = int(data)
    results = program.unpack_outputs(slices) if not st.error else {}
    return RunResult(outputs=results, counters=dict(zip(COUNTERS, (int(c) for c in counters))),
                     per_command=[int(c) for c in cyclog], status=int(status), error_code=code,
                     error_index=index, backend=backend, **timing)
