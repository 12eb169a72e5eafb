"""The one build cache (:mod:`nmaccel.sim.build_cache`): keys cover everything a design is
built from, Verilog text is reused, builds are keyed by simulator and flags."""

import os
from pathlib import Path

import pytest

from nmaccel import cachekey
from nmaccel.sim import build_cache
from nmaccel.spec.config import conv_preset, sta_preset


def test_source_closure_covers_the_core_and_what_it_imports():
    names = set(cachekey.source_closure("nmaccel.hw.sta.core"))
    for want in ("nmaccel.hw.sta.core", "nmaccel.hw.sta.softmax", "nmaccel.hw.sta.vector",
                 "nmaccel.hw.common.arith", "nmaccel.spec.config", "nmaccel.spec.sta_isa",
                 "nmaccel.spec.sta_timing", "nmaccel.spec", "nmaccel"):
        assert want in names
    assert not any(n.startswith(("nmaccel.model", "nmaccel.sim")) for n in names)


def test_conv_engine_closure_includes_the_arithmetic_it_imports():
    # the old hand-written file list left out hw/common/arith.py (postproc imports it)
    names = set(cachekey.source_closure("nmaccel.hw.conv.engine"))
    assert {"nmaccel.hw.common.arith", "nmaccel.hw.conv.postproc",
            "nmaccel.spec.conv_format"} <= names


def test_key_changes_with_any_source_of_the_design(tmp_path, monkeypatch):
    """Changing a file the design imports (here: arith.py returning twice the product, the
    case that once reused a stale conv model) changes the key; other files do not."""
    modules, params = ["nmaccel.hw.conv.engine"], conv_preset("small").to_json()
    key = build_cache.design_key(modules, params)
    closure = cachekey.source_closure(*modules)
    arith = closure["nmaccel.hw.common.arith"]
    changed = tmp_path / "arith.py"
    changed.write_text(arith.read_text().replace("return", "return 2 *", 1))
    patched = dict(closure, **{"nmaccel.hw.common.arith": changed})
    monkeypatch.setattr(cachekey, "source_closure", lambda *m: patched)
    assert build_cache.design_key(modules, params) != key
    monkeypatch.setattr(cachekey, "source_closure", lambda *m: closure)
    assert build_cache.design_key(modules, params) == key
    assert build_cache.design_key(modules, conv_preset("digits").to_json()) != key


def test_sta_verilog_is_cached_by_config_and_name(tmp_path, monkeypatch):
    from amaranth.back import verilog

    from nmaccel.hw.sta.core import StaCore
    monkeypatch.setenv("NMACCEL_BUILD_DIR", str(tmp_path))
    cfg = sta_preset("tiny")
    text = build_cache.sta_verilog(cfg)
    cached = list((tmp_path / "verilog").glob("sta_*.v"))
    assert len(cached) == 1 and cached[0].read_text() == text
    assert text == verilog.convert(StaCore(cfg), name="sta_core")
    monkeypatch.setattr(verilog, "convert", lambda *a, **k: 1 / 0)   # a second call reads it
    assert build_cache.sta_verilog(cfg) == text
    monkeypatch.undo()
    monkeypatch.setenv("NMACCEL_BUILD_DIR", str(tmp_path))
    assert "module other" in build_cache.sta_verilog(cfg, name="other")
    assert len(list((tmp_path / "verilog").glob("sta_*.v"))) == 2


def test_logic_text_drops_source_locations():
    a = '(* src = "/a/b.py:1" *)\nwire x;\n'
    b = '(* src = "/c/d.py:99" *)\nwire x;\n'
    assert build_cache.logic_text(a) == build_cache.logic_text(b)


def test_simulation_build_is_keyed_by_simulator_and_flags(tmp_path, monkeypatch):
    """A tiny design built twice reuses its model; other flags build another one."""
    from nmaccel.sim.simulators import require_simulator
    require_simulator("verilator")
    monkeypatch.setenv("NMACCEL_BUILD_DIR", str(tmp_path))
    src = "module tiny(input clk, output reg q); always @(posedge clk) q <= ~q; endmodule\n"
    a, sim = build_cache.simulation_build("t", src, "tiny", "verilator")
    assert sim == "verilator" and (a / "nmaccel_built").exists()
    assert (a / "public.vlt").read_text() == build_cache.public_control_file("tiny",
                                                                             ["clk", "q"])
    command = (a / "Vtop__verFiles.dat").read_text().splitlines()[1]   # Verilator's own record
    assert "--vpi" in command and "public.vlt" in command and "--public-flat-rw" not in command
    manifest = __import__("json").loads((a / "nmaccel_built").read_text())["files"]
    assert {"tiny", "tiny.v", "public.vlt"} <= set(manifest)     # the executable is checked
    assert build_cache.simulation_build("t", src, "tiny", "verilator")[0] == a
    b, _ = build_cache.simulation_build("t", src, "tiny", "verilator", flags=("--x-assign", "0"))
    assert b != a
    log = (a / "build.log").read_text()    # the model's code: -O2 for this machine's CPU
    assert "c++ -O2 -march=native " in log
    monkeypatch.setattr(build_cache, "cpu_identity", lambda: "another CPU")
    d, _ = build_cache.simulation_build("t", src, "tiny", "verilator")
    assert d not in (a, b)                  # a -march=native model is keyed by the CPU
    monkeypatch.setattr(build_cache, "VERILATOR_MAKE_ARGS", ("OPT_FAST=-O1",))
    c, _ = build_cache.simulation_build("t", src, "tiny", "verilator")
    assert c not in (a, b, d)                          # make arguments are in the key
    monkeypatch.setattr(build_cache, "cpu_identity", lambda: "a third CPU")
    assert build_cache.simulation_build("t", src, "tiny", "verilator")[0] == c  # no -march


