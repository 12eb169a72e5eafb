"""The one build cache (:mod:`nmaccel.sim.build_cache`): keys cover everything a design is
built from, Verilog text is reused, builds are keyed by simulator and flags."""

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
    cached[0].write_text(text + "// reused\n")        # a second call reads the file
    assert build_cache.sta_verilog(cfg).endswith("// reused\n")
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
    assert build_cache.simulation_build("t", src, "tiny", "verilator")[0] == a
    b, _ = build_cache.simulation_build("t", src, "tiny", "verilator", flags=("--x-assign", "0"))
    assert b != a


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
