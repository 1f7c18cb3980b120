"""``cartesia-sync transcribe`` with many files: --jobs, --out-dir, --format, --no-resume, --mode, folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import run_cli
from many_helpers import write_wav

from cartesia_sync.testing import FakeCartesia

pytestmark = pytest.mark.timeout(120)


def transcribe(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("transcribe", *args, timeout=90, cwd=cwd)


@pytest.fixture
def fake():
    with FakeCartesia() as server:
        yield server


def test_folders_go_to_the_out_dir_mirroring_the_tree_then_resume(tmp_path, fake):
    for i in range(4):
        write_wav(tmp_path / "calls" / ("a" if i % 2 else "b") / f"c{i}.wav", seed=i)
    result = transcribe(
        "calls", "--out-dir", "out", "--format", "txt,json,srt,vtt", "--jobs", "3", "--url", fake.url, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # the files hold the results
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("c*.*"))
    assert len(written) == 16 and "calls/a/c1.srt" in written and "calls/b/c0.vtt" in written
    assert "4 done" in result.stderr and result.stderr.count("\n") == 1
    again = transcribe("calls", "--out-dir", "out", "--url", fake.url, cwd=tmp_path)
    assert again.returncode == 0 and "0 done, 4 skipped" in again.stderr
    redo = transcribe("calls", "--out-dir", "out", "--no-resume", "--url", fake.url, cwd=tmp_path)
    assert redo.returncode == 0 and "4 done" in redo.stderr and "skipped" not in redo.stderr


def test_a_failed_file_exits_1_with_a_summary_and_where_failures_are_listed(tmp_path, fake):
    write_wav(tmp_path / "in" / "good.wav")
    (tmp_path / "in" / "bad.wav").write_bytes(b"not audio" * 20)
    result = transcribe("in", "--out-dir", "out", "--url", fake.url, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any("bad.wav" in line and line.startswith("cartesia-sync: error:") for line in lines)
    assert "1 done, 1 failed" in result.stderr
    assert f"listed in {tmp_path / 'out' / 'manifest.jsonl'}" in result.stderr
    assert "Traceback" not in result.stderr


def test_several_files_without_out_dir_print_in_input_order(tmp_path, fake):
    files = [str(write_wav(tmp_path / f"f{i}.wav", seconds=0.25 * (5 - i), seed=i)) for i in range(5)]
    single = [transcribe(name, "--url", fake.url, cwd=tmp_path).stdout for name in files]
    result = transcribe(*files, "--jobs", "4", "--url", fake.url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "".join(single)  # the order of the inputs, whatever order they finished in


def test_json_carries_mode_and_language(tmp_path, fake):
    path = str(write_wav(tmp_path / "one.wav"))
    one = transcribe(path, "--json", "--mode", "stream", "--language", "de", "--url", fake.url, cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    entry = json.loads(one.stdout)
    assert entry["mode"] == "stream" and entry["language"] == "de"
    many = transcribe(path, path, "--json", "--jobs", "2", "--url", fake.url, cwd=tmp_path)
    entries = json.loads(many.stdout)
    assert [e["mode"] for e in entries] == ["stream", "stream"] and entries[0]["language"] == "en"


def test_bad_many_options_are_usage_errors(tmp_path, fake):
    path = str(write_wav(tmp_path / "one.wav"))
    assert transcribe(path, "--jobs", "0", "--url", fake.url, cwd=tmp_path).returncode == 2
    wrong = transcribe(path, "--out-dir", "out", "--format", "txt,doc", "--url", fake.url, cwd=tmp_path)
    assert wrong.returncode == 2 and "txt, json, srt, vtt" in wrong.stderr
    mixed = transcribe(path, "--out-dir", "out", "--srt", "x.srt", "--url", fake.url, cwd=tmp_path)
    assert mixed.returncode == 2 and "--format" in mixed.stderr


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path, fake):
    import signal
    import time

    for i in range(8):
        write_wav(tmp_path / "calls" / f"c{i}.wav", seconds=3.0, seed=i)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTESIA")}
    process = subprocess.Popen(
        [sys.executable, "-m", "cartesia_sync", "transcribe", "calls", "--out-dir", "out", "--jobs", "2"]
        + ["--realtime", "--url", fake.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    manifest = tmp_path / "out" / "manifest.jsonl"
    deadline = time.monotonic() + 30
    while not manifest.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "interrupted:" in stderr and "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
