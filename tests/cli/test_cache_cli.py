"""``nmaccel cache``: sizes per cache, and pruning the least recently used entries to a size
(a build another process holds locked is kept)."""

import fcntl
import os

from nmaccel.cli import main
from nmaccel.cli.cache import entries, prune


def _entry(path, size, when):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (when, when))


def test_prune_deletes_least_recently_used_until_it_fits(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NMACCEL_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("NMACCEL_BUILD_DIR", str(tmp_path / "b"))
    b, c = tmp_path / "b", tmp_path / "c" / "calibration"
    _entry(b / "old_model" / "nmaccel_built", 1000, 100)
    _entry(b / "locked_model" / "nmaccel_built", 1000, 50)       # oldest, but in use
    _entry(b / "new_model" / "nmaccel_built", 1000, 400)
    _entry(b / "verilog" / "sta_x.v", 500, 200)
    _entry(c / "k.pkl", 700, 300)
    assert [e.kind for e in entries()] == ["model", "model", "verilog", "calibration", "model"]
    assert main(["cache", "info"]) == 0
    assert "total            5 entries  0.00 GB" in capsys.readouterr().out
    lock = b / "locked_model.lock"
    lock.write_text("")
    with open(lock) as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)           # another process is building it
        removed, left = prune(2000, dry_run=True)
        assert [e.paths[0].name for e in removed] == ["old_model", "sta_x.v", "k.pkl"]
        assert (b / "old_model").exists()        # a dry run deletes nothing
        removed, left = prune(2000)
    assert left == 2000 and not (b / "old_model").exists() and not (c / "k.pkl").exists()
    assert (b / "locked_model").exists() and (b / "new_model").exists()
    assert main(["cache", "prune", "--keep-gb", "0", "--dry-run"]) == 0
    assert "would delete 2 entries" in capsys.readouterr().out


def test_a_used_build_is_touched(tmp_path, monkeypatch):
    """Finding a model in the cache marks its use (what prune orders by)."""
    from nmaccel.sim import build_cache
    from nmaccel.sim.simulators import require_simulator
    require_simulator("verilator")
    monkeypatch.setenv("NMACCEL_BUILD_DIR", str(tmp_path))
    src = "module tiny(input clk, output reg q); always @(posedge clk) q <= ~q; endmodule\n"
    a, _ = build_cache.simulation_build("t", src, "tiny", "verilator")
    os.utime(a / build_cache.MARKER, (1, 1))
    assert build_cache.simulation_build("t", src, "tiny", "verilator")[0] == a
    assert (a / build_cache.MARKER).stat().st_mtime > 1
