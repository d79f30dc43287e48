"""Audio containers, whole (``encode_file``) or written while the audio is made
(``StreamEncoder``: ``encoder.encode(chunk)`` returns the bytes that can be sent now,
``encoder.finish()`` the rest).

A whole file carries its true length: WAV's chunk sizes, FLAC's sample count and checksum, MP3's
LAME tag. A stream cannot go back to its header: WAV's lengths say "unknown" (0xFFFFFFFF, as
streaming WAV servers do; libsndfile and ffmpeg then read to the end of the data) and FLAC's
STREAMINFO says 0 samples, which the format allows for "unknown" and ffmpeg reads, but
libsndfile (so soundfile) cannot: a FLAC to be saved should be a whole file. PCM is the bare
16-bit little-endian samples. Every format carries the samples of ``tts.audio.to_pcm16``, so
WAV, PCM and FLAC hold the very same numbers.
"""

from __future__ import annotations

import io
import struct

import numpy as np

from tts.audio import to_pcm16

MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac", "mp3": "audio/mpeg"}
_UNKNOWN = 0xFFFFFFFF


def formats() -> list[str]:
    """The response formats this installation can encode: mp3 only where libsndfile has an
    MPEG encoder (libsndfile 1.1 or later)."""
    import soundfile as sf

    return [f for f in MEDIA_TYPES if f != "mp3" or "MP3" in sf.available_formats()]


def wav_header(sample_rate: int, samples: int | None = None) -> bytes:
    """A 16-bit mono WAV header for ``samples`` samples; with None, open lengths, for audio
    whose length is not known yet."""
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, 2 * sample_rate, 2, 16)  # PCM, mono, 16-bit
    data = _UNKNOWN if samples is None else 2 * samples
    riff = _UNKNOWN if samples is None else 4 + (8 + len(fmt)) + (8 + data)  # "WAVE", fmt and data chunks
    return b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + \
        b"data" + struct.pack("<I", data)


def _subtype(format: str) -> str:
    return "PCM_16" if format == "flac" else "MPEG_LAYER_III"


def _check_format(format: str) -> None:
    if format not in MEDIA_TYPES:
        raise ValueError(f"unknown audio format {format!r} (expected one of {', '.join(MEDIA_TYPES)})")


def encode_file(format: str, sample_rate: int, audio: np.ndarray) -> bytes:
    """The whole of ``audio`` (float, (T,)) as one file in ``format``, its header complete."""
    _check_format(format)
    pcm = to_pcm16(audio)
    if format in ("wav", "pcm"):
        return (wav_header(sample_rate, len(pcm)) if format == "wav" else b"") + pcm.astype("<i2").tobytes()
    import soundfile as sf

    out = io.BytesIO()  # seekable: libsndfile fills in the header when it closes
    with sf.SoundFile(out, "w", sample_rate, 1, format=format.upper(), subtype=_subtype(format)) as f:
        f.write(pcm)
    return out.getvalue()


class _AppendOnly:
    """A file for libsndfile that hands its bytes out as they are written. At the end the
    encoders seek back to fill in their header (FLAC's sample count and checksum, MP3's LAME
    tag); bytes already sent cannot change, so those stay unset (0: "unknown")."""

    def __init__(self):
        self._unsent = bytearray()
        self._sent = 0  # bytes handed out before _unsent
        self._pos = self._end = 0

    def write(self, data) -> int:
        data = bytes(data)
        at = self._pos - self._sent
        if at + len(data) > 0:
            kept = data[max(0, -at):]
            at = max(0, at)
            self._unsent[len(self._unsent):] = bytes(max(0, at - len(self._unsent)))
            self._unsent[at : at + len(kept)] = kept
        self._pos += len(data)
        self._end = max(self._end, self._pos)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = offset + (0, self._pos, self._end)[whence]
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        return b""  # write-only

    def take(self) -> bytes:
        out = bytes(self._unsent)
        self._sent += len(out)
        self._unsent.clear()
        return out


class StreamEncoder:
    """One response's audio in ``format`` (see ``formats``), chunk by chunk."""

    def __init__(self, format: str, sample_rate: int):
        _check_format(format)
        self.format, self.sample_rate = format, sample_rate
        self.media_type = MEDIA_TYPES[format]
        self._file = self._sink = None
        self._header = wav_header(sample_rate) if format == "wav" else b""
        if format in ("flac", "mp3"):
            import soundfile as sf

            self._sink = _AppendOnly()
            self._file = sf.SoundFile(self._sink, "w", sample_rate, 1, format=format.upper(),
                                      subtype=_subtype(format))

    def encode(self, audio: np.ndarray) -> bytes:
        pcm = to_pcm16(audio)
        if self._file is None:
            out, self._header = self._header + pcm.astype("<i2").tobytes(), b""
            return out
        self._file.write(pcm)
        return self._sink.take()

    def finish(self) -> bytes:
        if self._file is None:
            out, self._header = self._header, b""
            return out
        self._file.close()
        return self._sink.take()
