"""One build cache for every simulated design (STA core, conv engine, UART board top, ...).

Two levels, both under :func:`cache_root` (``$NMACCEL_BUILD_DIR`` or
``~/.cache/nmaccel/builds``):

``verilog/<tag>_<key>.v``
    The Verilog text of a design. Elaborating and converting a large core takes a minute or
    more, so the text is kept, keyed by :func:`design_key`: the design's parameters, the
    Amaranth version, and the source of the top module and of every ``nmaccel`` module it
    imports, transitively (read from the import statements). A change
    to any file the gateware is built from (an arithmetic helper, a spec constant) changes
    the key; nothing else does (:mod:`nmaccel.cachekey`).
``<tag>_<simulator>_<key>/``
    A compiled simulation model, keyed by the Verilog text (without Yosys' source-location
    attributes, which move with every unrelated edit of a Python file), the simulator's name
    and version, the build flags and whether waveforms are traced.

A build happens once per key; concurrent processes that need the same model wait for the
first one's build (a lock with a time limit), and a failed build leaves no marker behind, so
the next call rebuilds it.

Integrity: a completed entry records a manifest (size and SHA-256) of what a run uses: the
Verilog text (``<file>.v.sha256`` beside it) and, for a compiled model, its source, control
file and simulator image (the Verilator executable, Icarus' ``.vvp``), in its
``nmaccel_built`` marker. A cache hit checks it; a missing, truncated or changed file prints
one line naming the entry, deletes it and rebuilds. (An entry from before manifests gets one:
a model as it is, a Verilog file if it ends with ``endmodule``; else it is rebuilt.) A
build that fails is retried once from an empty directory before its error (which names the
cache directory) is raised, and :func:`run_cached_model` rebuilds a model that does not start
once before it reports an error.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from nmaccel.cachekey import source_digest
from nmaccel.files import touch, write_atomic
from nmaccel.sim.simulators import (
    ICARUS_BUILD_ARGS,
    ModelDidNotStart,
    activate,
    build_logged,
    cocotb_version,
    find_simulator,
)

__all__ = ["cache_root", "design_key", "top_ports", "public_control_file", "cached_verilog",
           "simulation_build", "sta_verilog", "logic_text", "BUILD_LOCK_SECONDS",
           "ModelDidNotStart", "run_cached_model", "file_digest", "check_manifest"]

#: Longest wait for another process's build of the same model before giving up.
BUILD_LOCK_SECONDS = 45 * 60

_SRC_ATTR = re.compile(r'\(\* src = "[^"]*" \*\)')


def cache_root() -> Path:
    """Where builds are kept: ``$NMACCEL_BUILD_DIR`` or ``~/.cache/nmaccel/builds``."""
    root = os.environ.get("NMACCEL_BUILD_DIR")
    return Path(root) if root else Path.home() / ".cache" / "nmaccel" / "builds"


def design_key(modules: Sequence[str], params: str) -> str:
    """Key of a design built by ``modules`` with ``params`` (any text that fixes the design:
    config JSON, top-level name, generator arguments): see the module docstring."""
    from importlib.metadata import version  # not ``import amaranth``: 0.2 s per hit
    h = hashlib.sha256(params.encode())
    h.update(f"|amaranth {version('amaranth')}|".encode())
    h.update(source_digest(*modules).encode())
    return h.hexdigest()[:20]


def file_digest(path: Path) -> list:
    """``[size, sha256 hex]`` of the file ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return [path.stat().st_size, h.hexdigest()]


def check_manifest(folder: Path, files: dict) -> str | None:
    """Why the files of ``folder`` do not match ``files`` (``{name: [size, sha256]}``), or
    None if they all do."""
    if not files:
        return "its manifest lists no files"
    for name, (size, digest) in sorted(files.items()):
        f = folder / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != size:
            return f"{name} has {f.stat().st_size} bytes, not {size}"
        if file_digest(f)[1] != digest:
            return f"{name} does not match its SHA-256"
    return None


def _note_damaged(entry: Path, why: str) -> None:
    print(f"note: build cache entry {entry} is damaged ({why}); rebuilding it", file=sys.stderr)


