"""transcribe_many on other executors: a real Dask LocalCluster (2 worker processes), and no key in any task."""

from __future__ import annotations

import concurrent.futures as futures
import os
import pickle
import threading
import time
from typing import Any

import pytest
from many_helpers import CountingEngine, write_wav

import cartesia_sync
from cartesia_sync.local import LocalServer

CANARY = "sk_canary_many_NEVER_IN_A_TASK"


class PicklingExecutor(futures.Executor):
    """Runs each call in a thread of its own after pickling it, as an executor of other processes must."""

    def __init__(self) -> None:
        self.pickled: list[bytes] = []
        self._threads: list[threading.Thread] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        data = pickle.dumps((fn, args, kwargs))
        self.pickled.append(data)
        future: futures.Future[Any] = futures.Future()

        def work() -> None:
            call, call_args, call_kwargs = pickle.loads(data)
            try:
                future.set_result(call(*call_args, **call_kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        thread = threading.Thread(target=work, name="test-pickling-executor")
        self._threads.append(thread)
        thread.start()
        return future

    def join(self) -> None:
        for thread in self._threads:
            thread.join(10)


@pytest.mark.timeout(60)
def test_with_an_executor_of_other_processes_the_key_comes_from_the_environment_never_the_task(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for i in range(3):
        write_wav(tmp_path / "in" / f"f{i}.wav", seed=i)
    executor = PicklingExecutor()
    with LocalServer(CountingEngine(), api_key=CANARY) as server:
        with pytest.raises(cartesia_sync.ConfigurationError, match="CARTESIA_API_KEY in the workers' environment"):
            cartesia_sync.transcribe_many("in", executor=executor, url=server.url, api_key=CANARY)
        monkeypatch.setenv("CARTESIA_API_KEY", CANARY)  # what a worker has in its environment
        report = cartesia_sync.transcribe_many("in", out_dir="out", executor=executor, url=server.url)
    executor.join()
    assert report.count("done") == 3, [r.error for r in report.sources]
    assert len(executor.pickled) == 3 and all(CANARY.encode() not in data for data in executor.pickled)


@pytest.mark.timeout(300)
def test_a_dask_local_cluster_holds_the_cap_across_workers(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.chdir(tmp_path)
    for i in range(12):
        write_wav(tmp_path / "calls" / f"c{i:02d}.wav", seconds=0.5, seed=i)
    engine = CountingEngine(feed_delay=0.05)
    started = time.monotonic()
    with LocalServer(engine) as server:
        with (
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=3, processes=True, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            report = cartesia_sync.transcribe_many(
                "calls", out_dir="out", max_concurrency=2, executor=client.get_executor(), url=server.url
            )
            workers = {r.source: r for r in report.sources}
            pids = set(client.run(os.getpid).values())
    print(f"Dask LocalCluster run: {time.monotonic() - started:.1f} s, peak at the server {engine.peak}")
    assert report.count("done") == 12 and report.ok, [r.error for r in report.sources]
    assert len(workers) == 12 and len(pids) == 2 and os.getpid() not in pids
    assert engine.streams == 12
    assert engine.peak == 2  # six worker threads, one cluster-wide cap
    assert sorted(p.name for p in (tmp_path / "out" / "calls").iterdir()) == [f"c{i:02d}.txt" for i in range(12)]


@pytest.mark.timeout(300)
def test_on_a_dask_cluster_a_source_refused_with_429_keeps_its_place_so_the_cluster_slows_down(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    from cartesia_sync.testing import FakeCartesia, Scenario

    monkeypatch.chdir(tmp_path)
    for i in range(6):
        write_wav(tmp_path / "calls" / f"c{i}.wav", seconds=0.5, seed=i)
    storm = Scenario(reject_status=429, reject_headers=(("Retry-After", "1.5"),), faulty_connections=2)
    with (
        FakeCartesia(scenario=storm) as fake,
        distributed.LocalCluster(n_workers=2, threads_per_worker=3, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        report = cartesia_sync.transcribe_many(
            "calls", out_dir="out", max_concurrency=2, executor=client.get_executor(), url=fake.url
        )
        opened = sorted(record.opened_at for record in fake.connections)
    assert report.count("done") == 6 and report.ok, [r.error for r in report.sources]
    assert sum(r.rate_limited for r in report.sources) == 2
    # The two first handshakes were refused; their sources kept both places of the cap while they waited
    # the 1.5 s the server asked for, so nothing else connected meanwhile.
    assert len(opened) == 8
    assert opened[2] - opened[1] >= 1.4, [round(t - opened[0], 2) for t in opened]


@pytest.mark.timeout(300)
def test_with_no_key_each_dask_worker_runs_its_own_local_server(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("pocketsphinx")
    from cartesia_sync import _many_job

    for name in ("CARTESIA_API_KEY", "CARTESIA_URL", "CARTESIA_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    for i in range(4):
        write_wav(tmp_path / "calls" / f"c{i}.wav", seconds=1.0, seed=i)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        report = cartesia_sync.transcribe_many(
            "calls", out_dir="out", max_concurrency=2, executor=client.get_executor()
        )
        servers = client.run(lambda: _many_job._server is not None)
    assert report.count("done") == 4, [r.error for r in report.sources]
    assert any(servers.values()) and _many_job._server is None  # on the workers, not here


@pytest.mark.timeout(300)
def test_the_command_line_spreads_files_over_a_dask_scheduler(tmp_path):
    import subprocess
    import sys

    distributed = pytest.importorskip("distributed")
    for i in range(4):
        write_wav(tmp_path / "calls" / f"c{i}.wav", seed=i)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTESIA")}
    with LocalServer(CountingEngine()) as server:
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            result = subprocess.run(
                [sys.executable, "-m", "cartesia_sync", "transcribe", "calls", "--out-dir", "out", "--jobs", "2"]
                + ["--dask", cluster.scheduler_address, "--url", server.url],
                capture_output=True,
                text=True,
                timeout=120,
                env=env,
                cwd=tmp_path,
            )
    assert result.returncode == 0, result.stderr
    assert "4 done" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out" / "calls").glob("*.txt")) == [f"c{i}.txt" for i in range(4)]
