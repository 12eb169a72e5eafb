"""The STA Verilog text cache of :mod:`nmaccel.sim.sta_rtl` (keyed by config and sources)."""

from nmaccel.spec.config import sta_preset
from nmaccel.sim import sta_rtl


def test_source_closure_covers_the_core_and_what_it_imports():
    names = {(p.parent.name, p.name) for p in sta_rtl.source_closure("nmaccel.hw.sta.core")}
    for want in [("sta", "core.py"), ("sta", "softmax.py"), ("sta", "vector.py"),
                 ("hw", "config.py"), ("model", "sta_isa.py"), ("model", "sta_cycles.py")]:
        assert want in names


def test_verilog_text_is_cached_by_config(tmp_path, monkeypatch):
    from amaranth.back import verilog

    from nmaccel.hw.sta.core import StaCore
    monkeypatch.setenv("NMACCEL_BUILD_DIR", str(tmp_path))
    cfg = sta_preset("tiny")
    text = sta_rtl.verilog_source(cfg)
    cached = list((tmp_path / "verilog").glob("sta_*.v"))
    assert len(cached) == 1 and cached[0].read_text() == text
    assert text == verilog.convert(StaCore(cfg), name=sta_rtl.TOPLEVEL)
    cached[0].write_text(text + "// reused\n")        # a second call reads the file
    assert sta_rtl.verilog_source(cfg).endswith("// reused\n")
    other = cfg.replace(rows=4, cols=4, softmax_lanes=4)
    assert sta_rtl.verilog_key(other) != sta_rtl.verilog_key(cfg)
