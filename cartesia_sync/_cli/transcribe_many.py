"""``cartesia-sync transcribe`` with many files: several at a time through :func:`cartesia_sync.transcribe_many`.

Chosen by ``--out-dir``, ``--jobs`` or ``--dask``, or by a folder or glob
among the inputs. With ``--out-dir`` each file's outputs go there (and the
manifest lets a second run resume); without it each file's text is printed
on stdout in input order, as the one-at-a-time path prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
from collections.abc import Iterator
from typing import Any

from .._embedded import wants_embedded
from .._many import BatchReport, transcribe_many
from .._many_job import SourceReport
from .._many_outputs import check_formats
from ..errors import ConfigurationError
from .common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, error, note, print_text
from .endpoint import endpoint, given_endpoint

__all__ = ["wants_many", "run_many"]

#: Transcriptions at once against a remote server when --jobs is not given.
DEFAULT_REMOTE_JOBS = 4


def wants_many(args: argparse.Namespace) -> bool:
    """Whether the run goes through ``transcribe_many``: asked for, or a folder or glob to expand."""
    if args.out_dir or args.jobs or args.dask:
        return True
    return any(os.path.isdir(name) or (glob.has_magic(name) and not os.path.exists(name)) for name in args.files)


def run_many(args: argparse.Namespace) -> int:
    """Transcribe the inputs ``--jobs`` at a time; exit 1 when any failed, 130 on Ctrl-C (run again to resume)."""
    if args.srt or args.vtt or args.log:
        error("--srt, --vtt and --log name one file's outputs: with several at a time use --out-dir and --format")
        return EXIT_USAGE
    try:
        formats = check_formats(args.format)
    except ConfigurationError as exc:
        error(str(exc))
        return EXIT_USAGE
    printer = _InOrder(args)
    options: dict[str, Any] = {
        "out_dir": args.out_dir,
        "formats": formats,
        "resume": not args.no_resume,
        "mode": args.mode,
        "progress": printer.add,
        "realtime": args.realtime,
        "model": args.model,
        "language": args.language,
        "load_entrypoints": not args.no_plugins,
    }
    given = given_endpoint(args, with_environment=True)
    remote = not wants_embedded(None, None) or bool(given)
    try:
        with _executor(args.dask) as executor:
            if executor is not None:  # each worker starts its own embedded server when there is no endpoint
                jobs = args.jobs or DEFAULT_REMOTE_JOBS
                report = transcribe_many(
                    args.files, max_concurrency=jobs, executor=executor, local=not remote, **given, **options
                )
            else:
                with endpoint(args) as reach:
                    jobs = args.jobs or (DEFAULT_REMOTE_JOBS if remote else os.cpu_count() or 1)
                    report = transcribe_many(args.files, max_concurrency=jobs, local=False, **reach, **options)
    except KeyboardInterrupt as interrupt:
        printer.finish()
        partial: BatchReport | None = getattr(interrupt, "report", None)
        if partial is not None:
            again = " run the same command again to resume" if args.out_dir else ""
            note(f"interrupted: {partial.summary()};{again or ' nothing was saved'}")
        return EXIT_INTERRUPTED
    printer.finish()
    note(report.summary())
    if report.failed:
        where = f"listed in {report.manifest}" if report.manifest else "see the error lines above"
        note(f"{len(report.failed)} of {len(report.sources)} files failed ({where})")
        return EXIT_FAILURE
    return EXIT_OK


@contextlib.contextmanager
def _executor(address: str | None) -> Iterator[Any]:
    """The Dask cluster's executor for ``--dask ADDRESS``, else ``None`` (a thread pool here)."""
    if address is None:
        yield None
        return
    try:
        from distributed import Client
    except ImportError as exc:
        raise ConfigurationError(
            f"--dask needs the dask extra: pip install 'cartesia-sync[dask]' (missing: {exc.name})"
        ) from None
    with Client(address) as client:  # type: ignore[no-untyped-call]
        yield client.get_executor()


class _InOrder:
    """Prints each file's text (or keeps its JSON entry) in input order as the files finish in any order."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self._waiting: dict[int, SourceReport] = {}
        self._next = 0
        self._entries: list[dict[str, Any]] = []

    def add(self, report: SourceReport) -> None:
        if report.status == "failed":
            error(f"{report.source}: {report.error}")
        if self._args.out_dir:  # the files hold the results; nothing on stdout
            return
        self._waiting[report.index] = report
        while self._next in self._waiting:
            self._show(self._waiting.pop(self._next))
            self._next += 1

    def finish(self) -> None:
        """Print what is left (after a failure or Ctrl-C some indices never come), then the JSON."""
        for index in sorted(self._waiting):
            self._show(self._waiting.pop(index))
        if self._args.json and self._entries:
            print(json.dumps(self._entries, indent=2), flush=True)

    def _show(self, report: SourceReport) -> None:
        from .transcribe import result_entry

        if self._args.json:
            entry = result_entry(report.source, report.result)
            if report.error:
                entry["error"] = report.error
            self._entries.append(entry)
        elif report.result is not None and report.result.text.strip():
            print_text(report.result.text.strip())
