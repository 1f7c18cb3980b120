"""transcribe_many: the cap, 429 storms, failures among good sources, resume, outputs, Ctrl-C and kill -9."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from many_helpers import CountingEngine, start_script, write_wav

import cartesia_sync
from cartesia_sync.local import LocalServer
from cartesia_sync.testing import FakeCartesia, Scenario


def corpus(root: Path, count: int, seconds: float = 0.25, folder: str = "calls") -> list[Path]:
    return [write_wav(root / folder / f"part{i % 3}" / f"call{i:03d}.wav", seconds, seed=i) for i in range(count)]


def manifest_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.timeout(60)
def test_the_cap_is_never_exceeded_at_the_server(in_tmp):
    corpus(in_tmp, 24)
    engine = CountingEngine(feed_delay=0.02)
    with LocalServer(engine) as server:
        report = cartesia_sync.transcribe_many("calls", out_dir="out", max_concurrency=3, url=server.url)
    assert report.count("done") == 24 and report.ok
    assert engine.streams == 24
    assert engine.peak == 3  # reached, never passed
    assert report.peak_concurrency == 3


@pytest.mark.timeout(60)
def test_a_429_storm_slows_the_batch_down_and_every_source_still_finishes(in_tmp):
    corpus(in_tmp, 10)
    storm = Scenario(reject_status=429, reject_headers=(("Retry-After", "0.2"),), faulty_connections=15)
    started = time.monotonic()
    with FakeCartesia(scenario=storm) as fake:
        report = cartesia_sync.transcribe_many("calls", out_dir="out", max_concurrency=4, url=fake.url)
    elapsed = time.monotonic() - started
    assert report.count("done") == 10 and report.ok, [r.error for r in report.sources]
    assert sum(r.rate_limited for r in report.sources) == 15
    assert all(r.attempts == r.rate_limited + 1 for r in report.sources)
    assert 0.2 <= elapsed < 30  # it waited for Retry-After at least once, and not forever


def test_a_refused_handshake_carries_retry_after():
    storm = Scenario(reject_status=429, reject_headers=(("Retry-After", "1.5"),))
    with FakeCartesia(scenario=storm) as fake:
        with pytest.raises(cartesia_sync.RateLimitError) as caught:
            cartesia_sync.Client(url=fake.url, load_entrypoints=False).connect()
    assert caught.value.retry_after == 1.5 and caught.value.status_code == 429


@pytest.mark.timeout(60)
def test_a_source_that_fails_for_good_fails_alone_and_is_tried_again_next_run(in_tmp):
    corpus(in_tmp, 5)
    (in_tmp / "calls" / "broken.wav").write_bytes(b"this is not audio at all" * 10)
    with FakeCartesia() as fake:
        report = cartesia_sync.transcribe_many("calls", out_dir="out", url=fake.url)
        assert report.count("done") == 5 and len(report.failed) == 1 and not report.ok
        failure = report.failed[0]
        assert failure.source.endswith("broken.wav") and failure.attempts == 1
        assert failure.error_type == "AudioFormatError" and "broken.wav" in (failure.error or "")
        failed_lines = [line for line in manifest_lines(in_tmp / "out") if line["status"] == "failed"]
        assert len(failed_lines) == 1 and failed_lines[0]["error_type"] == "AudioFormatError"
        again = cartesia_sync.transcribe_many("calls", out_dir="out", url=fake.url)
    assert again.count("skipped") == 5 and len(again.failed) == 1  # the failed one is tried again


@pytest.mark.timeout(60)
def test_a_transient_server_error_is_retried_a_bounded_number_of_times(in_tmp):
    write_wav(in_tmp / "one.wav", 0.5)
    once = Scenario(error_after_bytes=1000, faulty_connections=1)
    always = Scenario(error_after_bytes=1000)
    with FakeCartesia(scenario=once) as fake:
        report = cartesia_sync.transcribe_many("one.wav", out_dir="out", url=fake.url, reconnect=False)
    assert report.ok and report.sources[0].attempts == 2
    with FakeCartesia(scenario=always) as fake:
        report = cartesia_sync.transcribe_many("one.wav", url=fake.url, max_retries=1, reconnect=False)
    assert report.sources[0].status == "failed" and report.sources[0].attempts == 2
    assert report.sources[0].error_type == "ServerError"


@pytest.mark.timeout(60)
def test_equal_stems_in_different_folders_and_side_by_side_never_collide(in_tmp):
    write_wav(in_tmp / "a" / "x.wav", seed=1)
    write_wav(in_tmp / "b" / "x.wav", seed=2)
    write_wav(in_tmp / "b" / "x.flac", seed=3)
    with FakeCartesia() as fake:
        report = cartesia_sync.transcribe_many(["a", "b"], out_dir="out", formats=["txt", "json"], url=fake.url)
    assert report.count("done") == 3
    texts = {p.relative_to(in_tmp / "out").as_posix(): p.read_text() for p in (in_tmp / "out").rglob("*.txt")}
    assert set(texts) == {"a/x.txt", "b/x.txt", "b/x.flac.txt"} or set(texts) == {"a/x.txt", "b/x.txt", "b/x.wav.txt"}
    assert len(set(texts.values())) == 3  # three different inputs, three different transcripts
    payload = json.loads((in_tmp / "out" / "a" / "x.json").read_text())
    assert payload["words"] and payload["mode"] == "stream" and payload["audio_seconds"] == 0.25


def test_an_empty_folder_and_a_folder_without_audio_do_nothing(in_tmp):
    (in_tmp / "empty").mkdir()
    (in_tmp / "docs").mkdir()
    (in_tmp / "docs" / "readme.txt").write_text("hello")
    (in_tmp / "docs" / "notes.json").write_text("{}")
    with FakeCartesia() as fake:
        report = cartesia_sync.transcribe_many(["empty", "docs"], out_dir="out", url=fake.url)
        assert report.sources == [] and report.ok and not fake.connections
    assert not (in_tmp / "out" / "manifest.jsonl").exists()


@pytest.mark.timeout(60)
def test_non_audio_files_in_a_folder_are_skipped(in_tmp):
    corpus(in_tmp, 3)
    (in_tmp / "calls" / "index.csv").write_text("a,b\n")
    (in_tmp / "calls" / "part0" / "cover.jpg").write_bytes(b"\xff\xd8")
    with FakeCartesia() as fake:
        report = cartesia_sync.transcribe_many("calls", out_dir="out", url=fake.url)
    assert report.count("done") == 3 and len(report.sources) == 3


@pytest.mark.timeout(60)
def test_resume_skips_what_is_done_and_redoes_a_changed_input(in_tmp):
    files = corpus(in_tmp, 6)
    with FakeCartesia() as fake:
        first = cartesia_sync.transcribe_many("calls", out_dir="out", url=fake.url)
        assert first.count("done") == 6
        write_wav(files[2], 0.5, seed=99)  # changed content
        with (in_tmp / "out" / "manifest.jsonl").open("a") as manifest:
            manifest.write('{"source": "/torn", "sta')  # a crash mid-line
        second = cartesia_sync.transcribe_many("calls", out_dir="out", url=fake.url)
        assert second.count("skipped") == 5 and second.count("done") == 1
        assert [r.source for r in second.sources if r.status == "done"] == [str(files[2])]
        third = cartesia_sync.transcribe_many("calls", out_dir="out", url=fake.url, resume=False)
    assert third.count("done") == 6
    lines = (in_tmp / "out" / "manifest.jsonl").read_text().splitlines()
    assert sum(1 for line in lines if line.startswith('{"source": "/torn"')) == 1  # the torn line stays alone
    assert all(json.loads(line) for line in lines if not line.startswith('{"source": "/torn"'))


def test_progress_callback_sees_every_source(in_tmp):
    corpus(in_tmp, 4)
    seen = []
    with FakeCartesia() as fake:
        cartesia_sync.transcribe_many("calls", url=fake.url, progress=seen.append)
    assert sorted(r.index for r in seen) == [0, 1, 2, 3]
    assert all(r.result is not None and r.result.text for r in seen)  # no out_dir: results are kept


def test_bad_arguments_are_refused_before_anything_runs(in_tmp):
    with pytest.raises(cartesia_sync.ConfigurationError, match="formats must be some of"):
        cartesia_sync.transcribe_many("x", formats="txt,docx", url="ws://127.0.0.1:9")
    with pytest.raises(cartesia_sync.ConfigurationError, match="max_concurrency"):
        cartesia_sync.transcribe_many("x", max_concurrency=0, url="ws://127.0.0.1:9")
    with pytest.raises(cartesia_sync.ConfigurationError, match="mode must be one of"):
        cartesia_sync.transcribe_many("x", mode="fast", url="ws://127.0.0.1:9")
    with pytest.raises(cartesia_sync.ConfigurationError, match="not both"):
        cartesia_sync.transcribe_many("x", local=True, url="ws://127.0.0.1:9")


_RUN = """
import json, sys, cartesia_sync
try:
    report = cartesia_sync.transcribe_many("calls", out_dir="out", max_concurrency=4, url={url!r}, realtime=True)