_NO_MANIFEST = "it has no manifest"


def _verilog_problem(path: Path) -> str | None:
    side = path.with_name(path.name + ".sha256")
    try:
        size, digest = side.read_text().split()
        size = int(size)
    except FileNotFoundError:
        return _NO_MANIFEST
    except (OSError, ValueError):
        return "its manifest is damaged"
    return check_manifest(path.parent, {path.name: [size, digest]})


def cached_verilog(tag: str, modules: Sequence[str], params: str,
                   make: Callable[[], str]) -> str:
    """The Verilog of a design: ``make()`` on a cache miss, the kept text otherwise (checked
    against its manifest; a damaged file is reported, deleted and made again)."""
    path = cache_root() / "verilog" / f"{tag}_{design_key(modules, params)}.v"
    side = path.with_name(path.name + ".sha256")
    if path.exists():
        why = _verilog_problem(path)
        if why == _NO_MANIFEST and path.read_text().rstrip().endswith("endmodule"):
            size, digest = file_digest(path)          # an entry from before manifests
            write_atomic(side, f"{size} {digest}\n")
            why = None
        if why is None:
            touch(path)
            return path.read_text()
        _note_damaged(path, why)
        path.unlink(missing_ok=True)
        side.unlink(missing_ok=True)
    text = make()
    write_atomic(path, text)
    size, digest = file_digest(path)
    write_atomic(side, f"{size} {digest}\n")
    return text


def sta_verilog(cfg, name: str = "sta_core") -> str:
    """Verilog of :class:`~nmaccel.hw.sta.core.StaCore` for ``cfg`` with top-level ``name``."""
    def make() -> str:
        from amaranth.back import verilog

        from nmaccel.hw.sta_lean import sta_core
        return verilog.convert(sta_core(cfg), name=name)
    return cached_verilog("sta", ["nmaccel.hw.sta.core", "nmaccel.hw.sta_lean.core"],
                          f"{cfg.to_json(sort_keys=True)}|{name}", make)


def logic_text(verilog: str) -> str:
    """``verilog`` without source-location attributes (the logic, for build keys)."""
    return _SRC_ATTR.sub("", verilog)


class _BuildLock:
    """An exclusive lock file held while one process builds a model (waits at most
    ``seconds``)."""

    def __init__(self, path: Path, seconds: float) -> None:
        self.path, self.seconds = path, seconds

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "w")
        deadline = time.monotonic() + self.seconds
        while True:
            try:
                fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.fh.close()
                    raise TimeoutError(f"another process has been building {self.path.stem} "
                                       f"for more than {self.seconds:.0f} s; remove "
                                       f"{self.path} if no build is running") from None
                time.sleep(0.5)

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def top_ports(verilog: str, toplevel: str) -> list[str]:
    """Port names of module ``toplevel`` in ``verilog`` (``module top(a, b, ...);``)."""
    m = re.search(rf"^module\s+{re.escape(toplevel)}\s*\((.*?)\);", verilog, re.S | re.M)
    if m is None:
        raise ValueError(f"no module {toplevel!r} in the Verilog")
    # Yosys lists names only; an ANSI header ("input [7:0] a") ends each item with the name
    items = [re.sub(r"\[[^\]]*\]", " ", p).split() for p in m.group(1).split(",")]
    return [words[-1] for words in items if words]


def public_control_file(toplevel: str, names: Sequence[str]) -> str:
    """A Verilator control file that makes ``names`` of ``toplevel`` readable and writable
    through VPI, and nothing else."""
    return "`verilator_config\n" + "".join(
        f'public_flat_rw -module "{toplevel}" -var "{n}"\n' for n in names)


#: Arguments of the ``make`` that compiles a Verilator model: the model's own code at -O2
#: instead of verilated.mk's -Os (measured on the ``large`` STA layer: 1.12-1.19x the
#: cycles per second, 20% longer compile; same results), for this machine's CPU
#: (``-march=native``: 1.27x more on ``large``, 60k against 47k cycles/s, median of 3 runs).
#: A model built with ``-march=native`` runs only on a CPU like the one that built it, so
#: the key of such a build includes :func:`cpu_identity`.
VERILATOR_MAKE_ARGS = ("OPT_FAST=-O2 -march=native",)


