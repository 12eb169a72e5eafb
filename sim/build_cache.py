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
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from nmaccel.cachekey import source_digest
from nmaccel.files import write_atomic
from nmaccel.sim.simulators import ICARUS_BUILD_ARGS, activate, build_logged, find_simulator

__all__ = ["cache_root", "design_key", "top_ports", "public_control_file", "cached_verilog",
           "simulation_build", "sta_verilog", "logic_text", "BUILD_LOCK_SECONDS"]

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
    import amaranth
    h = hashlib.sha256(params.encode())
    h.update(f"|amaranth {amaranth.__version__}|".encode())
    h.update(source_digest(*modules).encode())
    return h.hexdigest()[:20]


def cached_verilog(tag: str, modules: Sequence[str], params: str,
                   make: Callable[[], str]) -> str:
    """The Verilog of a design: ``make()`` on a cache miss, the kept text otherwise."""
    path = cache_root() / "verilog" / f"{tag}_{design_key(modules, params)}.v"
    if path.exists():
        return path.read_text()
    text = make()
    write_atomic(path, text)
    return text


def sta_verilog(cfg, name: str = "sta_core") -> str:
    """Verilog of :class:`~nmaccel.hw.sta.core.StaCore` for ``cfg`` with top-level ``name``."""
    def make() -> str:
        from amaranth.back import verilog

        from nmaccel.hw.sta.core import StaCore
        return verilog.convert(StaCore(cfg), name=name)
    return cached_verilog("sta", ["nmaccel.hw.sta.core"],
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


def _lean_verilator():
    """cocotb's Verilator runner without ``--public-flat-rw`` (which makes every signal of
    the design public and keeps Verilator from optimizing it: 5.7x slower on the STA core);
    :func:`simulation_build` lists what the benches touch in a control file instead."""
    from cocotb_tools.runner import Verilator

    class LeanVerilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
            return cmds
    return LeanVerilator()


def simulation_build(tag: str, verilog: str, toplevel: str, simulator: str = "verilator",
                     waves: bool = False, flags: Sequence[str] = (),
                     public: Sequence[str] = ()) -> tuple[Path, str]:
    """Compile ``verilog`` (top module ``toplevel``) for ``simulator`` once; returns
    ``(build_dir, simulator name)`` for ``cocotb_tools.runner``'s ``test(build_dir=...)``.

    ``flags``: extra Verilator arguments. Verilator builds always get ``-Wno-fatal -O3``, and
    only the top module's ports and the signals named in ``public`` (e.g. memories a bench
    loads by backdoor) are visible to VPI (:func:`public_control_file`). Icarus builds
    :data:`~nmaccel.sim.simulators.ICARUS_BUILD_ARGS` (Verilog-2005, see there) and a
    1 ns / 1 ps timescale. Every argument is part of the key."""
    sim = activate(find_simulator(simulator))
    visible = top_ports(verilog, toplevel) + list(public)
    flags = list(flags) if sim.name == "verilator" else list(ICARUS_BUILD_ARGS)
    key = hashlib.sha256(f"{logic_text(verilog)}|{toplevel}|{sim.name}|{sim.version}|"
                         f"{flags}|{waves}|{visible if sim.name == 'verilator' else ''}"
                         .encode()).hexdigest()[:16]
    bdir = cache_root() / f"{tag}_{sim.name}_{key}"
    marker = bdir / "nmaccel_built"
    if marker.exists():
        return bdir, sim.name
    with _BuildLock(bdir.with_name(bdir.name + ".lock"), BUILD_LOCK_SECONDS):
        if marker.exists():                    # built by another process meanwhile
            return bdir, sim.name
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
        marker.write_text(key)
    return bdir, sim.name
