"""The speech server in-process: its routes on a tiny voice through starlette's test client,
the audio containers it writes, and its checks of a request. Fast; the server as a process
(its command line, concurrency, disconnects) is tests/test_server.py."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from tts.audio import load_audio, to_pcm16  # noqa: E402
from tts.server.encode import StreamEncoder, encode_file  # noqa: E402

TEXT = "Hello there. How are you?"
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffmpeg and ffprobe")


def _ffmpeg_decode(data: bytes) -> np.ndarray:
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "s16le", "-ac", "1", "pipe:1"], input=data,
                         capture_output=True, check=True).stdout
    return np.frombuffer(pcm, "<i2")


def _ffprobe_duration(path) -> str:
    return subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def client(synth):
    from tts.server.app import Server, build_app
    from tts.server.encode import formats
    from tts.server.workers import WorkerPool

    pool = WorkerPool(2, 2)
    with TestClient(build_app(Server({"tiny": synth}, pool, formats()))) as c:
        c.pool = pool
        yield c
    pool.shutdown()


@pytest.fixture(scope="module")
def expected(synth) -> np.ndarray:
    return to_pcm16(synth.synthesize(TEXT, seed=4))


def _speech(client, **body):
    response = client.post("/v1/audio/speech", json={"input": TEXT, "seed": 4, **body})
    assert response.status_code == 200, response.text
    return response


def _streaminfo_samples(flac: bytes) -> int:
    """The total sample count of a FLAC's STREAMINFO (36 bits after rate, channels, depth)."""
    assert flac[:4] == b"fLaC" and flac[4] & 0x7F == 0  # STREAMINFO comes first
    bits = int.from_bytes(flac[8 + 10 : 8 + 18], "big")  # rate(20) channels(3) depth(5) samples(36)
    return bits & (2**36 - 1)


def _with_streaminfo_samples(flac: bytes, samples: int) -> bytes:
    at = 8 + 10
    bits = int.from_bytes(flac[at : at + 8], "big") & ~(2**36 - 1) | samples
    return flac[:at] + bits.to_bytes(8, "big") + flac[at + 8 :]


# --- what the server sends, read back --------------------------------------------------------


def test_a_saved_flac_reads_back_whole(client, expected, tmp_path):
    """A FLAC to be saved comes whole, with its sample count: soundfile and the engine read it."""
    response = _speech(client, response_format="flac")
    assert response.headers["content-type"] == "audio/flac"
    assert int(response.headers["content-length"]) == len(response.content)
    assert _streaminfo_samples(response.content) == len(expected)
    audio, rate = sf.read(io.BytesIO(response.content), dtype="int16")
    np.testing.assert_array_equal(audio, expected)
    path = tmp_path / "speech.flac"
    path.write_bytes(response.content)
    assert sf.info(str(path)).frames == len(expected)
    np.testing.assert_allclose(load_audio(path), expected / 32768.0, atol=1e-4)
    if shutil.which("ffprobe"):
        assert float(_ffprobe_duration(path)) == pytest.approx(len(expected) / 16000)
        np.testing.assert_array_equal(_ffmpeg_decode(response.content), expected)


def test_a_streamed_flac_says_its_length_is_unknown(client, expected):
    """Streamed, the length cannot be in the header: STREAMINFO says 0 ("unknown"), never an
    absurd count, and the frames after it are the audio (read back once the count is set)."""
    response = _speech(client, response_format="flac", stream=True)
    assert "content-length" not in response.headers  # sent while generated
    assert _streaminfo_samples(response.content) == 0
    audio, _ = sf.read(io.BytesIO(_with_streaminfo_samples(response.content, len(expected))), dtype="int16")
    np.testing.assert_array_equal(audio, expected)


@needs_ffmpeg
def test_ffmpeg_reads_a_streamed_flac_and_wav_whole(client, expected):
    for fmt in ("flac", "wav"):
        np.testing.assert_array_equal(_ffmpeg_decode(_speech(client, response_format=fmt, stream=True).content),
                                      expected)


def _wav_lengths(wav: bytes) -> tuple[int, int]:
    """(RIFF size, data size) of a 44-byte-header WAV."""
    assert wav[:4] == b"RIFF" and wav[8:16] == b"WAVEfmt " and wav[36:40] == b"data"
    return struct.unpack("<I", wav[4:8])[0], struct.unpack("<I", wav[40:44])[0]


def test_a_saved_wav_carries_its_true_length(client, expected):
    response = _speech(client, response_format="wav")
    wav = response.content
    assert _wav_lengths(wav) == (len(wav) - 8, 2 * len(expected))
    assert sf.info(io.BytesIO(wav)).frames == len(expected)
    audio, _ = sf.read(io.BytesIO(wav), dtype="int16")
    np.testing.assert_array_equal(audio, expected)


def test_a_streamed_wav_has_open_lengths_that_readers_read_to_the_end(client, expected):
    import wave

    wav = _speech(client, response_format="wav", stream=True).content
    assert _wav_lengths(wav) == (0xFFFFFFFF, 0xFFFFFFFF)
    audio, _ = sf.read(io.BytesIO(wav), dtype="int16")  # libsndfile reads to the end of the data
    np.testing.assert_array_equal(audio, expected)
    with wave.open(io.BytesIO(wav)) as w:  # Python's reader stops at the end too
        assert w.readframes(2**31) == expected.astype("<i2").tobytes()


