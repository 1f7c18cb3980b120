"""Reading a ``multipart/form-data`` upload to disk as it arrives (``python-multipart`` parses it).

The ``file`` part goes straight to a temporary file, so a 2 GB upload costs
the server disk, not memory; the other parts are small text fields, capped.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

__all__ = ["Form", "FormError", "FormTooLarge", "NotAForm", "read_form"]

#: The largest text field (``model``, ``language``...) accepted.
MAX_FIELD_BYTES = 4096
#: The most parts one form may have.
MAX_PARTS = 64


class FormError(Exception):
    """The body is not a form this server can read; the message says why."""


class FormTooLarge(FormError):
    """The body passed the size limit."""


class NotAForm(FormError):
    """The body is not ``multipart/form-data`` at all."""


@dataclass
class Form:
    """The parts of one form: text fields by name (repeatable), and the uploaded file on disk."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    file_path: str | None = None
    file_name: str | None = None
    file_type: str | None = None
    file_bytes: int = 0

    def first(self, name: str) -> str | None:
        """The first value of the field ``name``, if any."""
        values = self.fields.get(name)
        return values[0] if values else None

    def discard(self) -> None:
        """Delete the uploaded file."""
        if self.file_path is not None:
            try:
                os.unlink(self.file_path)
            except OSError:
                pass
            self.file_path = None


def boundary_of(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` content type.

    :raises FormError: another content type, or no boundary.
    """
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise NotAForm(f"the body must be multipart/form-data, not {kind.decode('latin-1') or 'missing'!r}")
    boundary = options.get(b"boundary")
    if not boundary:
        raise FormError("the multipart/form-data content type has no boundary")
    return boundary


def read_form(body: Iterator[bytes], content_type: str, max_bytes: int) -> Form:
    """Parse the form in ``body``; the caller must :meth:`Form.discard` it.

    :raises FormTooLarge: the body is longer than ``max_bytes``.
    :raises FormError: the body is not a well-formed form.
    """
    reader = _FormReader()
    parser = MultipartParser(boundary_of(content_type), reader.callbacks())
    size = 0
    try:
        for chunk in body:
            size += len(chunk)
            if size > max_bytes:
                raise FormTooLarge(f"the upload is larger than this server's limit of {max_bytes} bytes")
            parser.write(chunk)
        parser.finalize()
        if not reader.ended:
            raise FormError("the multipart body ended before its closing boundary")
    except MultipartParseError as exc:
        reader.form.discard()
        raise FormError(f"the multipart body is malformed: {exc}") from exc
    except BaseException:
        reader.form.discard()
        raise
    finally:
        reader.close_file()
    return reader.form


class _FormReader:
    """The parser's callbacks: headers of each part, then its data to a field or the file."""

    def __init__(self) -> None:
        self.form = Form()
        self.ended = False
        self._parts = 0
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._value = bytearray()
        self._file: IO[bytes] | None = None

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._add("_header_name", data[start:end]),
            "on_header_value": lambda data, start, end: self._add("_header_value", data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _add(self, name: str, data: bytes) -> None:
        value = getattr(self, name) + data
        if len(value) > MAX_FIELD_BYTES:
            raise FormError("a part header is too long")
        setattr(self, name, value)

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise FormError(f"the form has more than {MAX_PARTS} parts")
        self._headers, self._value = {}, bytearray()

    def _header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        if self._name == "file":
            if self._file is not None or self.form.file_path is not None:
                raise FormError("the form has more than one file part; send one file")
            handle = tempfile.NamedTemporaryFile(prefix="cartesia-sync-upload-", delete=False)  # noqa: SIM115
            self._file = handle
            self.form.file_path = handle.name
            filename = options.get(b"filename")
            self.form.file_name = filename.decode("utf-8", "replace") if filename is not None else None
            self.form.file_type = self._headers.get(b"content-type", b"").decode("latin-1") or None

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._name == "file" and self._file is not None:
            self._file.write(data[start:end])
            self.form.file_bytes += end - start
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise FormError(f"the form field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._name == "file":
            self.close_file()
        elif self._name:
            self.form.fields.setdefault(self._name, []).append(self._value.decode("utf-8", "replace"))

    def _end(self) -> None:
        self.ended = True

    def close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