@functools.cache
def cpu_identity() -> str:
    """What ``-march=native`` compiles for: the machine, CPU model name and feature flags
    (Linux ``/proc/cpuinfo``; elsewhere ``platform.processor()``)."""
    import platform
    parts = [platform.machine()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            seen = set()
            for line in fh:
                name, _, value = line.partition(":")
                name = name.strip()
                if name in ("model name", "flags", "Features", "CPU part") and name not in seen:
                    seen.add(name)
                    parts.append(f"{name}={value.strip()}")
    except OSError:
        parts.append(platform.processor())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _lean_verilator():
    """cocotb's Verilator runner without ``--public-flat-rw`` (which makes every signal of
    the design public and keeps Verilator from optimizing it: 5.7x slower on the STA core);
    :func:`simulation_build` lists what the benches touch in a control file instead. Its
    ``make`` gets :data:`VERILATOR_MAKE_ARGS`."""
    from cocotb_tools.runner import Verilator

    class LeanVerilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
            cmds[1] = cmds[1] + list(VERILATOR_MAKE_ARGS)
            return cmds
    return LeanVerilator()


MARKER = "nmaccel_built"


def _model_files(bdir: Path, toplevel: str) -> list[Path]:
    """What a run of the model in ``bdir`` uses: source, control file, simulator image."""
    return sorted(f for f in bdir.iterdir() if f.is_file() and (
        f.name in (f"{toplevel}.v", "public.vlt") or f.suffix == ".vvp"
        or (os.access(f, os.X_OK) and f.suffix == "")))


def _entry_problem(bdir: Path, toplevel: str) -> str | None:
    """Why the completed entry ``bdir`` is not usable, or None. An entry from before
    manifests (its marker holds the key only) gets one now: rebuilding every model once
    would take many minutes, and a damaged one still fails to start, which
    :func:`run_cached_model` answers with a rebuild."""
    marker = bdir / MARKER
    try:
        text = marker.read_text()
    except OSError as exc:
        return f"its marker cannot be read ({exc})"
    try:
        files = json.loads(text)["files"]
    except (ValueError, KeyError, TypeError):
        if not re.fullmatch(r"[0-9a-f]{16}\s*", text):
            return "its marker is damaged"
        files = {f.name: file_digest(f) for f in _model_files(bdir, toplevel)}
        write_atomic(marker, json.dumps({"files": files}, indent=1))
    return check_manifest(bdir, files)


def _usable(bdir: Path, toplevel: str) -> bool:
    """True if ``bdir`` holds a completed, intact build; a damaged one is reported and
    deleted."""
    if not (bdir / MARKER).exists():
        return False
    why = _entry_problem(bdir, toplevel)
    if why is None:
        touch(bdir / MARKER)
        return True
    _note_damaged(bdir, why)
    shutil.rmtree(bdir, ignore_errors=True)
    return False


def simulation_build(tag: str, verilog: str, toplevel: str, simulator: str = "verilator",
                     waves: bool = False, flags: Sequence[str] = (),
                     public: Sequence[str] = (), rebuild: bool = False) -> tuple[Path, str]:
    """Compile ``verilog`` (top module ``toplevel``) for ``simulator`` once; returns
    ``(build_dir, simulator name)`` for ``cocotb_tools.runner``'s ``test(build_dir=...)``.

    ``flags``: extra Verilator arguments. Verilator builds always get ``-Wno-fatal -O3``, and
    only the top module's ports and the signals named in ``public`` (e.g. memories a bench
    loads by backdoor) are visible to VPI (:func:`public_control_file`). Icarus builds
    :data:`~nmaccel.sim.simulators.ICARUS_BUILD_ARGS` (Verilog-2005, see there) and a
    1 ns / 1 ps timescale. Every argument is part of the key, and the
    cocotb version (the model links its libraries).

    ``rebuild``: delete the entry first (a model that did not start, :func:`run_cached_model`).
    A damaged entry is rebuilt (module docstring); a build that fails is retried once from an
    empty directory, then raises RuntimeError naming the cache directory."""
    sim = activate(find_simulator(simulator))
    visible = top_ports(verilog, toplevel) + list(public)
    flags = list(flags) if sim.name == "verilator" else list(ICARUS_BUILD_ARGS)
    make = list(VERILATOR_MAKE_ARGS) if sim.name == "verilator" else []
    native = any("native" in a for a in make)
    key = hashlib.sha256(f"{logic_text(verilog)}|{toplevel}|{sim.name}|{sim.version}|"
                         f"cocotb {cocotb_version()}|"
                         f"{flags}|{make or ''}|{cpu_identity() if native else ''}|{waves}|"
                         f"{visible if sim.name == 'verilator' else ''}"
                         .encode()).hexdigest()[:16]
    bdir = cache_root() / f"{tag}_{sim.name}_{key}"
    if not rebuild and _usable(bdir, toplevel):
        return bdir, sim.name
    with _BuildLock(bdir.with_name(bdir.name + ".lock"), BUILD_LOCK_SECONDS):
        if rebuild:
            shutil.rmtree(bdir, ignore_errors=True)
        elif _usable(bdir, toplevel):                    # built by another process meanwhile
            return bdir, sim.name
        for attempt in (1, 2):
            try:
                _build_model(bdir, sim, verilog, toplevel, waves, flags, visible)
                break
            except Exception as exc:
                shutil.rmtree(bdir, ignore_errors=True)
                if attempt == 2:
                    raise RuntimeError(f"the {sim.name} build in the build cache directory "
                                       f"{bdir} failed twice: {exc}") from None
                print(f"note: the {sim.name} build in {bdir} failed; rebuilding it once",
                      file=sys.stderr)
    return bdir, sim.name


def _build_model(bdir: Path, sim, verilog: str, toplevel: str, waves: bool,
                 flags: list, visible: list) -> None:
    """Compile into the empty ``bdir`` and record the manifest (:func:`simulation_build`)."""
    from cocotb_tools.runner import get_runner
    bdir.mkdir(parents=True, exist_ok=True)
    src = bdir / f"{toplevel}.v"
    write_atomic(src, verilog)
    if sim.name == "verilator":
        vlt = write_atomic(bdir / "public.vlt", public_control_file(toplevel, visible))
        runner = _lean_verilator()
        extra = {"build_args": ["-Wno-fatal", "-O3", *flags, str(vlt)]
                 + (["--trace-fst"] if waves else [])}
    else:
        runner = get_runner(sim.name)
        extra = {"timescale": ("1ns", "1ps"), "build_args": flags}
    build_logged(runner, bdir / "build.log", pch_fix=True, sources=[src],
                 hdl_toplevel=toplevel, build_dir=bdir, always=True, waves=waves, **extra)
    files = {f.name: file_digest(f) for f in _model_files(bdir, toplevel)}
    write_atomic(bdir / MARKER, json.dumps({"files": files}, indent=1))


_T = TypeVar("_T")


def run_cached_model(build: Callable[[bool], tuple[Path, str]],
                     run: Callable[[Path, str], _T]) -> _T:
    """``run(build_dir, simulator)`` on the model ``build(rebuild)`` returns; if the run does
    not start (:class:`ModelDidNotStart` or an OSError such as a truncated executable), print
    one line naming the cache directory, rebuild once and run again; a second such failure
    raises RuntimeError naming the directory."""
    bdir, sim = build(False)
    try:
        return run(bdir, sim)
    except (ModelDidNotStart, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"note: the simulation model in build cache directory {bdir} did not start "
              f"({first}); rebuilding it once", file=sys.stderr)
    bdir, sim = build(True)
    try:
        return run(bdir, sim)
    except (ModelDidNotStart, OSError) as exc:
        raise RuntimeError(f"the simulation model in build cache directory {bdir} did not "
                           f"start, also after a rebuild: {exc}") from None
