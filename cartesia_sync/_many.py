"""``transcribe_many``: a corpus at a time, with a concurrency cap, rate limits, resume and any executor.

The calling thread lists the sources lazily, skips those an earlier run
finished (see :mod:`._many_manifest`), hands the others to the executor a
window at a time (so memory stays flat however many there are), and writes
one manifest line as each finishes. Each source runs :func:`.run_job` on a
worker; the gate it holds while transcribing caps the connections (see
:mod:`._many_gate`).
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._embedded import embedded_endpoint, wants_embedded
from ._many_gate import AdaptiveLimit, ClusterGate, Gate, OpenGate
from ._many_job import Job, SessionTracker, SourceReport, run_job
from ._many_manifest import Manifest, file_sha256
from ._many_outputs import check_formats, sweep_leftovers
from ._many_sources import iter_sources, output_key
from ._modes import MODES
from ._progress import bar_size
from .errors import ConfigurationError

__all__ = ["transcribe_many", "BatchReport", "SourceReport"]

#: Seconds a Ctrl-C waits for the sources in flight to end after aborting them.
ABORT_WAIT = 10.0
MANIFEST_NAME = "manifest.jsonl"


@dataclass
class BatchReport:
    """What :func:`transcribe_many` did: every source with its status, and the totals.

    :ivar sources: a :class:`SourceReport` per source, in the order they finished.
    :ivar manifest: the manifest's path (``None`` without ``out_dir``).
    :ivar interrupted: Ctrl-C stopped the run.
    :ivar wall_seconds: how long the run took.
    :ivar peak_concurrency: the most transcriptions that ran at once in this process (0 on other executors).
    """

    sources: list[SourceReport] = field(default_factory=list)
    manifest: str | None = None
    interrupted: bool = False
    wall_seconds: float = 0.0
    peak_concurrency: int = 0

    def count(self, status: str) -> int:
        """How many sources ended with ``status`` (``done``, ``skipped``, ``failed``, ``cancelled``)."""
        return sum(1 for report in self.sources if report.status == status)

    @property
    def failed(self) -> list[SourceReport]:
        """The sources that failed."""
        return [report for report in self.sources if report.status == "failed"]

    @property
    def ok(self) -> bool:
        """True when no source failed and the run was not interrupted."""
        return not self.interrupted and not self.failed

    @property
    def audio_seconds(self) -> float:
        """The audio transcribed by this run."""
        return sum(report.audio_seconds for report in self.sources)

    def summary(self) -> str:
        """One line: how many were done, skipped, failed, cancelled, and the audio transcribed."""
        parts = [f"{self.count('done')} done"]
        for status in ("skipped", "failed", "cancelled"):
            if self.count(status):
                parts.append(f"{self.count(status)} {status}")
        return f"{', '.join(parts)}; {self.audio_seconds / 3600:.2f} h of audio in {self.wall_seconds:.1f} s"


def transcribe_many(
    sources: Any,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    formats: Any = ("txt",),
    max_concurrency: int = 4,
    resume: bool = True,
    mode: str = "auto",
    executor: futures.Executor | None = None,
    progress: Callable[[SourceReport], None] | None = None,
    progress_bar: bool | None = None,
    max_retries: int = 2,
    local: bool | None = None,
    **client_kwargs: Any,
) -> BatchReport:
    """Transcribe many files, at most ``max_concurrency`` at once, and write each one's outputs.

    :param sources: a path, a folder (its audio files, recursively), a glob, or
        an iterable of those, consumed lazily.
    :param out_dir: where outputs go, mirroring the input tree (a source's path
        relative to the working directory, or its whole path when outside it):
        ``calls/a/x.wav`` gives ``out_dir/calls/a/x.txt``. Each file is written
        atomically. ``None``: nothing is written and each report keeps its ``result``.
    :param formats: some of ``txt``, ``json`` (words with times), ``srt``, ``vtt``;
        a list or a comma-separated string.
    :param max_concurrency: transcriptions at once, across the whole cluster
        with a Dask executor; with a 429 the run goes below it for a while.
    :param resume: skip sources that ``out_dir/manifest.jsonl`` lists as done
        with the same content hash (an input that changed is done again).
    :param mode: ``"auto"``, ``"batch"`` or ``"stream"``, as for :meth:`Client.transcribe`.
    :param executor: any :class:`concurrent.futures.Executor`; default a thread
        pool of ``max_concurrency`` threads. A Dask ``distributed.Client``'s
        ``get_executor()`` spreads the work over its cluster; workers then read
        the key from their own ``CARTESIA_API_KEY`` (an ``api_key=`` here is
        refused, so that no key is ever put into a task).
    :param progress: called in this thread with each source's :class:`SourceReport` as it ends.
    :param progress_bar: one overall bar on stderr (files, audio hours, failures);
        default: when stderr is a terminal.
    :param max_retries: tries after the first for a transient failure (429s do not count).
    :param local: as for :func:`transcribe`: ``None`` uses the embedded local
        server when there is no key and no URL (with an executor of other
        processes, each worker runs its own).
    :param client_kwargs: anything :class:`Client` takes (``url``, ``model``, ``language``...), and
        :func:`transcribe`'s ``realtime=`` and ``timeout=``.
    :raises ConfigurationError: bad arguments, before anything runs.
    :raises KeyboardInterrupt: Ctrl-C; new work stops, work in flight is
        aborted, and the exception's ``report`` says what was done (run again to resume).
    """
    chosen_formats = check_formats(formats)
    if not isinstance(max_concurrency, int) or isinstance(max_concurrency, bool) or max_concurrency < 1:
        raise ConfigurationError(f"max_concurrency must be a whole number of at least 1, got {max_concurrency!r}")
    if mode not in MODES:
        raise ConfigurationError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    in_process = executor is None or isinstance(executor, futures.ThreadPoolExecutor)
    if not in_process and (client_kwargs.get("api_key") or client_kwargs.get("access_token")):
        raise ConfigurationError(
            "a key passed to transcribe_many with an executor of other processes would travel in every task: "
            "set CARTESIA_API_KEY in the workers' environment instead and leave api_key= out"
        )
    if local is None:
        local = wants_embedded(
            client_kwargs.get("api_key") or client_kwargs.get("access_token"),
            client_kwargs.get("url") or client_kwargs.get("base_url"),
        )
    if local and (client_kwargs.get("url") or client_kwargs.get("base_url")):
        raise ConfigurationError("local=True runs the embedded server: pass url=/base_url= or local=True, not both")
    out = os.path.abspath(os.fspath(out_dir)) if out_dir is not None else None
    with contextlib.ExitStack() as stack:
        embedded = False
        if local and in_process:
            client_kwargs.update(stack.enter_context(embedded_endpoint(load_entrypoints=False)))
        elif local:
            embedded = True
        runner = _Run(
            sources,
            out,
            chosen_formats,
            max_concurrency,
            resume,
            mode,
            executor,
            progress,
            progress_bar,
            max_retries,
            embedded,
            client_kwargs,
        )
        return runner.run(stack)


class _Run:
    """One call of :func:`transcribe_many`: its state, so that the steps stay small."""

    def __init__(
        self,
        sources: Any,
        out: str | None,
        formats: tuple[str, ...],
        max_concurrency: int,
        resume: bool,
        mode: str,
        executor: futures.Executor | None,
        progress: Callable[[SourceReport], None] | None,
        progress_bar: bool | None,
        max_retries: int,
        embedded: bool,
        client_kwargs: dict[str, Any],
    ) -> None:
        self.sources = sources
        self.out = out
        self.formats = formats
        self.max_concurrency = max_concurrency
        self.mode = mode
        self.executor = executor
        self.progress = progress
        self.max_retries = max_retries
        self.embedded = embedded
        self.client_kwargs = client_kwargs
        self.report = BatchReport(manifest=os.path.join(out, MANIFEST_NAME) if out else None)
        self.manifest = Manifest(self.report.manifest) if self.report.manifest else None
        self.done_before = self.manifest.done() if self.manifest is not None and resume else {}
        self.stop = threading.Event()
        self.tracker = SessionTracker()
        self.limit = AdaptiveLimit(max_concurrency)
        self.gate: Gate = self.limit
        self.in_process = executor is None or isinstance(executor, futures.ThreadPoolExecutor)
        #: Tasks submitted and not finished: twice the cap keeps every place busy; without a gate, the cap itself.
        self.window = 2 * max_concurrency
        if _is_dask(executor):
            self.gate = ClusterGate(f"cartesia-sync-many-{uuid.uuid4().hex}", max_concurrency)
        elif not self.in_process:
            self.gate, self.window = OpenGate(), max_concurrency
        self.pending: dict[futures.Future[SourceReport], tuple[str, int]] = {}
        self.keys: set[str] = set()
        self._last_recorded: futures.Future[SourceReport] | None = None
        self._failed = 0
        self._audio = 0.0
        self.bar = _bar(progress_bar, sources)

    def run(self, stack: contextlib.ExitStack) -> BatchReport:
        started = time.monotonic()
        if self.out is not None:
            sweep_leftovers(self.out)
        if self.executor is None:
            pool = futures.ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="cartesia-sync-many")
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)
            executor: futures.Executor = pool
        else:
            executor = self.executor
        try:
            for index, source in enumerate(iter_sources(self.sources)):
                if not self._skipped(index, source):
                    self.pending[self._submit(executor, index, source)] = (source, index)
                while len(self.pending) >= self.window:
                    self._drain(futures.FIRST_COMPLETED)
            while self.pending:
                self._drain(futures.ALL_COMPLETED)
        except KeyboardInterrupt as interrupt:
            self._interrupt()
            interrupt.report = self._finish(started)  # type: ignore[attr-defined]
            raise
        return self._finish(started)

    def _finish(self, started: float) -> BatchReport:
        self.report.wall_seconds = time.monotonic() - started
        self.report.peak_concurrency = self.limit.peak if self.in_process else 0
        if self.manifest is not None:
            self.manifest.close()
        if self.bar is not None:
            self.bar.close()
        return self.report

    def _skipped(self, index: int, source: str) -> bool:
        before = self.done_before.get(source)
        if before is None:
            return False
        try:
            if os.path.getsize(source) != before[0] or file_sha256(source) != before[1]:
                return False
        except OSError:
            return False
        self._record(SourceReport(source, index, "skipped", sha256=before[1], size=before[0]), write=False)
        return True

    def _submit(self, executor: futures.Executor, index: int, source: str) -> futures.Future[SourceReport]:
        base = None
        if self.out is not None:
            key = output_key(source)
            if key in self.keys:  # x.wav and x.mp3 side by side: the second keeps its suffix
                key = output_key(source) + os.path.splitext(source)[1]
            self.keys.add(key)
            base = os.path.join(self.out, key)
        job = Job(
            source,
            index,
            base,
            self.formats,
            self.mode,
            self.client_kwargs,
            self.max_retries,
            keep_result=self.out is None,
            embedded=self.embedded,
        )
        if self.in_process:
            return executor.submit(run_job, job, self.gate, self.stop, self.tracker)
        return executor.submit(run_job, job, self.gate)

    def _drain(self, return_when: str) -> None:
        """Record the sources that finished. A future leaves ``pending`` only once recorded, so a Ctrl-C in the
        middle of recording one has it recorded again by :meth:`_interrupt` (the manifest line at worst twice,
        which the reader takes as one), never lost."""
        finished, _ = futures.wait(list(self.pending), timeout=0.5, return_when=return_when)
        for future in finished:
            source, index = self.pending[future]
            if future is not self._last_recorded:
                try:
                    report = future.result()
                except futures.CancelledError:
                    report = SourceReport(source, index, "cancelled")
                except Exception as exc:  # the executor failed (a worker died): this source failed, the run goes on
                    report = SourceReport(source, index, "failed", error=str(exc) or type(exc).__name__)
                self._record(report, write=report.status in ("done", "failed"))
                self._last_recorded = future
            del self.pending[future]

    def _record(self, report: SourceReport, *, write: bool) -> None:
        if write and self.manifest is not None:
            entry: dict[str, Any] = {"source": report.source, "status": report.status, "sha256": report.sha256}
            entry.update(size=report.size, outputs=list(report.outputs), attempts=report.attempts)
            entry.update(audio_seconds=round(report.audio_seconds, 3), seconds=round(report.seconds, 3))
            if report.error:
                entry.update(error=report.error, error_type=report.error_type)
            self.manifest.append(entry)
        self.report.sources.append(report)
        self._failed += report.status == "failed"
        self._audio += report.audio_seconds
        if self.bar is not None:
            self.bar.update(1)
            postfix = f"{self._audio / 3600:.2f} h audio" + (f", {self._failed} failed" if self._failed else "")
            self.bar.set_postfix_str(postfix, refresh=False)
        if self.progress is not None:
            self.progress(report)

    def _interrupt(self) -> None:
        """Ctrl-C: start nothing new, abort what runs, wait a bounded time, record what finished."""
        self.stop.set()
        for future in self.pending:
            future.cancel()
        self.tracker.abort_all()
        deadline = time.monotonic() + ABORT_WAIT
        while self.pending and time.monotonic() < deadline:
            with contextlib.suppress(KeyboardInterrupt):
                self._drain(futures.ALL_COMPLETED)
                self.tracker.abort_all()
        self.report.interrupted = True


def _is_dask(executor: object) -> bool:
    """Whether ``executor`` is a Dask ``distributed`` client's (its gate is then a cluster-wide semaphore)."""
    return type(executor).__module__.split(".")[0] == "distributed"


def _bar(wanted: bool | None, sources: Any) -> Any:
    """The overall tqdm bar on stderr, or ``None``; its total comes from a counting pass (listing only)."""
    if wanted is None:
        wanted = bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not wanted:
        return None
    from tqdm import tqdm

    total = None
    if isinstance(sources, (str, os.PathLike, list, tuple)):
        total = sum(1 for _ in iter_sources(sources))
    return tqdm(total=total, unit="file", desc="transcribing", file=sys.stderr, **bar_size())
