"""Result files are written through a temporary file and a rename (``nmaccel.files``): an
interrupted or failed write leaves the previous file whole and no temporary file behind."""

import json
import os

import pytest

from nmaccel import files


def test_a_write_interrupted_before_the_rename_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    target.write_text("old, complete\n")

    def interrupted(src, dst):
        raise KeyboardInterrupt                     # Ctrl-C between write and rename
    monkeypatch.setattr(files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.write_atomic(target, "new " * 100_000)
    assert target.read_text() == "old, complete\n"
    assert sorted(os.listdir(tmp_path)) == ["report.md"]           # no temporary file left


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    files.write_json(target, {"a": 1})

    class Full:
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            raise OSError(28, "No space left on device")
    monkeypatch.setattr(files.os, "fdopen", Full)
    with pytest.raises(OSError, match="No space left"):
        files.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["out.json"]


def test_writes_replace_whole_files_and_create_folders(tmp_path):
    target = tmp_path / "new" / "folder" / "x.bin"
    assert files.write_atomic(target, b"\x00\x01") == target
    files.write_atomic(target, b"\x02")
    assert target.read_bytes() == b"\x02"
    files.write_json(tmp_path / "y.json", [1, 2])
    assert (tmp_path / "y.json").read_text() == "[\n  1,\n  2\n]\n"


def test_written_files_get_a_normal_mode_not_the_temporary_files(tmp_path):
    """A new file gets 0666 less the umask (as open() would give), a replaced file keeps its
    mode; the temporary file's 0600 never sticks."""
    import os
    import stat

    from nmaccel.files import write_atomic
    old = os.umask(0o022)
    try:
        new = write_atomic(tmp_path / "new.txt", "x")
        assert stat.S_IMODE(new.stat().st_mode) == 0o644
        kept = tmp_path / "kept.txt"
        kept.write_text("a")
        kept.chmod(0o640)
        write_atomic(kept, "b")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_text() == "b"
    finally:
        os.umask(old)
