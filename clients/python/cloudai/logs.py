"""Log chunks into lines. The master stores output as it was read, in chunks of up to
64 KiB that need not end at a line's end; a line may span chunks, and a chunk may hold
many lines. Each (attempt, stream) is split on its own, so that stdout and stderr never
mix within a line. Pure: no IO.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from ._pb import types_pb2
from .enums import LogStream
from .models import LogLine


@dataclass
class _Partial:
    data: bytes
    time: datetime | None


class LineSplitter:
    """Feeds chunks in, gives whole lines out; :meth:`flush` gives what is left."""

    def __init__(self) -> None:
        self._partial: dict[tuple[int, LogStream], _Partial] = {}
        self._seq: dict[tuple[int, LogStream], int] = {}

    def feed(self, chunk: types_pb2.LogChunk) -> Iterator[LogLine]:
        """The lines ``chunk`` completes."""
        stream = LogStream.from_pb(chunk.stream)
        key = (chunk.attempt, stream)
        when = chunk.time.ToDatetime(tzinfo=timezone.utc) if chunk.HasField("time") else None
        held = self._partial.pop(key, None)
        buf = (held.data if held else b"") + chunk.data
        start = held.time if held else when
        self._seq[key] = chunk.seq
        while (i := buf.find(b"\n")) >= 0:
            yield _line(buf[:i], stream, start, chunk.attempt, chunk.seq)
            buf = buf[i + 1 :]
            start = when
        if buf:
            self._partial[key] = _Partial(buf, start)

    def flush(self) -> Iterator[LogLine]:
        """The last line of each stream when it had no newline at its end."""
        for (attempt, stream), held in sorted(
            self._partial.items(), key=lambda kv: self._seq[kv[0]]
        ):
            yield _line(held.data, stream, held.time, attempt, self._seq[(attempt, stream)])
        self._partial.clear()


def _line(data: bytes, stream: LogStream, time: datetime | None, attempt: int, seq: int) -> LogLine:
    return LogLine(
        text=data.decode("utf-8", errors="replace"),
        stream=stream,
        time=time,
        attempt=attempt,
        seq=seq,
    )
