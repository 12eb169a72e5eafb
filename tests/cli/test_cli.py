"""The ``nmaccel`` console script: help, demo output, and one-line errors for bad input."""


import pytest

from nmaccel.cli import main
from nmaccel.spec.config import StaConfig


def test_help_lists_subcommands_and_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    out = " ".join(out.split())    # argparse wraps long help lines
    assert "(default: ulx3s_board)" in out and "(default: 2:4)" in out


@pytest.mark.parametrize("argv, message", [
    (["demo", "--preset", "huge"],
     "unknown STA preset 'huge'; expected one of: tiny, ulx3s, large, ulx3s_board, ulx3s_lite"),
    (["demo", "--nm", "4:4"], r"n must satisfy 1 <= n < m (m=4), not 4"),
    (["demo", "--nm", "2:5"], "m must be a power of two"),
    (["config", "--preset", "nope"], "unknown STA preset 'nope'"),
    (["board", "ping", "--port", "/dev/null", "--timeout", "inf"],
     "expected seconds in (0, 3600], not inf"),
    (["board", "ping", "--port", "/dev/null", "--timeout", "0"],
     "expected seconds in (0, 3600], not 0"),
])
def test_bad_arguments_give_one_line_errors(argv, message, usage_error):
    assert message in usage_error(argv)


def test_config_prints_round_trippable_json(capsys):
    assert main(["config", "--preset", "tiny"]) == 0
    assert StaConfig.from_json(capsys.readouterr().out).rows == 2


def test_golden_demo_pipelines():
    """The golden-pipeline table behind ``nmaccel demo --golden`` (no RTL)."""
    from nmaccel.spec.config import sta_preset
    from nmaccel.studies.demo import demo_results, format_table
    data = demo_results(sta_preset("ulx3s"), [(2, 4)],
                        ["Sparse accelerators skip pruned weights.", "The cat sat on the mat."],
                        progress=False)
    assert "int8 2:4 magnitude" in format_table(data)
    rows = {r["pipeline"]: r for r in data["rows"]}
    assert rows["int8 2:4 magnitude"]["bits_per_weight"] == 5.0
    assert rows["int8 2:4 magnitude"]["macs_linear"] * 2 == rows["int8 dense"]["macs_linear"]
    assert rows["int8 dense"]["cos_mean"] > 0.98


@pytest.mark.parametrize("argv, message", [
    (["sim", "sta", "--layer", "0", "--json", "{dir}"], "--json {dir} is a folder, not a file"),
    (["sim", "sta", "--json", "{dir}/no/such/x.json"], "folder {dir}/no/such does not exist"),
    (["sim", "conv", "--net", "adder", "--json", "{dir}"], "is a folder, not a file"),
    (["demo", "--json", "{dir}"], "--json {dir} is a folder, not a file"),
    (["demo", "--png", "{dir}/missing/d.png"], "does not exist"),
    (["report", "--out", "{dir}/file"], "--out {dir}/file exists and is not a folder"),
    (["idp", "--json", "{dir}/missing/i.json"], "--json {dir}/missing/i.json: folder"),
    (["verilog", "sta", "--preset", "tiny", "-o", "{dir}"], "--output {dir} is a folder"),
    (["bench", "sta-layer", "--out", "{dir}/file"], "exists and is not a folder"),
    (["sim", "sta", "--nm", "2:4", "--n", "1"], "--nm 2:4 disagrees with --n 1"),
    (["sim", "sta", "--heads", "2"], "--heads applies to --gemms-only"),
    (["sim", "sta", "--rows", "100000"], "rows must be an integer in [1, 64]"),
    (["demo", "--seq", "200"], "sequence length 200 exceeds the configured maximum max_seq=128"),
    (["sim", "sta", "--layers", "all", "--text", "ok.", "--text", "word " * 10_000],
     "text 2 has 513+ tokens, more than max_seq=256 of the STA config (--truncate cuts it"),
    (["sim", "sta", "--truncate"], "--truncate applies to --text"),
    (["sim", "sta", "--nm", "3:8", "--preset", "ulx3s", "--rows", "8", "--lanes", "6"],
     "--nm 3:8 on ulx3s --rows 8 --lanes 6: 3:8 cannot be built this way; every rule broken: "
     "the dense window ((m // n) x lanes = 12) must be a multiple of cols (8); rows (8) and the "
     "dense window (12) must divide one another"),
    (["sim", "sta", "--nm", "3:8", "--preset", "ulx3s"],
     "MiniLM-L6: head dim 32 does not fit this array"),
    (["sim", "sta", "--config", "{dir}/no.json"], "--config {dir}/no.json: No such file"),
    (["sim", "sta", "--cols", "4", "--softmax-lanes", "2"],       # no --nm: nothing derived
     "ulx3s --cols 4 --softmax-lanes 2: every rule broken: on-chip attention needs a square "
     "array: rows (8) == cols (4); softmax_lanes (2) must equal cols (4)"),
    (["sim", "sta", "--config", "{dir}/file"], "--config {dir}/file: StaConfig JSON is not "
                                               "valid"),
    (["idp", "--study", "minilm", "--minilm-json", "{dir}"], "--minilm-json {dir} is a folder"),
    (["idp", "--study", "minilm-ship", "--methods", "idp,oneshot"], "takes one --methods entry"),
    (["idp", "--study", "minilm", "--minilm-rank-weight", "-1"],
     "rank_weight must be >= 0 and rank_tau > 0, not -1.0 and 0.02"),
    (["idp", "--study", "minilm", "--minilm-rank-tau", "0"],
     "rank_weight must be >= 0 and rank_tau > 0, not 0.0 and 0.0"),
    (["idp", "--study", "minilm-ship", "--methods", "idp", "--minilm-patterns", "2:8"],
     "2:8 has no shipped file name"),
    (["idp", "--study", "minilm-ship", "--methods", "idp", "--minilm-ship-dir", "{dir}/no"],
     "--minilm-ship-dir {dir}/no is not a folder"),
    (["idp", "--study", "minilm-ship", "--methods", "oneshot", "--minilm-continue",
      "--minilm-ship-dir", "{dir}"],
     "--minilm-continue has no layer-wise stage: give --minilm-layer-budget 0, not 100"),
    (["idp", "--study", "minilm-ship", "--methods", "oneshot", "--minilm-continue",
      "--minilm-layer-budget", "0", "--minilm-patterns", "1:4", "--minilm-ship-dir", "{dir}"],
     "--minilm-continue: {dir}/minilm_l6_1of4.npz does not exist (nothing to continue from)"),
])
def test_bad_paths_and_flags_are_refused_before_any_work(argv, message, tmp_path, capsys):
    """Output paths and conflicting flags are checked first: a one-line error, exit status 2,
    within a second (nothing is simulated, trained or synthesized)."""
    import time
    (tmp_path / "file").write_text("x")
    argv = [a.replace("{dir}", str(tmp_path)) for a in argv]
    t0 = time.monotonic()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message.replace("{dir}", str(tmp_path)) in err and "Traceback" not in err
    assert time.monotonic() - t0 < 5


