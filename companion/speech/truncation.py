"""Why a recording's file is incomplete, read from its container's own framing.

Decoders skip an incomplete last page, block or frame without a word, and a duration read
from the last one found (or estimated from the file's size) then agrees with what decodes,
so a file cut anywhere would pass as whole. Each format's framing says where a unit ends:
an Ogg page, a Matroska/WebM element (MediaRecorder writes its clusters with no size, but
every block in them has one), an MP3 frame. A file that ends inside one was cut. What these
walks cannot read (a format they do not know, bytes that are not their framing) is left to
the decoder: None.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

OGG_HEADER = 27  # bytes of an Ogg page's header before its segment table
OGG_END_OF_STREAM = 0x04  # the header flag of a stream's last page
SCAN = 64 * 1024  # bytes read at a time when looking for the next Ogg page

EBML_SEGMENT = 0x18538067
EBML_CLUSTER = 0x1F43B675

# Kilobits per second by bitrate index (1-14), for (MPEG-1, layer) and (MPEG-2/2.5, layer).
_MP3_BITRATES = {
    (1, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (1, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (1, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (2, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (2, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (2, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
ID3V1_BYTES = 128


def cut(file: BinaryIO, container: str) -> str | None:
    """Why the file (of the container format ffmpeg named) is incomplete, or None."""
    if container == "ogg":
        return ogg_cut(file)
    if container == "matroska":  # webm too
        return matroska_cut(file)
    if container == "mp3":
        return mp3_cut(file)
    return None


def ogg_cut(file: BinaryIO) -> str | None:
    """Its last page is cut off, or a stream in it has no last page (the end-of-stream flag
    that recorders write when they stop)."""
    total = file.seek(0, 2)
    offset = 0
    flags: dict[int, int] = {}  # the header flags of each stream's last page so far
    while offset < total:
        file.seek(offset)
        header = file.read(OGG_HEADER)
        if not header.startswith(b"OggS"):
            if b"OggS".startswith(header):  # the start of a page, then nothing
                return "its last Ogg page is cut off"
            found = _next_page(file, offset + 1, total)
            if found is None:
                break  # something other than pages follows them: left to the decoder
            offset = found
            continue
        if len(header) < OGG_HEADER:
            return "its last Ogg page is cut off"
        table = file.read(header[26])
        end = offset + OGG_HEADER + len(table) + sum(table)
        if len(table) < header[26] or end > total:
            return "its last Ogg page is cut off"
        (serial,) = struct.unpack_from("<I", header, 14)
        flags[serial] = header[5]
        offset = end
    if not flags:
        return "it holds no complete Ogg page"
    if any(not flag & OGG_END_OF_STREAM for flag in flags.values()):
        return "it ends before its last Ogg page (no end-of-stream mark)"
    return None


def _next_page(file: BinaryIO, offset: int, total: int) -> int | None:
    """Where the next page's capture pattern is at or after `offset`, or None."""
    while offset < total:
        file.seek(offset)
        block = file.read(SCAN + 3)
        found = block.find(b"OggS")
        if found >= 0:
            return offset + found
        offset += SCAN
    return None


def _vint(data: bytes) -> tuple[int, int] | None:
    """An EBML variable-size integer at the start of `data`: (its length in bytes, its value
    with the length marker kept), or None when the first byte is not one."""
    if not data or data[0] == 0:
        return None
    length = 9 - data[0].bit_length()
    if len(data) < length:
        return length, -1  # cut inside the integer
    return length, int.from_bytes(data[:length], "big")


def matroska_cut(file: BinaryIO) -> str | None:
    """An element (a block, a cluster of known size, the segment) ends past the file's end.
    The segment and clusters of unknown size (a live recording's) are read into; every other
    element is stepped over by its size."""
    total = file.seek(0, 2)
    offset = 0
    while offset < total:
        file.seek(offset)
        head = file.read(12)
        found = _vint(head)
        if found is None:
            return None  # not an element: left to the decoder
        id_length, element = found
        if element < 0 or id_length > 4:
            return "its last WebM element is cut off" if element < 0 else None
        size_at = head[id_length:]
        found = _vint(size_at)
        if found is None:
            return None
        size_length, raw = found
        if raw < 0:
            return "its last WebM element is cut off"
        size = raw & ((1 << (7 * size_length)) - 1)
        unknown = size == (1 << (7 * size_length)) - 1
        body = offset + id_length + size_length
        if element in (EBML_SEGMENT, EBML_CLUSTER) and (unknown or element == EBML_SEGMENT):
            if not unknown and body + size > total:
                return "it ends before the end its WebM segment announces"
            offset = body  # read into it: its children follow
            continue
        if unknown:
            return None  # an element of unknown size that is not a container of blocks
        if body + size > total:
            return "its last WebM block is cut off"
        offset = body + size
    return None


def mp3_cut(file: BinaryIO) -> str | None:
    """Its last MP3 frame (or its ID3v1 tag) is cut off. Frames are stepped over by the size
    their header gives; an ID3v2 tag first and an ID3v1 tag last are skipped."""
    total = file.seek(0, 2)
    file.seek(0)
    head = file.read(10)
    offset = 0
    if head[:3] == b"ID3" and len(head) == 10:
        size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
        offset = 10 + size + (10 if head[5] & 0x10 else 0)
    while offset < total:
        file.seek(offset)
        header = file.read(4)
        if b"TAG".startswith(header[:3]) and total - offset < ID3V1_BYTES:
            return "its ID3 tag is cut off"
        if header[:3] == b"TAG" and total - offset == ID3V1_BYTES:
            return None
        if len(header) < 4:
            return "its last MP3 frame is cut off"
        length = _mp3_frame_length(header)
        if length is None:
            return None  # not a frame: left to the decoder
        if offset + length > total:
            return "its last MP3 frame is cut off"
        offset += length
    return None


def _mp3_frame_length(header: bytes) -> int | None:
    """The length in bytes of the MPEG audio frame this header starts, or None if it is not
    one (or of free bitrate, whose length the header does not give)."""
    b1, b2 = header[1], header[2]
    if header[0] != 0xFF or b1 & 0xE0 != 0xE0:
        return None
    version, layer_bits = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_index, rate_index, padding = b2 >> 4, (b2 >> 2) & 3, (b2 >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    layer = 4 - layer_bits
    kbps = _MP3_BITRATES[(1 if version == 3 else 2, layer)][bitrate_index - 1]
    rate = _MP3_RATES[version][rate_index]
    if layer == 1:
        return (12 * kbps * 1000 // rate + padding) * 4
    per_frame = 72 if layer == 3 and version != 3 else 144
    return per_frame * kbps * 1000 // rate + padding