def test_cpu_identity_is_stable_and_short():
    assert build_cache.cpu_identity() == build_cache.cpu_identity()
    assert len(build_cache.cpu_identity()) == 16


def test_a_held_build_lock_times_out_with_a_message(tmp_path):
    import fcntl
    lock = tmp_path / "x.lock"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with pytest.raises(TimeoutError, match="another process has been building x"):
            with build_cache._BuildLock(lock, 0.2):
                pass


def test_verilator_models_expose_ports_and_named_signals_only():
    """The control file makes the top's ports and the backdoor memories public, nothing else
    (cocotb's --public-flat-rw, which made the STA core 5.7x slower, is dropped)."""
    v = "module top(clk, rst, o__valid);\n  input clk;\nendmodule\nmodule sub(a);\nendmodule\n"
    assert build_cache.top_ports(v, "top") == ["clk", "rst", "o__valid"]
    with pytest.raises(ValueError, match="no module 'other'"):
        build_cache.top_ports(v, "other")
    text = build_cache.public_control_file("top", ["clk", "wbuf"])
    assert text.splitlines() == ["`verilator_config", 'public_flat_rw -module "top" -var "clk"',
                                 'public_flat_rw -module "top" -var "wbuf"']


# --- integrity: a damaged entry is reported, deleted and rebuilt once ---------------------------

