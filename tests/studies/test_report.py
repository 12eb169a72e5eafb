"""``nmaccel report``: derived columns, Markdown/README generation, the parallel runner
(local processes and a real Dask LocalCluster) and one-line errors for bad input. The RTL
sweep itself is not run here (it takes half an hour); point results are synthetic."""

import json
import math
import operator

import pytest

from nmaccel.boards.measured import board_fmax, fmax_missing
from nmaccel.cli import main
from nmaccel.studies import report
from nmaccel.studies.sweep import DaskUnreachable, connect_dask, map_parallel, run_sweep


def fake_point(preset, nm, total, exact=True):
    cycles = {"total": total, "predicted": total, "model_error": 0.0, "sparse_gemm": total // 2,
              "dense_gemm": total // 4, "softmax_wait": 10, "softmax_busy": 100,
              "vector": total // 4, "stalls": 3, "gemm_only": total // 2 + total // 4 - 10}
    return {"preset": preset, "nm": nm, "layer": 0, "seq": 32, "simulator": "verilator",
            "array": [8, 8, 4], "multipliers": 256, "bit_exact": exact, "cycles": cycles,
            "useful_macs": 1000, "utilization": 0.5 if nm == "dense" else 0.4567,
            "segments": 3, "sim_run_seconds": 1.0, "sim_cycles_per_second": 100000,
            "wall_seconds": 2.0, "worker": None}


def fake_data():
    pts = [fake_point("ulx3s", "dense", 400000), fake_point("ulx3s", "2:4", 210000),
           fake_point("ulx3s", "1:8", 70000), fake_point("large", "dense", 60000),
           fake_point("large", "2:4", 33000)]
    t = {"median_s": 0.002, "min_s": 0.0018, "max_s": 0.01, "repeats": 50}
    mach = {"cpu": "test cpu", "cores": 2, "torch": "2.13", "torch_threads": 2, "python": "3.11"}
    return {"meta": {"command": "nmaccel report --jobs 2", "date": "2026-01-01 00:00 UTC",
                     "git": "abc", "machine": mach, "jobs": 2, "dask": None,
                     "wall_seconds": 1800.0},
            "paper": report.PAPER,
            "baselines": {"minilm_layer": {"workload": "MiniLM-L6 layer 0, seq 32", "seq": 32,
                                           "layer": 0, "macs": 57_000_000, "heads": 12,
                                           "fp32": dict(t), "int8_dynamic": dict(t, min_s=0.0007),
                                           "machine": mach}},
            "sweep": {"builds": [{}, {}, {}], "points": pts, "build_seconds": 300.0,
                      "run_seconds": 900.0}}


def write_boards(tmp_path, entries):
    """A folder of build records (as ``nmaccel build`` writes them) for ``source=``."""
    for i, e in enumerate(entries):
        (tmp_path / f"build{i}.json").write_text(json.dumps(e))
    return tmp_path


def test_board_fmax_reads_records_and_is_none_when_missing(tmp_path):
    assert board_fmax("ulx3s", "sta", "ulx3s", tmp_path) is None
    write_boards(tmp_path, [{"board": "ulx3s", "design": "sta", "preset": "ulx3s",
                             "fmax_mhz": 104.2, "target_mhz": 100, "timing_met": True}])
    assert board_fmax("ulx3s", "sta", "ulx3s", tmp_path) == 104.2
    assert board_fmax("ulx3s", "conv", "ulx3s", tmp_path) is None
    (tmp_path / "build0.json").write_text("{not json")
    assert board_fmax("ulx3s", "sta", "ulx3s", tmp_path) is None


def test_packaged_records_give_the_measured_fmax():
    """The demo and report read these (an installed package has them too)."""
    from nmaccel.boards.measured import MEASURED
    for design, preset in (("sta", "ulx3s_lite"), ("conv", "ulx3s")):
        rec = json.loads((MEASURED / f"ulx3s-{design}-{preset}.json").read_text())
        assert rec["fits"] and rec["fmax_mhz"] > 40        # routed builds (reports/boards.md)
        assert board_fmax("ulx3s", design, preset) == pytest.approx(rec["fmax_mhz"], abs=0.01)
    assert "does not fit" in fmax_missing("ulx3s", "sta", "ulx3s_board")


def test_derive_without_fmax_says_not_measured(tmp_path):
    data = report.derive(fake_data(), "ulx3s", tmp_path)
    pts = {(p["preset"], p["nm"]): p for p in data["sweep"]["points"]}
    assert pts[("ulx3s", "2:4")]["speedup_vs_dense"] == round(400000 / 210000, 3)
    assert pts[("large", "2:4")]["speedup_vs_dense"] == round(60000 / 33000, 3)
    assert all(p["projected_us"] is None for p in pts.values())
    md = report.markdown(data)
    assert "fmax not measured" in md and "14.47" in md and "What differs" in md
    block = report.readme_block(data)
    assert "fmax not measured" in block
    assert [r["nm"] for r in data["headline"]["rows"]] == ["dense", "2:4", "1:8"]


def test_a_build_that_does_not_fit_is_named_as_the_reason(tmp_path):
    assert "no ulx3s board build of `ulx3s`" in report.readme_block(
        report.derive(fake_data(), "ulx3s", tmp_path))
    write_boards(tmp_path, [{"board": "ulx3s", "board_title": "ULX3S 85F", "design": "sta",
                             "preset": "ulx3s", "fits": False, "fmax_mhz": None,
                             "overused": ["TRELLIS_COMB 256086/83640"]}])
    assert board_fmax("ulx3s", "sta", "ulx3s", tmp_path) is None
    data = report.derive(fake_data(), "ulx3s", tmp_path)
    assert all(p["projected_us"] is None for p in data["sweep"]["points"])
    assert ("fmax not measured: the `ulx3s` sta build does not fit the ULX3S 85F "
            "(TRELLIS_COMB 256086/83640; reports/boards.md)") in report.readme_block(data)


def test_derive_with_fmax_projects_time_and_ratios(tmp_path):
    write_boards(tmp_path, [{"board": "ulx3s", "design": "sta", "preset": "ulx3s",
                             "fmax_mhz": 100.0}])
    data = report.derive(fake_data(), "ulx3s", tmp_path)
    p = next(p for p in data["sweep"]["points"] if p["nm"] == "2:4" and p["preset"] == "ulx3s")
    assert p["projected_us"] == 2100.0
    assert p["vs_torch_fp32"] == round(1800 / 2100, 3)
    assert p["vs_torch_int8"] == round(700 / 2100, 3)
    large = next(p for p in data["sweep"]["points"] if p["preset"] == "large")
    assert large["projected_us"] is None          # no board build for the large preset


def test_readme_block_round_trips_and_catches_hand_edits(tmp_path):
    write_boards(tmp_path, [{"board": "ulx3s", "design": "sta", "preset": "ulx3s",
                             "fmax_mhz": 97.5}])
    data = report.derive(fake_data(), "ulx3s", tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# title\n\nintro\n")
    assert report.update_readme(readme, data)
    text = readme.read_text()
    assert text.startswith("# title") and report.README_BEGIN in text
    assert report.parse_readme_block(text)["rows"] == data["headline"]["rows"]
    assert not report.update_readme(readme, data)         # idempotent
    edited = text.replace("| 210000 |", "| 200000 |")
    assert edited != text
    assert report.parse_readme_block(edited)["rows"] != data["headline"]["rows"]
    with pytest.raises(ValueError, match="no report-headline block"):
        report.parse_readme_block("# nothing here")


def test_write_outputs_and_reuse_cli(tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    readme = tmp_path / "README.md"
    readme.write_text("# t\n")
    (out / "report.json").write_text(json.dumps(fake_data()))
    assert main(["report", "--reuse", "--out", str(out), "--readme", str(readme),
                 "--boards", str(tmp_path)]) == 0
    for name in ("report.json", "report.md", "report.png"):
        assert (out / name).stat().st_size > 0
    data = json.loads((out / "report.json").read_text())
    assert report.parse_readme_block(readme.read_text())["rows"] == data["headline"]["rows"]
    # a board build landing later: --reuse refreshes the fmax columns without simulating
    (tmp_path / "boards").mkdir()
    boards = write_boards(tmp_path / "boards", [{"board": "ulx3s", "design": "sta",
                                                 "preset": "ulx3s", "fmax_mhz": 50.0}])
    assert main(["report", "--reuse", "--out", str(out), "--readme", str(readme),
                 "--boards", str(boards)]) == 0
    data = json.loads((out / "report.json").read_text())
    assert data["headline"]["rows"][0]["projected_us"] == 8000.0
    assert "8000.0" in readme.read_text()


@pytest.mark.parametrize("argv, message", [
    (["report", "--presets", "ulx3s,huge"], "unknown STA preset 'huge'; expected one of"),
    (["report", "--board", "de10"], "unknown board 'de10'; expected one of"),
    (["report", "--nm", "dense,3:5"], "m must be a power of two"),
    (["report", "--nm", "2:x"], "--nm"),
    (["report", "--jobs", "0"], "--jobs must be a positive integer, not 0"),
    (["report", "--jobs", "two"], "--jobs must be a positive integer, not 'two'"),
])
def test_bad_arguments_give_one_line_errors(argv, message, usage_error):
    assert message in usage_error(argv)


def test_reuse_without_json_and_nm_without_dense_are_clear_errors(tmp_path, capsys):
    assert main(["report", "--reuse", "--out", str(tmp_path)]) == 2
    assert "--reuse needs" in capsys.readouterr().err
    assert main(["report", "--nm", "2:4", "--out", str(tmp_path), "--readme", ""]) == 2
    assert "--nm and --nm-others must include 'dense'" in capsys.readouterr().err


def test_unreachable_dask_scheduler_is_a_clear_error(tmp_path, capsys):
    assert main(["report", "--dask", "tcp://127.0.0.1:9", "--out", str(tmp_path),
                 "--readme", ""]) == 2
    err = capsys.readouterr().err
    assert "cannot reach Dask scheduler at tcp://127.0.0.1:9" in err and "Traceback" not in err
    with pytest.raises(DaskUnreachable, match="cannot reach Dask scheduler at not-an-address"):
        connect_dask("not-an-address", timeout=1)


def test_an_unexpected_dask_error_names_where_it_came_from(monkeypatch):
    distributed = pytest.importorskip("distributed")

    def client_that_asserts(*args, **kwargs):
        assert kwargs["timeout"] == 10

    monkeypatch.setattr(distributed, "Client", client_that_asserts)
    with pytest.raises(DaskUnreachable, match=r"within 3 s \(AssertionError at test_report.py:\d+ "
                                              r"`assert kwargs\[\"timeout\"\] == 10`"):
        connect_dask("tcp://127.0.0.1:8786", timeout=3.0)


def test_map_parallel_local_processes_keep_order():
    seen = []
    assert map_parallel(math.factorial, [5, 3, 7, 1], jobs=2, progress=False,
                        on_result=lambda i, r: seen.append(i)) == [120, 6, 5040, 1]
    assert sorted(seen) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="--jobs must be a positive integer, not 0"):
        map_parallel(math.factorial, [1], jobs=0)


def test_map_parallel_names_the_failing_item():
    with pytest.raises(RuntimeError, match="task -1 failed: ValueError"):
        map_parallel(math.factorial, [3, -1], jobs=1, progress=False)


class FakePoint:
    def __init__(self, cfg, value):
        self.cfg, self.value, self.label = cfg, value, f"{cfg}/{value}"

    def build_key(self):
        return (self.cfg,)


def fake_build(point):
    return {"built": point.cfg, "worker": _worker()}


def fake_run(point):
    return {"value": point.value * 10, "worker": _worker()}


def _worker():
    try:
        from distributed import get_worker
        return get_worker().address
    except ValueError:
        return None


def test_run_sweep_builds_each_config_once_in_process():
    points = [FakePoint("a", 1), FakePoint("b", 2), FakePoint("a", 3)]
    res = run_sweep(points, jobs=1, progress=False, build_fn=fake_build, run_fn=fake_run)
    assert [b["built"] for b in res["builds"]] == ["a", "b"]
    assert [r["value"] for r in res["points"]] == [10, 20, 30]


def test_run_sweep_on_a_dask_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        # the client shares the cluster's IO loop (as distributed's own tests do) instead of
        # starting a second loop thread: distributed waits a fixed 10 s for that thread, and on
        # a loaded CI machine this once failed with a bare AssertionError
        client = connect_dask(cluster.scheduler_address, timeout=10, loop=cluster.loop)
        try:
            points = [FakePoint("a", 1), FakePoint("b", 2), FakePoint("a", 3)]
            res = run_sweep(points, jobs=1, client=client, progress=False,
                            build_fn=fake_build, run_fn=fake_run)
            assert [r["value"] for r in res["points"]] == [10, 20, 30]
            built_on = {b["built"]: b["worker"] for b in res["builds"]}
            # every point ran on the worker that built its model
            for p, r in zip(points, res["points"]):
                assert r["worker"] == built_on[p.cfg]
            assert map_parallel(operator.neg, [1, 2], client=client, progress=False) == [-1, -2]
        finally:
            client.close()


def test_sweep_skips_points_the_compiler_cannot_map():
    """1:16 on ulx3s: the dense window (4 lanes x 16) exceeds MiniLM's head dim of 32, so the
    point is reported as skipped with the compiler's reason instead of aborting the sweep."""
    from nmaccel.studies.report import split_runnable
    from nmaccel.studies.sweep import StaPoint
    runnable, skipped = split_runnable([StaPoint("ulx3s", (2, 4), 0, 32),
                                        StaPoint("ulx3s", (1, 16), 0, 32),
                                        StaPoint("ulx3s", None, 0, 300)])
    assert [p.pattern for p in runnable] == ["2:4"]
    assert skipped[0]["nm"] == "1:16"
    assert "multiple of the dense window (64)" in skipped[0]["reason"]
    assert "exceeds the configured maximum max_seq=256" in skipped[1]["reason"]


def test_an_interrupted_report_resumes_from_its_partial_file(tmp_path, monkeypatch):
    """Ctrl-C keeps the finished points (and the baselines) in report.partial.json;
    --resume runs only the rest; a partial file of another plan is refused."""
    from nmaccel.studies import baselines, sweep
    base = fake_data()["baselines"]["minilm_layer"]
    measured = []
    monkeypatch.setattr(baselines, "minilm_layer_baseline",
                        lambda seq, layer: measured.append(seq) or base)
    ran = []

    def fake_sweep(points, jobs, client, progress, on_result=None):
        results = []
        for j, p in enumerate(points):
            ran.append(p.label)
            if len(ran) == 2 and len(points) == 2:
                raise KeyboardInterrupt              # the second point of the first run
            r = fake_point(p.preset, p.pattern, 1000 if p.nm else 2000)
            on_result(j, r)
            results.append(r)
        return {"builds": [], "points": results, "build_seconds": 0.0, "run_seconds": 0.0}
    monkeypatch.setattr(sweep, "run_sweep", fake_sweep)
    settings = report.ReportSettings(presets=["ulx3s"], nm=[None, (2, 4)], conv_images=0,
                                     no_simspeed=True, out=tmp_path, progress=False)
    with pytest.raises(KeyboardInterrupt):
        report.collect(settings)
    partial = json.loads((tmp_path / "report.partial.json").read_text())
    assert list(partial["points"]) == ["0"] and measured == [32]
    settings.resume = True
    data = report.collect(settings)
    assert ran == ["ulx3s dense", "ulx3s 2:4", "ulx3s 2:4"]      # only the missing point
    assert measured == [32]                                        # baselines kept
    assert [p["nm"] for p in data["sweep"]["points"]] == ["dense", "2:4"]
    assert data["sweep"]["resumed_points"] == 1
    assert not (tmp_path / "report.partial.json").exists()
    (tmp_path / "report.partial.json").write_text(json.dumps(partial))
    with pytest.raises(ValueError, match="of another report plan"):
        report.collect(report.ReportSettings(presets=["ulx3s"], nm=[None, (1, 4)],
                                             conv_images=0, no_simspeed=True, out=tmp_path,
                                             progress=False, resume=True))


def test_small_board_conv_rows_project_from_the_model(tmp_path):
    from nmaccel.model.conv_nets import build_workload
    from nmaccel.model.conv_ref import get_exp_cycles
    from nmaccel.spec.config import conv_preset
    cfg = conv_preset("icebreaker")
    cyc = sum(get_exp_cycles(j, cfg)["total"] for j in build_workload("adder").qnet.jobs)
    rows = report.conv_board_rows(tmp_path)
    assert {r["net"] for r in rows} == {"adder", "binary"}
    assert all(r["images_per_s"] is None and "simulation only" in r["status"] for r in rows)
    write_boards(tmp_path, [{"board": "icebreaker", "board_title": "iCEBreaker",
                             "design": "conv", "preset": "icebreaker", "fits": False,
                             "fmax_mhz": None, "overused": ["ICESTORM_LC 5815/5280"]}])
    rows = report.conv_board_rows(tmp_path)
    assert "does not fit the iCEBreaker (ICESTORM_LC 5815/5280" in rows[0]["status"]
    write_boards(tmp_path, [{"board": "icebreaker", "design": "conv", "preset": "icebreaker",
                             "fits": True, "fmax_mhz": 30.0, "host_link": "uart"}])
    row = next(r for r in report.conv_board_rows(tmp_path) if r["net"] == "adder")
    assert row["cycles_per_image"] == cyc and row["images_per_s"] == round(30e6 / cyc)


def test_small_board_sta_rows_divide_fmax_by_the_rtl_cycles(tmp_path):
    boards, reports = tmp_path / "boards", tmp_path / "reports"
    boards.mkdir()
    reports.mkdir()
    assert report.sta_board_rows(reports, boards) == []          # no study: no row
    study = {"nm": "2:4", "cycles_per_image": {"median": 200_000}, "model_error": 0.0,
             "bit_exact_layers": True, "predictions_identical": True, "rtl_accuracy": 0.975,
             "torch": {"images_per_s": 12345}}
    (reports / "idp_digits_rtl_icebreaker.json").write_text(json.dumps(study))
    row, = report.sta_board_rows(reports, boards)
    assert row["images_per_s"] is None and "simulation only" in row["status"]
    write_boards(boards, [{"board": "icebreaker", "design": "sta", "preset": "icebreaker",
                           "fits": True, "fmax_mhz": 20.0, "target_mhz": 24.0,
                           "timing_met": False, "host_link": "uart"}])
    row, = report.sta_board_rows(reports, boards)
    assert row["images_per_s"] == 100.0 and row["torch_images_per_s"] == 12345
    assert row["bit_exact"] and row["timing_met"] is False
    data = report.derive(fake_data(), "ulx3s", boards, reports=reports)
    md = report.markdown(data)
    assert "## Memory-lean STA on small boards" in md
    assert "| icebreaker | `icebreaker` | 2:4 | bit-exact | 97.50% | 200000 | 20.00 (24.0, " \
           "**not met**) | 100.0 | 12345 |" in md