except KeyboardInterrupt as interrupt:
    report = interrupt.report
    counts = {{s: report.count(s) for s in ("done", "failed", "cancelled")}}
    print(json.dumps({{"interrupted": report.interrupted, **counts, "errors": [r.error for r in report.failed]}}))
    sys.exit(130)
print(json.dumps({{"interrupted": False, "done": report.count("done"), "skipped": report.count("skipped")}}))
"""


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_resume_after_kill_9_at_random_points_loses_nothing_and_corrupts_nothing(in_tmp):
    corpus(in_tmp, 24, seconds=0.5)
    rng = random.Random(15)
    with FakeCartesia() as fake:
        code = _RUN.format(url=fake.url)
        for _ in range(4):
            process = start_script(code, in_tmp)
            time.sleep(rng.uniform(0.3, 2.0))
            process.kill()
            process.communicate(timeout=20)
            for line in (in_tmp / "out" / "manifest.jsonl").read_text().splitlines()[:-1]:
                json.loads(line)  # only the last line may be torn
        final = start_script(code, in_tmp)
        stdout, stderr = final.communicate(timeout=60)
        assert final.returncode == 0, stderr
        reference = cartesia_sync.transcribe_many("calls", out_dir="reference", url=fake.url)
    summary = json.loads(stdout)
    assert summary["done"] + summary["skipped"] == 24 and summary["skipped"] > 0
    assert reference.count("done") == 24
    assert not list((in_tmp / "out").rglob("*.part"))  # what the killed runs left was swept
    for expected in (in_tmp / "reference").rglob("*.txt"):
        produced = in_tmp / "out" / expected.relative_to(in_tmp / "reference")
        assert produced.read_text() == expected.read_text()  # whole, never half-written


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=30)
    return process.pid


@pytest.mark.timeout(60)
def test_temporary_files_a_killed_run_left_are_removed_and_a_live_writers_are_not(in_tmp):
    from cartesia_sync import _many_outputs

    corpus(in_tmp, 2)
    folder = in_tmp / "out" / "calls" / "part0"
    folder.mkdir(parents=True)
    host = _many_outputs._HOST
    killed = folder / f".call000.txt.{_dead_pid()}@{host}.k1ll3d_x.part"  # its writer is gone
    live = folder / f".call000.txt.{os.getppid()}@{host}.l1v3_abc.part"  # another run, still alive
    elsewhere = folder / f".call000.srt.{os.getpid()}@0badc0de.r3m0t3_z.part"  # a worker on another machine
    old = folder / ".call000.vtt.1@0badc0de.0ld_0ne_.part"  # from another machine, long ago
    foreign = folder / ".notes.part"  # not named as the library names its files
    for path in (killed, live, elsewhere, old, foreign):
        path.write_text("half of a transcript")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    with FakeCartesia() as fake:
        report = cartesia_sync.transcribe_many("calls", out_dir="out", url=fake.url)
    assert report.count("done") == 2
    assert not killed.exists() and not old.exists()
    assert live.exists() and elsewhere.exists() and foreign.exists()
    assert (folder / "call000.txt").read_text().strip()


_KILLED_BEFORE_THE_RENAME = """
import os, signal, cartesia_sync
os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # killed between writing and renaming
cartesia_sync.transcribe_many("calls", out_dir="out", max_concurrency=1, url={url!r})
"""


@pytest.mark.timeout(60)
def test_a_run_killed_between_writing_and_renaming_is_cleaned_up_by_the_next(in_tmp):
    corpus(in_tmp, 3)
    with FakeCartesia() as fake:
        process = start_script(_KILLED_BEFORE_THE_RENAME.format(url=fake.url), in_tmp)
        process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL
        left = list((in_tmp / "out").rglob("*.part"))
        assert len(left) == 1 and not list((in_tmp / "out").rglob("*.txt"))
        report = cartesia_sync.transcribe_many("calls", out_dir="out", url=fake.url)
    assert report.count("done") == 3
    assert not list((in_tmp / "out").rglob("*.part"))
    assert len(list((in_tmp / "out").rglob("*.txt"))) == 3


def test_written_outputs_leave_no_temporary_file(in_tmp):
    corpus(in_tmp, 3)
    with FakeCartesia() as fake:
        cartesia_sync.transcribe_many("calls", out_dir="out", formats="txt,json,srt,vtt", url=fake.url)
    assert not list((in_tmp / "out").rglob("*.part"))
    assert len(list((in_tmp / "out").rglob("*.*"))) == 3 * 4 + 1  # the outputs and the manifest


@pytest.mark.timeout(90)
def test_ctrl_c_stops_new_work_aborts_what_runs_and_leaves_a_resumable_manifest(in_tmp):
    corpus(in_tmp, 16, seconds=4.0)
    with FakeCartesia() as fake:
        process = start_script(_RUN.format(url=fake.url), in_tmp)
        deadline = time.monotonic() + 30
        manifest = in_tmp / "out" / "manifest.jsonl"
        while not manifest.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert manifest.exists(), "nothing finished in 30 s"
        process.send_signal(signal.SIGINT)
        interrupted_at = time.monotonic()
        stdout, stderr = process.communicate(timeout=30)
        took = time.monotonic() - interrupted_at
        assert process.returncode == 130, stderr
        summary = json.loads(stdout)
        assert summary["interrupted"] and summary["cancelled"] > 0 and not summary["failed"], summary
        assert 0 < summary["done"] < 16, summary
        # the sources in flight were aborted, not waited out: they had started about when the first ones ended,
        # and would need 4 s more at 1x
        assert took < 3
        lines = [json.loads(line) for line in manifest.read_text().splitlines()]
        assert len({line["source"] for line in lines}) == summary["done"]
        resumed = cartesia_sync.transcribe_many("calls", out_dir="out", url=fake.url)
    assert resumed.count("skipped") == summary["done"] and resumed.count("done") == 16 - summary["done"]


_MEMORY = """
import os, sys
sys.path.insert(0, {tests!r})
from process_memory import tree_rss_mib
import cartesia_sync
marks = {{}}
def progress(report, count=[0]):
    count[0] += 1
    if count[0] in (1000, 10000):
        marks[count[0]] = tree_rss_mib(os.getpid())
report = cartesia_sync.transcribe_many("tiny", out_dir="out", max_concurrency=8, url={url!r}, progress=progress)
print(report.count("done"), marks[1000], marks[10000])
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ten_thousand_tiny_sources_keep_memory_flat(in_tmp):
    import numpy as np
    import soundfile

    samples = np.zeros(160, dtype=np.int16)
    for i in range(10_000):
        folder = in_tmp / "tiny" / f"{i // 500:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        soundfile.write(folder / f"t{i:05d}.wav", samples, 16000)
    tests = str(Path(__file__).parent)
    with FakeCartesia() as fake:
        process = start_script(_MEMORY.format(url=fake.url, tests=tests), in_tmp)
        stdout, stderr = process.communicate(timeout=580)
    assert process.returncode == 0, stderr[-2000:]
    done, at_1000, at_10000 = stdout.split()
    assert int(done) == 10_000
    growth = float(at_10000) - float(at_1000)
    print(f"RSS after 1,000 sources {float(at_1000):.1f} MiB, after 10,000 {float(at_10000):.1f} MiB")
    assert growth < 30, f"RSS grew {growth:.1f} MiB from 1,000 to 10,000 sources"
