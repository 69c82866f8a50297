"""A multipart/form-data upload whose file streams into a sink as it arrives, never spooled.

Starlette's form parser keeps a file part in a SpooledTemporaryFile, which writes anything over
1 MiB in clear to the system temporary directory while it arrives. `FileField` feeds the body
to python-multipart's streaming parser and hands the one file field's bytes to a sink (a
`companion.speech.audio.SealedWriter`, which seals them as they come) from a worker thread;
the other fields are counted and dropped. The refusals are those of `request.form(max_files=1,
max_fields=5)` before: a 422 that says what to send.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from companion.errors import Invalid

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_FIELD_BYTES = 1024 * 1024  # a field other than the file (Starlette's max_part_size)


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...


class _Refused(Exception):
    """Raised in a parser callback; the message says what is wrong with the multipart body."""


def _write_all(sink: Sink, parts: list[bytes]) -> None:
    for part in parts:
        sink.write(part)


class FileField:
    """The file field `name` of a multipart/form-data body (refused with Invalid if the body
    is not one: checked here, before anything is read)."""

    def __init__(
        self, content_type: str | None, *, name: str, max_files: int = 1, max_fields: int = 5
    ) -> None:
        self.name = name.encode()
        self.max_files, self.max_fields = max_files, max_fields
        self.missing = (
            f"Send the recording as multipart/form-data with the audio in a field named '{name}'."
        )
        kind, params = parse_options_header(content_type)
        if kind != b"multipart/form-data":
            raise Invalid(self.missing)
        if not params.get(b"boundary"):
            raise Invalid(self._invalid("Missing boundary in multipart."))
        self.boundary = params[b"boundary"]
        self._files = self._fields = 0
        self._header_name = self._header_value = b""
        self._disposition = b""
        self._target = False  # the current part is the file
        self._field_bytes = 0
        self._found = self._complete = False
        self._pending: list[bytes] = []

    @staticmethod
    def _invalid(reason: str) -> str:
        return f"The upload is not valid multipart/form-data ({reason})."

    async def stream_into(self, body: AsyncIterator[bytes], sink: Sink) -> None:
        """Read the body to its end, writing the file's bytes to `sink` as they come."""
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._part_begin,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_header_field": self._header_field,
            "on_header_value": self._header_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        }
        try:
            parser = MultipartParser(self.boundary, callbacks)
            async for chunk in body:
                parser.write(chunk)
                if self._pending:
                    pending, self._pending = self._pending, []
                    await run_in_threadpool(_write_all, sink, pending)
            parser.finalize()
        except _Refused as exc:
            raise Invalid(self._invalid(str(exc))) from None
        except FormParserError as exc:
            raise Invalid(self._invalid("Invalid multipart data.")) from exc
        if not self._found:
            raise Invalid(self.missing)
        if not self._complete:
            raise Invalid(
                "The upload ended before its multipart/form-data body did (the connection was "
                "cut?); send the recording again."
            )

    # --- parser callbacks (python-multipart) ----------------------------------------------------

    def _part_begin(self) -> None:
        self._disposition = b""
        self._target = False
        self._field_bytes = 0

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise _Refused('The Content-Disposition header field "name" must be provided.')
        if b"filename" in options:
            self._files += 1
            if self._files > self.max_files:
                raise _Refused(f"Too many files. Maximum number of files is {self.max_files}.")
            self._target = options[b"name"] == self.name
            self._found = self._found or self._target
        else:
            self._fields += 1
            if self._fields > self.max_fields:
                raise _Refused(f"Too many fields. Maximum number of fields is {self.max_fields}.")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._target:
            self._pending.append(data[start:end])
            return
        self._field_bytes += end - start
        if self._field_bytes > MAX_FIELD_BYTES:
            raise _Refused(f"Part exceeded maximum size of {MAX_FIELD_BYTES // 1024}KB.")

    def _part_end(self) -> None:
        if self._target:
            self._complete = True
        self._target = False
