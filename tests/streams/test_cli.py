"""Command-line errors that must show before any slow work or broker connection."""

from __future__ import annotations

import pytest

from streams.cli import main


def test_evaluate_rejects_warmup_before_loading(capsys):
    assert main(["evaluate", "missing.csv", "--format", "taobao", "--warmup", "2"]) == 2
    assert "--warmup must be a fraction in [0, 1), got 2.0" in capsys.readouterr().err


def test_evaluate_rejects_directory(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path), "--format", "taobao"]) == 1
    assert "got the directory" in capsys.readouterr().err


def test_replay_rejects_speed_first(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["replay", "missing.csv", "--format", "taobao", "--speed", "0"])
    assert "--speed must be 'max' or a positive number, got '0'" in str(stopped.value)


def test_replay_rejects_all_malformed(tmp_path, capsys):
    log = tmp_path / "events.csv"
    log.write_text("not,a,taobao,row\n")
    assert main(["replay", str(log), "--format", "taobao"]) == 1
    assert "no valid events" in capsys.readouterr().err


def test_tail_rejects_negative_idle_timeout(capsys):
    assert main(["tail", "streamrank.events", "--idle-timeout-s", "-1"]) == 2
    assert "--idle-timeout-s must be a positive number of seconds, got -1.0" in capsys.readouterr().err


def test_evaluate_rejects_out_file_before_loading(tmp_path, capsys):
    out = tmp_path / "report"
    out.write_text("")
    assert main(["evaluate", "missing.csv", "--format", "taobao", "--out", str(out)]) == 2
    assert f"--out {out} is a file" in capsys.readouterr().err


def test_evaluate_empty_log_points_at_format(tmp_path, capsys):
    log = tmp_path / "views.csv"
    log.write_text("one column only\n")
    assert main(["evaluate", str(log), "--format", "taobao"]) == 1
    assert "check that --format taobao matches the file" in capsys.readouterr().err