def test_pcm_streams_and_the_timings_route_gives_a_whole_file(client, expected):
    import base64

    streamed = _speech(client, response_format="pcm")
    assert "content-length" not in streamed.headers
    assert streamed.content == expected.astype("<i2").tobytes()
    response = client.post("/v1/audio/speech/timings", json={"input": TEXT, "seed": 4, "response_format": "wav"})
    wav = base64.b64decode(response.json()["audio"])
    assert _wav_lengths(wav) == (len(wav) - 8, 2 * len(expected))
    assert [w["word"] for w in response.json()["words"]] == ["Hello", "there.", "How", "are", "you?"]


def test_whole_files_hold_the_same_samples_as_streams(rng):
    audio = rng.uniform(-1, 1, 5000).astype(np.float32)
    for fmt in ("wav", "flac"):
        whole, _ = sf.read(io.BytesIO(encode_file(fmt, 16000, audio)), dtype="int16")
        encoder = StreamEncoder(fmt, 16000)
        streamed = b"".join([encoder.encode(audio[:1234]), encoder.encode(audio[1234:]), encoder.finish()])
        if fmt == "flac":
            streamed = _with_streaminfo_samples(streamed, len(audio))
        np.testing.assert_array_equal(sf.read(io.BytesIO(streamed), dtype="int16")[0], whole)
        np.testing.assert_array_equal(whole, to_pcm16(audio))
    assert encode_file("pcm", 16000, audio) == to_pcm16(audio).astype("<i2").tobytes()


# --- a request's checks ----------------------------------------------------------------------


@pytest.mark.parametrize("field, value, code", [
    ("seed", 2**63, "invalid_seed"), ("seed", True, "invalid_seed"), ("speed", 2.01, "invalid_speed"),
    ("stream", "yes", "invalid_type"),
])
def test_bad_fields_are_refused_with_the_engines_bounds(client, field, value, code):
    from tts.errors import MAX_RATE, MAX_SEED

    response = client.post("/v1/audio/speech", json={"input": TEXT, field: value})
    error = response.json()["error"]
    assert (response.status_code, error["code"], error["param"]) == (422, code, field)
    assert str(MAX_SEED if field == "seed" else MAX_RATE) in error["message"] or field == "stream"


# --- admission -------------------------------------------------------------------------------


def test_the_engines_measured_speed_bounds_the_streams_at_once():
    from tts.server.workers import RealTime

    realtime = RealTime(cores=2, margin=0.8)
    assert realtime.streams() is None  # nothing measured: the workers bound it alone
    realtime.record(wall=0.5, audio=1.0, streams=1)  # alone, one core: two cores make 4 s of audio a second
    assert realtime.streams() == 3  # 80 % of 4
    realtime.record(wall=2.0, audio=1.0, streams=4)  # four at once, each at half real time: 2 s a second
    assert realtime.streams() == 2  # 80 % of the mean, 3
    realtime.record(wall=10.0, audio=1.0, streams=1)
    assert realtime.streams() == 1  # however slow, one stream at a time is served


def test_every_stream_measures_the_engines_speed(client):
    from tts.server.workers import WorkerPool

    assert WorkerPool(2, 0).realtime.streams() is None
    _speech(client, response_format="pcm")
    assert client.get("/health").json()["streams"] == client.pool.streams() == min(2, client.pool.realtime.streams())


def test_past_what_the_engine_keeps_in_real_time_a_request_gets_503_at_once():
    import asyncio
    import threading

    from tts.server.workers import ServerBusy, WorkerPool

    release = threading.Event()

    def stream():
        yield 1
        release.wait(60)  # holds its worker until the test ends

    async def admit() -> tuple[list, int]:
        pool = WorkerPool(workers=8, queue=0, cores=2)
        pool.realtime.record(wall=1.0, audio=1.0, streams=4)  # four streams at once run exactly in real time
        jobs = []
        try:
            for _ in range(8):
                jobs.append(pool.submit(stream))
        except ServerBusy as e:
            retry = e.retry_after
        finally:
            release.set()
            for job in jobs:
                job.cancel()
        pool.shutdown()
        return jobs, retry

    jobs, retry = asyncio.run(admit())
    assert len(jobs) == 3 and retry >= 1  # 80 % of 4 streams: the fourth is refused, not queued


def test_the_engine_says_in_one_line_that_a_streamed_flac_has_no_length(client, tmp_path):
    """Saved as it streamed, a FLAC whose header leaves the length unknown is refused with one
    clear error by the engine's reader (libsndfile would take it as endless)."""
    from tts.audio import load_audio
    from tts.errors import AudioFileError

    path = tmp_path / "streamed.flac"
    path.write_bytes(_speech(client, response_format="flac", stream=True).content)
    with pytest.raises(AudioFileError, match="header gives no usable length"):
        load_audio(path)