def test_nm_on_a_preset_derives_the_array_and_says_so(tmp_path, capsys):
    """--nm 3:8 on ulx3s with --gemms-only: lanes 4 -> 6 (noted); a whole layer also needs
    the attention rules; every field the rules involve can be set (--softmax-lanes, or
    --config for act_bits and softmax_out_bits). Stopped before any work by a bad --json."""
    import json
    bad = str(tmp_path / "missing" / "x.json")
    assert main(["sim", "sta", "--nm", "3:8", "--preset", "ulx3s", "--gemms-only",
                 "--json", bad]) == 2
    err = capsys.readouterr().err
    assert "note: --nm 3:8 on ulx3s: lanes 4 -> 6\n" in err and "does not exist" in err
    assert main(["sim", "sta", "--nm", "2:4", "--softmax-lanes", "4", "--json", bad]) == 2
    assert "note: --nm 2:4 on ulx3s --softmax-lanes 4: rows 8 -> 4, cols 8 -> 4" in \
        capsys.readouterr().err
    from nmaccel.spec.config import sta_preset
    cfg = json.loads(sta_preset("ulx3s").to_json())
    cfg.update(softmax_out_bits=9, act_bits=8, softmax_lanes=4)
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    assert main(["sim", "sta", "--config", str(tmp_path / "c.json"), "--softmax-lanes", "4",
                 "--json", bad]) == 2
    err = capsys.readouterr().err
    assert "every rule broken: on-chip attention needs a square array" not in err
    assert "softmax_lanes (4) must equal cols (8); softmax_out_bits (9) must be <= act_bits " \
           "(8)" in err and err.count("\n") == 1


def test_truncate_cuts_long_texts_with_one_warning_each(monkeypatch, capsys):
    """With --truncate a text longer than max_seq is cut (one warning line per cut text) and
    the run goes on: stopped here where the layers would be quantized."""
    from nmaccel.model import pipeline
    from nmaccel.sim.sta_encoder import text_ids
    from nmaccel.spec.config import sta_preset

    class Reached(Exception):
        pass

    def stop(*a, **k):
        raise Reached
    monkeypatch.setattr(pipeline, "QuantizedMiniLM", stop)
    long = "word " * 10_000
    with pytest.raises(Reached):
        main(["sim", "sta", "--text", "ok.", "--text", long, "--text", "more " * 300,
              "--truncate", "--no-progress"])
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert warnings == [
        "warning: text 2 has 513+ tokens, more than max_seq=256 of the STA config: cut to its "
        "first 256 tokens (--truncate)",
        "warning: text 3 has 302 tokens, more than max_seq=256 of the STA config: cut to its "
        "first 256 tokens (--truncate)"]
    cfg = sta_preset("ulx3s")
    ids = text_ids(cfg, ["ok.", long], truncate=True, warn=lambda line: None)
    full = text_ids(cfg, ["ok."])[0]
    assert len(ids[0]) == len(full) and len(ids[1]) == cfg.max_seq
    assert ids[1][-1] == full[-1] and ids[1][0] == full[0]         # [CLS] ... [SEP]


def test_ctrl_c_ends_with_one_line_and_status_130(monkeypatch, capsys):
    from nmaccel.cli import config

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(config, "run", interrupted)
    assert main(["config"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "nmaccel config: interrupted"
