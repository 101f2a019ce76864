"""Container sniffing and header parsing, without decoding a sample.

We read WAV, RF64, AIFF/AIFC and FLAC headers ourselves: it is faster than opening the file in a
C library, it lets the NumPy reader take PCM straight from disk, and it lets us refuse absurd or
truncated headers *before* anything allocates memory for them.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass

from ..errors import AudioTooLargeError, DecodeError, UnsupportedFormatError
from .source import HEAD_BYTES, Source, require_bytes

MAX_SAMPLE_RATE = 100_000_000  # Hz; SDR captures reach tens of MHz, nothing real reaches 10^8
MAX_CHANNELS = 1024
MAX_CHUNKS = 10_000  # RIFF/AIFF chunks walked before a header counts as corrupt
DEFAULT_MAX_DECODE_BYTES = 16 * 2**30


def max_decode_bytes() -> int:
    """Largest decoded array (bytes) a single load may allocate: ``AUDIOFLOW_MAX_DECODE_BYTES``."""
    value = os.environ.get("AUDIOFLOW_MAX_DECODE_BYTES")
    return int(value) if value else DEFAULT_MAX_DECODE_BYTES


@dataclass(frozen=True)
class PcmLayout:
    """Where raw PCM lies in a file and how to read it with NumPy.

    Attributes:
        offset: byte offset of the first frame.
        frames: frames the header declares (and the file holds: checked on parse).
        dtype: NumPy dtype string of one sample ('<i2', '>i4', '<f4', 'u1', '<i3' for 24-bit).
    """

    offset: int
    frames: int
    dtype: str

    @property
    def sample_bytes(self) -> int:
        return int(self.dtype[-1])


@dataclass(frozen=True)
class Header:
    """What the container says about the stream (``frames`` is None when it does not say)."""

    format: str  # wav, rf64, aiff, flac, mp3, ogg, opus, m4a, aac, other
    codec: str
    sample_rate: int | None = None
    channels: int | None = None
    frames: int | None = None
    bits_per_sample: int | None = None
    pcm: PcmLayout | None = None


def sniff(src: Source) -> Header:
    """Identify the container from its first bytes; parse its header where we know it."""
    require_bytes(src, 4)
    h = src.head
    if h[:4] in (b"RIFF", b"RF64", b"BW64", b"FORM") and len(h) < 12:
        raise DecodeError(f"truncated {h[:4].decode()} header ({len(h)} bytes)", src.name)
    if h[:4] in (b"RIFF", b"RF64", b"BW64") and h[8:12] == b"WAVE":
        return parse_wav(src)
    if h[:4] == b"FORM" and h[8:12] in (b"AIFF", b"AIFC"):
        return parse_aiff(src)
    start = id3v2_size(h)
    body = src.read_at(start, 64) if start else h[:64]
    if body[:4] == b"fLaC":
        return parse_flac(src, start)
    if body[:4] == b"OggS":
        return _ogg_header(src)
    if h[4:8] == b"ftyp":
        return Header("m4a", "aac")
    if is_mpeg_audio_frame(body[:4]):
        layer = (body[1] >> 1) & 3
        return Header("aac", "aac") if layer == 0 else Header("mp3", "mp3")
    if h[:4] in (b"caff", b".snd", b"riff", b"FORM") or h[:4] == b"\x1aE\xdf\xa3" \
            or h[:6] == b"#!AMR\n" or h[:4] == b"0&\xb2u":
        return Header("other", "unknown")
    raise UnsupportedFormatError(f"not a recognised audio format (starts with {bytes(h[:8])!r})", src.name)


def id3v2_size(h: bytes) -> int:
    """Bytes taken by a leading ID3v2 tag (0 when there is none)."""
    if h[:3] != b"ID3" or len(h) < 10:
        return 0
    size = (h[6] & 0x7F) << 21 | (h[7] & 0x7F) << 14 | (h[8] & 0x7F) << 7 | (h[9] & 0x7F)
    return 10 + size + (10 if h[5] & 0x10 else 0)


_MPEG_BITRATE_BAD = (0, 15)


def is_mpeg_audio_frame(b: bytes) -> bool:
    """True when ``b`` starts with a plausible MPEG audio (or ADTS AAC) frame header."""
    if len(b) < 4 or b[0] != 0xFF or (b[1] & 0xE0) != 0xE0:
        return False
    version, layer = (b[1] >> 3) & 3, (b[1] >> 1) & 3
    if layer == 0:  # ADTS AAC: 12-bit sync and layer 0
        return (b[1] & 0xF0) == 0xF0 and ((b[2] >> 2) & 0xF) < 13
    return version != 1 and (b[2] >> 4) not in _MPEG_BITRATE_BAD and ((b[2] >> 2) & 3) != 3


def check_allocation(src: Source, frames: int, channels: int) -> None:
    """Refuse a decode of ``frames`` x ``channels`` float32 samples over the configured limit."""
    limit = max_decode_bytes()
    if frames * channels * 4 > limit:
        raise AudioTooLargeError(f"decoding {frames} frames x {channels} channels exceeds the {limit} byte "
                                 "limit (AUDIOFLOW_MAX_DECODE_BYTES)", src.name)


def _check_rate_channels(src: Source, sr: float, channels: int) -> None:
    if not 0 < sr <= MAX_SAMPLE_RATE or sr != sr:
        shown = int(sr) if sr == sr and sr == int(sr) else f"{sr:g}"
        raise DecodeError(f"header declares an invalid sample rate of {shown} Hz (valid: 1 to "
                          f"{MAX_SAMPLE_RATE} Hz)", src.name)
    if not 0 < channels <= MAX_CHANNELS:
        raise DecodeError(f"header declares an invalid channel count of {channels}", src.name)


def _check_frames(src: Source, declared: int, available: int, channels: int, sr: int) -> None:
    if declared > available:
        raise DecodeError(
            f"truncated: header declares {declared} frames ({declared / sr:.3f} s) but the file holds "
            f"{available} ({available / sr:.3f} s)", src.name)
    check_allocation(src, declared, channels)


# --- WAV / RF64 ---------------------------------------------------------------------------------

_WAV_PCM, _WAV_FLOAT, _WAV_EXTENSIBLE = 1, 3, 0xFFFE
_WAV_CODECS = {2: "adpcm_ms", 6: "alaw", 7: "mulaw", 0x11: "adpcm_ima", 0x31: "gsm610", 0x55: "mp3"}


def parse_wav(src: Source) -> Header:
    """Parse a RIFF/RF64 WAVE header; PCM and float data get a :class:`PcmLayout`."""
    require_bytes(src, 12)
    rf64 = src.head[:4] != b"RIFF"
    pos, fmt, big_data_size = 12, None, None
    for _ in range(MAX_CHUNKS):
        chunk = src.read_at(pos, 8)
        if len(chunk) < 8:
            break
        cid, size = struct.unpack("<4sI", chunk)
        if cid == b"ds64":
            body = src.read_at(pos + 8, 24)
            if len(body) < 24:
                break
            big_data_size = struct.unpack("<Q", body[8:16])[0]
        elif cid == b"fmt ":
            fmt = _wav_fmt(src, src.read_at(pos + 8, min(size, 40)))
        elif cid == b"data":
            if fmt is None:
                raise DecodeError("corrupt WAV: 'data' chunk before 'fmt ' chunk", src.name)
            if rf64 and size == 0xFFFFFFFF and big_data_size is not None:
                size = big_data_size
            elif size == 0xFFFFFFFF:  # streaming writers leave the size open: data runs to the end
                size = src.size - pos - 8
            return _wav_header(src, fmt, pos + 8, size, "rf64" if rf64 else "wav")
        pos += 8 + size + (size & 1)
    if fmt is None:
        raise DecodeError("corrupt or truncated WAV: no 'fmt ' chunk", src.name)
    raise DecodeError("truncated WAV: no 'data' chunk", src.name)


def _wav_fmt(src: Source, body: bytes) -> tuple[int, int, int, int, int]:
    if len(body) < 16:
        raise DecodeError("truncated WAV: 'fmt ' chunk is cut short", src.name)
    tag, channels, sr, _, block_align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _WAV_EXTENSIBLE:
        if len(body) < 26:
            raise DecodeError("corrupt WAV: WAVE_FORMAT_EXTENSIBLE without a sub-format", src.name)
        tag = struct.unpack("<H", body[24:26])[0]
    return tag, channels, sr, block_align, bits


def _wav_header(src: Source, fmt: tuple[int, int, int, int, int], offset: int, size: int,
                container: str) -> Header:
    tag, channels, sr, block_align, bits = fmt
    _check_rate_channels(src, sr, channels)
    if tag not in (_WAV_PCM, _WAV_FLOAT):
        codec = _WAV_CODECS.get(tag, f"0x{tag:04x}")
        if block_align == 0:
            raise DecodeError(f"corrupt WAV: block align 0 for codec {codec}", src.name)
        return Header(container, codec, sr, channels, None, bits or None)
    width = bits // 8
    valid = (tag == _WAV_PCM and bits in (8, 16, 24, 32)) or (tag == _WAV_FLOAT and bits in (32, 64))
    if not valid:
        kind = "PCM" if tag == _WAV_PCM else "float"
        raise UnsupportedFormatError(f"unsupported WAV sample format: {bits}-bit {kind}", src.name)
    if block_align != width * channels:
        raise DecodeError(f"corrupt WAV: block align {block_align} does not match {channels} channels of "
                          f"{bits} bits", src.name)
    declared = size // block_align
    available = max(0, src.size - offset) // block_align
    _check_frames(src, declared, available, channels, sr)
    if tag == _WAV_FLOAT:
        dtype, codec = f"<f{width}", f"pcm_f{bits}le"
    else:
        dtype = "u1" if bits == 8 else f"<i{width}"
        codec = "pcm_u8" if bits == 8 else f"pcm_s{bits}le"
    return Header(container, codec, sr, channels, declared, bits, PcmLayout(offset, declared, dtype))


# --- AIFF / AIFC --------------------------------------------------------------------------------

_AIFC_PCM = {b"NONE": ">", b"twos": ">", b"sowt": "<", b"in24": ">", b"in32": ">", b"raw ": "u"}
_AIFC_FLOAT = {b"fl32": ">f4", b"FL32": ">f4", b"fl64": ">f8", b"FL64": ">f8"}


def _extended_to_float(b: bytes) -> float:
    """IEEE 754 80-bit extended (AIFF's sample rate) to a Python float."""
    exponent = ((b[0] & 0x7F) << 8) | b[1]
    mantissa = int.from_bytes(b[2:10], "big")
    if exponent == 0 and mantissa == 0:
        return 0.0
    value = mantissa * 2.0 ** (min(exponent, 16383 + 1000) - 16383 - 63)
    return -value if b[0] & 0x80 else value


def parse_aiff(src: Source) -> Header:
    """Parse an AIFF/AIFC header; uncompressed and float data get a :class:`PcmLayout`."""
    pos, comm, ssnd = 12, None, None
    for _ in range(MAX_CHUNKS):
        chunk = src.read_at(pos, 8)
        if len(chunk) < 8:
            break
        cid, size = struct.unpack(">4sI", chunk)
        if cid == b"COMM":
            comm = src.read_at(pos + 8, min(size, 64))
        elif cid == b"SSND":
            ssnd = (pos + 16 + struct.unpack(">I", src.read_at(pos + 8, 4).rjust(4, b"\0"))[0], size - 8)
        if comm is not None and ssnd is not None:
            break
        pos += 8 + size + (size & 1)
    if comm is None or len(comm) < 18:
        raise DecodeError("corrupt or truncated AIFF: no complete 'COMM' chunk", src.name)
    channels, frames, bits = struct.unpack(">hIh", comm[:8])
    sr = _extended_to_float(comm[8:18])
    _check_rate_channels(src, sr, channels)
    sr_int = round(sr)
    compression = comm[18:22] if src.head[8:12] == b"AIFC" and len(comm) >= 22 else b"NONE"
    if ssnd is None:
        if frames == 0:
            return Header("aiff", "pcm_s16be", sr_int, channels, 0, bits, PcmLayout(0, 0, ">i2"))
        raise DecodeError("truncated AIFF: no 'SSND' chunk", src.name)
    if compression in _AIFC_FLOAT:
        dtype = _AIFC_FLOAT[compression]
        codec, bits = f"pcm_f{int(dtype[-1]) * 8}be", int(dtype[-1]) * 8
    elif compression in _AIFC_PCM and bits in (8, 16, 24, 32):
        order = _AIFC_PCM[compression]
        dtype = "u1" if order == "u" else ("i1" if bits == 8 else f"{order}i{bits // 8}")
        codec = f"pcm_{'u8' if order == 'u' else 's' + str(bits) + ('le' if order == '<' else 'be')}"
    else:  # compressed AIFC (ulaw, alaw, ima4...): libsndfile decodes it
        return Header("aiff", compression.decode("latin-1").strip().lower() or "unknown", sr_int, channels,
                      frames, bits)
    width = int(dtype[-1])
    available = max(0, src.size - ssnd[0]) // (width * channels)
    _check_frames(src, frames, available, channels, sr_int)
    return Header("aiff", codec, sr_int, channels, frames, bits, PcmLayout(ssnd[0], frames, dtype))


# --- FLAC ---------------------------------------------------------------------------------------


def parse_flac(src: Source, start: int) -> Header:
    """Read STREAMINFO: rate, channels, bits and the declared total of frames (0 = unknown)."""
    block = src.read_at(start + 4, 38)
    if len(block) < 38 or block[0] & 0x7F != 0:
        raise DecodeError("corrupt or truncated FLAC: no STREAMINFO block", src.name)
    v = int.from_bytes(block[14:22], "big")
    sr, channels, bits, total = v >> 44, ((v >> 41) & 7) + 1, ((v >> 36) & 31) + 1, v & ((1 << 36) - 1)
    _check_rate_channels(src, sr, channels)
    if total == 0:  # a stream written before its length was known (legal: encoders piping their output)
        total = flac_frames_from_the_end(src, int.from_bytes(block[6:8], "big"))
    check_allocation(src, total, channels)
    return Header("flac", "flac", sr, channels, total or None, bits)


FLAC_TAIL = 256 * 1024  # bytes read from a FLAC's end to find its last frames (the largest frames are ~100 KB)


def flac_frames_from_the_end(src: Source, block_size: int) -> int:
    """The length in frames of a FLAC whose STREAMINFO leaves it unknown (0 when it cannot be told), from
    the headers of its last two audio frames: a frame header carries its frame number (fixed block size)
    or its first sample, and its block size. Two consecutive headers that pass their CRC-8 are taken as
    real (a header-like pattern inside audio data passes one check in 256, two consecutive ones about never).
    Bounded time: only the last :data:`FLAC_TAIL` bytes are read."""
    tail_start = max(0, src.size - FLAC_TAIL)
    tail = src.read_at(tail_start, src.size - tail_start)
    frames = [h for m in re.finditer(rb"\xff[\xf8\xf9]", tail)
              if (h := _flac_frame_header(tail, m.start(), block_size)) is not None]
    ends = {first + length for first, length in frames}
    for first, length in reversed(frames):
        if first in ends:  # a frame ends where this one starts: two real frames in a row
            return first + length
    if tail_start == 0 and frames and frames[0][0] == 0:  # a stream of one frame, read whole
        return frames[0][1]
    return 0


def _flac_frame_header(data: bytes, at: int, fixed_block: int) -> tuple[int, int] | None:
    """(first sample, block size) of a FLAC frame header at ``data[at:]``, or None when it is not one."""
    if at + 6 > len(data):
        return None
    variable = data[at + 1] & 1
    size_code, rate_code = data[at + 2] >> 4, data[at + 2] & 15
    channels_code, depth_code = data[at + 3] >> 4, (data[at + 3] >> 1) & 7
    if size_code == 0 or rate_code == 15 or channels_code > 10 or depth_code == 3 or data[at + 3] & 1:
        return None
    # the frame or sample number, coded like UTF-8 (up to 7 bytes)
    lead = data[at + 4]
    ones = next(n for n in range(9) if not (lead << n) & 0x80) if lead else 0
    if ones == 1 or ones == 8:
        return None
    extra = max(0, ones - 1)
    i = at + 5
    if i + extra > len(data):
        return None
    number = lead & (0x7F >> ones)
    for byte in data[i:i + extra]:
        if byte >> 6 != 2:
            return None
        number = number << 6 | byte & 0x3F
    i += extra
    if size_code == 1:
        length = 192
    elif size_code <= 5:
        length = 576 << (size_code - 2)
    elif size_code <= 7:
        width = 1 if size_code == 6 else 2
        length, i = int.from_bytes(data[i:i + width], "big") + 1, i + width
    else:
        length = 256 << (size_code - 8)
    i += {12: 1, 13: 2, 14: 2}.get(rate_code, 0)
    if i >= len(data) or _crc8(data[at:i]) != data[i]:
        return None
    return (number if variable else number * fixed_block), length


def _crc8(data: bytes) -> int:
    """CRC-8 with polynomial x^8 + x^2 + x + 1, FLAC's frame header check."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc << 1 ^ 0x07) & 0xFF if crc & 0x80 else crc << 1 & 0xFF
    return crc


# --- Ogg ----------------------------------------------------------------------------------------


def _ogg_header(src: Source) -> Header:
    h = src.head
    if len(h) < 28:
        raise DecodeError("truncated Ogg: first page is cut short", src.name)
    page_end = 27 + h[26] + sum(h[27:27 + h[26]])
    if len(h) < min(page_end, HEAD_BYTES):
        raise DecodeError("truncated Ogg: the first page is cut short", src.name)
    first = h[27 + h[26]: 27 + h[26] + 32]
    if first[:8] == b"OpusHead" and len(first) >= 19:
        channels = first[9]
        _check_rate_channels(src, 48000, channels)
        return Header("opus", "opus", 48000, channels)
    if first[:7] == b"\x01vorbis" and len(first) >= 16:
        channels, sr = first[11], struct.unpack("<I", first[12:16])[0]
        _check_rate_channels(src, sr, channels)
        return Header("ogg", "vorbis", sr, channels)
    if first[:5] == b"\x7fFLAC":
        return Header("ogg", "flac")
    raise UnsupportedFormatError(f"unsupported codec in Ogg container (first packet {bytes(first[:8])!r})",
                                 src.name)


def check_ogg_complete(src: Source) -> None:
    """Refuse an Ogg stream whose last page is cut short or lacks the end-of-stream flag.

    A page's length is known from its header, so the true last page is the one that ends exactly
    at the end of the file; a capture pattern that happens to occur inside packet data does not.
    """
    tail_start = max(0, src.size - 65_307 - 27)  # the largest possible Ogg page
    tail = src.read_at(tail_start, src.size - tail_start)
    pos = tail.rfind(b"OggS")
    while pos >= 0:
        if pos + 27 <= len(tail) and tail[pos + 4] == 0:
            nsegs = tail[pos + 26]
            lacing = tail[pos + 27: pos + 27 + nsegs]
            end = pos + 27 + nsegs + sum(lacing)
            if len(lacing) == nsegs and end == len(tail):
                if not tail[pos + 5] & 0x04:
                    raise DecodeError("truncated Ogg: the last page is not an end-of-stream page", src.name)
                return
        pos = tail.rfind(b"OggS", 0, pos)
    raise DecodeError("truncated Ogg: the file ends inside a page", src.name)
