"""The live WebSocket's protocol (api/routes/live.py): its close codes and its JSON messages.

Text frames carry one JSON object each, with a `type`; audio travels in binary frames. The
shapes here are the wire format clients speak (api/web/static/js/recorder.js among them).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, JsonValue

AUDIO_FORMATS = ("pcm16", "webm")


class Close(IntEnum):
    """How a stream ends: the WebSocket close code the server sends."""

    normal = 1000  # the stream's transcript is complete
    unsupported = 1003  # no start message first, or audio that cannot be decoded
    policy = 1008  # no or unknown token or sign-in, another site's page, not a participant
    too_big = 1009  # a message over the ASGI server's size limit (it closes, not this code)
    failed = 1011  # the transcription failed; what was stored is kept
    timeout = 4408  # no start message in time, or no message for COMPANION_LIVE_IDLE_S
    conflict = 4409  # the phase is not running or stopped, or the job was closed
    too_long = 4413  # over COMPANION_LIVE_MAX_SECONDS


class Refused(Exception):
    """The stream cannot go on: close it with this code and reason."""

    def __init__(self, code: Close, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def _credential(value: object) -> str | None:
    # Anything but a non-empty string counts as not sent: the caller is then refused as
    # without credentials, not as a malformed message.
    return value if isinstance(value, str) and value else None


def _asked(value: object) -> bool:
    return value is True  # only JSON true asks; "yes" or 1 do not


Credential = Annotated[str | None, BeforeValidator(_credential)]
Flag = Annotated[bool, BeforeValidator(_asked)]


# --- from the client ------------------------------------------------------------------------


class StartMessage(BaseModel):
    """The first message: who streams and how the audio comes.

    `token` is an API token (a client that can send `Authorization: Bearer …` may leave it
    out); the web app sends the page's `csrf` token instead, with the sign-in cookie of the
    handshake. `format` stays any JSON value here: it is checked once the caller is known, so
    an unknown caller is refused as such whatever format it names.
    """

    model_config = ConfigDict(extra="ignore")

    type: Literal["start"]
    token: Credential = None
    csrf: Credential = None
    format: JsonValue = "pcm16"
    provisional: Flag = False  # also send the provisional text


class EndMessage(BaseModel):
    """The stream is over: transcribe the rest, answer `final`, close."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["end"]


# --- from the server ------------------------------------------------------------------------


class LiveSegment(BaseModel):
    """A final segment; times in seconds from the start of the connection."""

    id: str
    index: int
    start: float
    end: float
    text: str
    speaker: str


class ReadyMessage(BaseModel):
    type: Literal["ready"] = "ready"
    job_id: str
    speaker: str
    format: str
    sample_rate: int


class SegmentsMessage(BaseModel):
    """Segments that became final; they replace the provisional text sent before."""

    type: Literal["segments"] = "segments"
    segments: list[LiveSegment]
    heard: float
    final_until: float


class ProvisionalMessage(BaseModel):
    """The audio not final yet, from `start` (where the final segments end) to `end`."""

    type: Literal["provisional"] = "provisional"
    text: str
    start: float
    end: float


class FinalMessage(BaseModel):
    """The rest of the stream, after an `end` or before a close by the server."""

    type: Literal["final"] = "final"
    job_id: str
    segments: list[LiveSegment]
    count: int
    heard: float


class ErrorMessage(BaseModel):
    """A message or frame was refused; the stream goes on."""

    type: Literal["error"] = "error"
    detail: str


ServerMessage = ReadyMessage | SegmentsMessage | ProvisionalMessage | FinalMessage | ErrorMessage