def test_a_truncated_cached_verilog_file_is_rebuilt(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NMACCEL_BUILD_DIR", str(tmp_path))
    made = []

    def make():
        made.append(1)
        return "module m(input a);\n" + "wire w;\n" * 100 + "endmodule\n"
    text = build_cache.cached_verilog("t", ["nmaccel.spec.config"], "p", make)
    assert build_cache.cached_verilog("t", ["nmaccel.spec.config"], "p", make) == text
    assert len(made) == 1 and "damaged" not in capsys.readouterr().err
    (path,) = (tmp_path / "verilog").glob("t_*.v")
    path.write_text(text[:40])                                   # truncated
    assert build_cache.cached_verilog("t", ["nmaccel.spec.config"], "p", make) == text
    err = capsys.readouterr().err
    assert len(made) == 2 and f"build cache entry {path} is damaged" in err
    assert err.count("\n") == 1 and path.read_text() == text
    side = path.parent / (path.name + ".sha256")
    side.write_text("garbage")                                   # a bad manifest
    build_cache.cached_verilog("t", ["nmaccel.spec.config"], "p", make)
    assert len(made) == 3
    side.unlink()                            # from before manifests: complete, so adopted
    assert build_cache.cached_verilog("t", ["nmaccel.spec.config"], "p", make) == text
    assert len(made) == 3 and side.exists()
    side.unlink()
    path.write_text(text[:40])               # from before manifests, cut short: rebuilt
    assert build_cache.cached_verilog("t", ["nmaccel.spec.config"], "p", make) == text
    assert len(made) == 4


def _fake_simulator(monkeypatch, tmp_path, fail=0):
    """A simulator whose 'build' writes an executable named after the top; the first
    ``fail`` builds raise."""
    from nmaccel.sim.simulators import Simulator
    monkeypatch.setenv("NMACCEL_BUILD_DIR", str(tmp_path))
    sim = Simulator("icarus", "iverilog", "0.0", str(tmp_path))
    monkeypatch.setattr(build_cache, "find_simulator", lambda name: sim)
    monkeypatch.setattr(build_cache, "activate", lambda s: s)
    builds = []

    def build_logged(runner, log_file, pch_fix=False, **kw):
        builds.append(kw["build_dir"])
        if len(builds) <= fail:
            raise RuntimeError("simulation build failed (broken compiler)")
        exe = kw["build_dir"] / kw["hdl_toplevel"]
        exe.write_bytes(b"\x7fELF" + bytes(range(256)) * 40)
        exe.chmod(0o755)
        (kw["build_dir"] / "sim.vvp").write_text("#! vvp\n" * 50)
    monkeypatch.setattr(build_cache, "build_logged", build_logged)
    return builds


SRC = "module tiny(input clk, output reg q); always @(posedge clk) q <= ~q; endmodule\n"


def test_a_truncated_cached_binary_is_rebuilt(tmp_path, monkeypatch, capsys):
    builds = _fake_simulator(monkeypatch, tmp_path)
    bdir, _ = build_cache.simulation_build("t", SRC, "tiny", "icarus")
    manifest = __import__("json").loads((bdir / "nmaccel_built").read_text())["files"]
    assert set(manifest) == {"tiny", "tiny.v", "sim.vvp"}
    assert build_cache.simulation_build("t", SRC, "tiny", "icarus")[0] == bdir
    assert len(builds) == 1
    with open(bdir / "tiny", "r+b") as fh:                        # truncated executable
        fh.truncate(100)
    assert build_cache.simulation_build("t", SRC, "tiny", "icarus")[0] == bdir
    err = capsys.readouterr().err
    assert len(builds) == 2 and f"build cache entry {bdir} is damaged" in err
    assert "tiny has 100 bytes" in err
    data = (bdir / "sim.vvp").read_bytes()                        # same size, other bytes
    (bdir / "sim.vvp").write_bytes(data[:-1] + b"X")
    build_cache.simulation_build("t", SRC, "tiny", "icarus")
    assert len(builds) == 3 and "sim.vvp does not match" in capsys.readouterr().err
    (bdir / "nmaccel_built").write_text("0123456789abcdef")        # an entry from before
    build_cache.simulation_build("t", SRC, "tiny", "icarus")       # manifests: adopted
    assert len(builds) == 3 and "files" in (bdir / "nmaccel_built").read_text()
    (bdir / "nmaccel_built").write_text("{\"fil")                    # a damaged marker
    build_cache.simulation_build("t", SRC, "tiny", "icarus")
    assert len(builds) == 4 and "its marker is damaged" in capsys.readouterr().err


def test_a_build_that_fails_once_is_retried(tmp_path, monkeypatch, capsys):
    builds = _fake_simulator(monkeypatch, tmp_path, fail=1)
    bdir, _ = build_cache.simulation_build("t", SRC, "tiny", "icarus")
    assert len(builds) == 2 and (bdir / "nmaccel_built").exists()
    assert f"build in {bdir} failed; rebuilding it once" in capsys.readouterr().err


def test_a_build_that_fails_twice_names_the_cache_directory(tmp_path, monkeypatch):
    builds = _fake_simulator(monkeypatch, tmp_path, fail=2)
    with pytest.raises(RuntimeError, match=r"build cache directory .*t_icarus_\w+ failed "
                                           r"twice: simulation build failed \(broken"):
        build_cache.simulation_build("t", SRC, "tiny", "icarus")
    assert len(builds) == 2
    assert not any(p.is_dir() for p in tmp_path.iterdir())       # no half-built entry left


def test_a_model_that_does_not_start_is_rebuilt_once(tmp_path, capsys):
    calls = []

    def build(rebuild):
        calls.append(("build", rebuild))
        return tmp_path, "verilator"

    def run_ok_second(bdir, sim):
        calls.append("run")
        if calls.count("run") == 1:
            raise OSError(8, "Exec format error")
        return 42
    assert build_cache.run_cached_model(build, run_ok_second) == 42
    assert calls == [("build", False), "run", ("build", True), "run"]
    assert f"model in build cache directory {tmp_path} did not start" in capsys.readouterr().err

    def never(bdir, sim):
        raise build_cache.ModelDidNotStart("bench wrote no results")
    with pytest.raises(RuntimeError, match=f"{tmp_path} did not start, also after a rebuild"):
        build_cache.run_cached_model(build, never)

    def bench_failure(bdir, sim):                                 # not a start failure
        raise RuntimeError("cocotb STA bench failed")
    calls.clear()
    with pytest.raises(RuntimeError, match="bench failed"):
        build_cache.run_cached_model(build, bench_failure)
    assert calls == [("build", False)]


def test_a_simulator_failing_without_results_did_not_start(tmp_path):
    """cocotb's runner raises RuntimeError for a simulator that exits non-zero (a damaged
    .vvp: "Command failed with return code: 1"); without a results file that is
    ModelDidNotStart, which run_cached_model answers with one rebuild."""
    from nmaccel.sim.simulators import ModelDidNotStart, run_bench

    class Runner:
        def __init__(self, write):
            self.write = write

        def test(self, results_xml, **kw):
            if self.write:
                Path(results_xml).write_text("<testsuites/>")
            raise RuntimeError("Command failed with return code: 1")
    xml = tmp_path / "results.xml"
    with pytest.raises(ModelDidNotStart, match="failed without results"):
        run_bench(Runner(False), results_xml=str(xml))
    assert run_bench(Runner(True), results_xml=str(xml)) == xml   # the caller reads it


def test_finding_the_sources_imports_nothing(tmp_path):
    """A cache hit must not pay for importing the design (Amaranth, NumPy): the closure is
    found from the finders' specs and the import lists are remembered per source digest; the
    bench module that runs inside the simulator does not import NumPy (it took most of a
    second there)."""
    import subprocess
    import sys
    code = ("import sys; from nmaccel.cachekey import source_digest;"
            "source_digest('nmaccel.hw.sta.core', 'nmaccel.hw.conv.engine');"
            "import nmaccel.sim.sta_bench;"
            "print(sorted(m for m in ('amaranth', 'numpy', 'torch') if m in sys.modules))")
    for _ in range(2):                       # without and with the remembered import lists
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**__import__("os").environ, "NMACCEL_CACHE": str(tmp_path)},
                             check=True).stdout
        assert out.strip() == "[]"
    assert (tmp_path / "imports" / "imports.json").is_file()


def test_remembered_import_lists_follow_the_source(tmp_path, monkeypatch):
    monkeypatch.setenv("NMACCEL_CACHE", str(tmp_path))
    monkeypatch.setattr(cachekey, "_IMPORTS", None)
    pkg = tmp_path / "src" / "nmaccel_probe"
    pkg.mkdir(parents=True)
    mod = pkg / "m.py"
    mod.write_text("from nmaccel.spec import config\n")
    assert cachekey._imported_modules(mod, "nmaccel_probe.m") == [
        "nmaccel.spec", "nmaccel.spec.config"]
    mod.write_text("import nmaccel.files\n")            # another source: parsed again
    assert cachekey._imported_modules(mod, "nmaccel_probe.m") == ["nmaccel.files"]
    (tmp_path / "imports" / "imports.json").write_text("not json")     # damaged: re-parsed
    monkeypatch.setattr(cachekey, "_IMPORTS", None)
    assert cachekey._imported_modules(mod, "nmaccel_probe.m") == ["nmaccel.files"]


def test_simulator_versions_are_remembered_until_the_executable_changes(tmp_path,
                                                                        monkeypatch):
    import os

    from nmaccel.sim import simulators
    monkeypatch.setenv("NMACCEL_CACHE", str(tmp_path))
    exe = tmp_path / "fakesim"
    exe.write_text("#!/bin/sh\necho 'Fake 1.0'\n")
    exe.chmod(0o755)
    assert simulators._run_version([str(exe), "--version"]) == "Fake 1.0"
    calls = []
    real = simulators._ask_version
    monkeypatch.setattr(simulators, "_ask_version", lambda argv: calls.append(argv) or real(argv))
    assert simulators._run_version([str(exe), "--version"]) == "Fake 1.0" and calls == []
    exe.write_text("#!/bin/sh\necho 'Fake 2.00'\n")                     # replaced
    os.utime(exe, ns=(1, 2))
    assert simulators._run_version([str(exe), "--version"]) == "Fake 2.00" and len(calls) == 1


def test_models_are_keyed_by_cocotb_and_run_with_this_environments_libraries(
        tmp_path, monkeypatch):
    """A Verilator model links cocotb's libraries through the run path of the environment
    that built it; the cache shares models between environments, so the key holds the cocotb
    version and every run puts this environment's cocotb libraries first (a model built from
    a since-removed CI clone failed to start with status 127)."""
    from cocotb_tools.config import libs_dir

    from nmaccel.sim import simulators
    from nmaccel.sim.simulators import require_simulator
    require_simulator("verilator")
    monkeypatch.setenv("NMACCEL_BUILD_DIR", str(tmp_path))
    monkeypatch.setenv("LD_LIBRARY_PATH", "/some/where")
    assert simulators.cocotb_library_path() == f"{libs_dir}{os.pathsep}/some/where"
    src = "module tiny(input clk, output reg q); always @(posedge clk) q <= ~q; endmodule\n"
    a, _ = build_cache.simulation_build("t", src, "tiny", "verilator")
    monkeypatch.setattr(build_cache, "cocotb_version", lambda: "0.0-other")
    b, _ = build_cache.simulation_build("t", src, "tiny", "verilator")
    assert a != b

    seen = {}

    class Runner:
        def test(self, **kwargs):
            seen.update(kwargs["extra_env"])
            Path(kwargs["results_xml"]).write_text("<testsuites/>")
    simulators.run_bench(Runner(), results_xml=str(tmp_path / "r.xml"), extra_env={"X": "1"})
    assert seen["LD_LIBRARY_PATH"].split(os.pathsep)[0] == str(libs_dir) and seen["X"] == "1"
