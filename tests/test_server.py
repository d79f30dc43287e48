"""The speech server end to end: real server processes on a tiny voice, driven by the official
``openai`` client, raw HTTP sockets and a WebSocket client."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

openai = pytest.importorskip("openai")
websockets_sync = pytest.importorskip("websockets.sync.client")

from tts.audio import to_pcm16  # noqa: E402
from tts.text import split_sentences  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 120  # torch and fastapi imports and the numba compile, on a busy machine
KEY = "test-key"
TEXT = "Dr. Smith paid $3.50 for it. Was it worth it? She thinks so."
# Long enough that its audio (800 samples per symbol) outgrows every buffer between a worker
# and a client that stopped reading, so that the request keeps its worker.
LONG_TEXT = "The quick brown fox jumps over the lazy dog. " * 40


def _env() -> dict[str, str]:
    # One thread per process, so the server computes exactly what this process computes.
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def _server_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tts.server", "--device", "cpu", *args]


@contextmanager
def _serve(log: Path, *args: str):
    """Run ``python -m tts.server ARGS --port 0``; yields its base URL."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(_server_command(*args, "--port", "0"), cwd=ROOT, env=_env(), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while (m := re.search(r"on (http://\S+)", log.read_text())) is None:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not start within {STARTUP_TIMEOUT_S} s:\n{log.read_text()}")
            time.sleep(0.2)
        yield m.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"the server did not stop on SIGTERM:\n{log.read_text()}")
    assert "Traceback" not in log.read_text(), log.read_text()




@pytest.fixture(scope="module")
def server(voice, tmp_path_factory):
    """Eight workers, a queue of two, no key."""
    with _serve(tmp_path_factory.mktemp("server") / "log", "--voice", str(voice), "--workers", "8",
                "--queue", "2") as url:
        yield url


@pytest.fixture(scope="module")
def guarded(voice, tmp_path_factory):
    """One worker, a queue of one, an API key and one CORS origin."""
    with _serve(tmp_path_factory.mktemp("guarded") / "log", "--voice", str(voice), "--workers", "1",
                "--queue", "1", "--api-key", KEY, "--cors-origin", "http://app.example") as url:
        yield url


def _pcm(synth, text, seed=0, rate=1.0) -> bytes:
    return to_pcm16(synth.synthesize(text, seed=seed, rate=rate)).astype("<i2").tobytes()


def _client(url: str, key: str = "unused"):
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)


def _get(url: str, headers: dict | None = None) -> tuple[int, dict, dict]:
    """(status, headers, JSON body) of a GET, errors included."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.headers, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.load(e)


def _post(url: str, body, headers: dict | None = None, route: str = "/v1/audio/speech") -> tuple[int, dict, bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url + route, data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class _SmallWindow(http.client.HTTPConnection):
    """A client with a small receive window: the server cannot run far ahead of what it
    reads, so a request holds its worker until its client has read its audio."""

    def connect(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(self.timeout)
        self.sock.connect((self.host, self.port))


class _Held:
    """A speech request on a raw socket that reads the response headers and then stops
    reading (a tiny receive window), so its job stays blocked on a full pipe."""

    def __init__(self, url: str, text: str = LONG_TEXT, key: str | None = None):
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(60)
        self.sock.connect((host, int(port)))
        body = json.dumps({"input": text, "voice": "tiny", "response_format": "pcm"}).encode()
        auth = f"Authorization: Bearer {key}\r\n" if key else ""
        self.sock.sendall(f"POST /v1/audio/speech HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                          f"{auth}Content-Length: {len(body)}\r\n\r\n".encode() + body)

    def status_line(self) -> bytes:
        return self.sock.recv(64).split(b"\r\n")[0]

    def close(self) -> None:
        self.sock.close()


def _wait_for(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


def _error(body: bytes) -> dict:
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"], error
    return error


# --- the OpenAI client -------------------------------------------------------------------


def test_openai_client_speaks_the_synthesizers_audio(server, synth):
    client = _client(server)
    response = client.audio.speech.create(model="tts-1", voice="tiny", input=TEXT, response_format="wav",
                                          extra_body={"seed": 3})
    audio, rate = sf.read(io.BytesIO(response.content), dtype="int16")
    assert rate == synth.sample_rate
    assert audio.astype("<i2").tobytes() == _pcm(synth, TEXT, seed=3)

    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="tiny", input=TEXT,
                                                            response_format="pcm", speed=1.5) as streamed:
        assert streamed.headers["x-sample-rate"] == str(synth.sample_rate)
        assert streamed.headers.get("transfer-encoding") == "chunked"
        body = b"".join(streamed.iter_bytes())
    assert body == _pcm(synth, TEXT, rate=1.5)  # byte for byte

    with pytest.raises(openai.NotFoundError) as e:
        client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT)
    assert e.value.body["code"] == "voice_not_found"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to decode")
def test_flac_and_mp3_stream_decodable_audio(server, synth):
    def decode(data: bytes) -> bytes:
        return subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "s16le", "-ac", "1", "-ar", "16000",
                               "pipe:1"], input=data, capture_output=True, check=True).stdout

    expected = _pcm(synth, TEXT)
    status, headers, flac = _post(server, {"input": TEXT, "voice": "tiny", "response_format": "flac"})
    assert status == 200 and headers["content-type"] == "audio/flac"
    assert decode(flac) == expected  # lossless
    status, headers, mp3 = _post(server, {"input": TEXT, "voice": "tiny", "response_format": "mp3"})
    if status == 422:  # no MPEG encoder in this libsndfile
        assert _error(mp3)["code"] == "unsupported_format"
        return
    assert status == 200 and headers["content-type"] == "audio/mpeg"
    assert abs(len(decode(mp3)) - len(expected)) < 2 * 2304 * 2  # encoder delay and padding


# --- concurrency ---------------------------------------------------------------------------


def test_concurrent_clients_each_get_their_own_audio(server, synth):
    n = 8
    texts = [f"Client number {i} asks for {i * 7} apples and {i + 3} pears. " * 4 for i in range(n)]
    host, port = server.removeprefix("http://").split(":")
    all_started = threading.Barrier(n, timeout=120)
    results: list = [None] * n
    times = np.zeros((n, 2))  # (first bytes, last bytes)

    def client(i: int) -> None:
        conn = _SmallWindow(host, int(port), timeout=120)
        conn.request("POST", "/v1/audio/speech", json.dumps(
            {"input": texts[i], "voice": "tiny", "response_format": "pcm", "seed": i}),
            {"Content-Type": "application/json"})
        response = conn.getresponse()
        first = response.read(2)
        times[i, 0] = time.monotonic()
        all_started.wait()  # nobody reads on before all eight are under way
        results[i] = first + response.read()
        times[i, 1] = time.monotonic()
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert times[:, 0].max() < times[:, 1].min()  # every stream was open at once
    assert _get(server + "/health")[2]["peak_running"] == n  # and generated at once
    for i in range(n):
        assert results[i] == _pcm(synth, texts[i], seed=i), f"client {i} got audio that is not its own"


def test_over_full_queue_answers_503_at_once(guarded):
    auth = {"Authorization": f"Bearer {KEY}"}
    running = _Held(guarded, key=KEY)
    assert running.status_line() == b"HTTP/1.1 200 OK"
    waiting = _Held(guarded, key=KEY)  # no worker free: it waits in the queue
    _wait_for(lambda: _get(guarded + "/health")[2]["waiting"] == 1, "the second request to queue")
    start = time.monotonic()
    status, headers, body = _post(guarded, {"input": "Hello.", "voice": "tiny"}, auth)
    assert status == 503 and time.monotonic() - start < 30  # not a wait for the running request
    assert int(headers["Retry-After"]) >= 1
    assert _error(body)["code"] == "server_busy"
    running.close()
    assert waiting.status_line() == b"HTTP/1.1 200 OK"  # its turn came
    waiting.close()
    _wait_for(lambda: _get(guarded + "/health")[2]["running"] == 0, "the workers to be free")


def test_a_client_that_leaves_frees_its_worker(guarded, synth):
    auth = {"Authorization": f"Bearer {KEY}"}
    cancelled = _get(guarded + "/health")[2]["cancelled"]
    held = _Held(guarded, key=KEY)
    assert held.status_line() == b"HTTP/1.1 200 OK"
    assert _get(guarded + "/health")[2]["running"] == 1  # blocked on the client, not done
    held.close()
    health = _wait_for(lambda: (h := _get(guarded + "/health")[2])["running"] == 0 and h, "the worker to be free")
    assert health["cancelled"] == cancelled + 1
    status, _, body = _post(guarded, {"input": "Hello.", "voice": "tiny", "response_format": "pcm"}, auth)
    assert status == 200 and body == _pcm(synth, "Hello.")


# --- WebSocket -----------------------------------------------------------------------------


def _ws(url: str, **kwargs):
    return websockets_sync.connect(url.replace("http://", "ws://") + "/v1/audio/speech/stream",
                                   open_timeout=60, **kwargs)


def _utterance(ws) -> tuple[bytes, list[dict], dict]:
    """Receive until "done": (the PCM, the audio messages, the done message)."""
    pcm, meta = b"", []
    while True:
        message = json.loads(ws.recv(timeout=60))
        if message["type"] == "done":
            return pcm, meta, message
        assert message["type"] == "audio", message
        samples = ws.recv(timeout=60)
        assert isinstance(samples, bytes) and len(samples) == 2 * message["samples"]
        pcm += samples
        meta.append(message)


def test_websocket_fragments_give_the_whole_texts_audio(server, synth):
    with _ws(server) as ws:
        ready = json.loads(ws.recv(timeout=60))
        assert ready["type"] == "ready" and ready["sample_rate"] == synth.sample_rate
        ws.send(json.dumps({"type": "config", "seed": 5}))
        # Cut mid-word and mid-sentence; the first sentence is spoken before the rest is sent.
        cut = TEXT.index("Was it") + 5
        for a in range(0, cut, 7):
            ws.send(json.dumps({"type": "text", "text": TEXT[a : min(a + 7, cut)]}))
        first = json.loads(ws.recv(timeout=60))
        assert first["type"] == "audio" and first["sentence"] == 0
        first_pcm = ws.recv(timeout=60)
        for a in range(cut, len(TEXT), 5):
            ws.send(json.dumps({"type": "text", "text": TEXT[a : a + 5]}))
        ws.send(json.dumps({"type": "flush"}))
        pcm, meta, done = _utterance(ws)
        assert first_pcm + pcm == _pcm(synth, TEXT, seed=5)
        sentences = split_sentences(TEXT)
        assert done == {"type": "done", "sentences": len(sentences), "samples": len(first_pcm + pcm) // 2}
        assert [m["text"] for m in [first] + meta if m["last"]] == sentences

        # The next utterance starts afresh, with the same options.
        ws.send(json.dumps({"type": "text", "text": "Hello again."}))
        ws.send(json.dumps({"type": "flush"}))
        assert _utterance(ws)[0] == _pcm(synth, "Hello again.", seed=5)


def test_timings_route_ssml_and_pauses(server, synth):
    """The timings route answers the audio with its words and phonemes; SSML and pauses go
    through both routes; malformed SSML is a 400 before any audio."""
    import base64

    body = {"input": TEXT, "response_format": "pcm", "seed": 2, "sentence_pause": 0.25}
    status, _, raw = _post(server, body, route="/v1/audio/speech/timings")
    assert status == 200, raw
    record = json.loads(raw)
    audio, words, phonemes = synth.synthesize_with_timings(TEXT, seed=2, sentence_pause=0.25)
    assert base64.b64decode(record["audio"]) == to_pcm16(audio).astype("<i2").tobytes()
    assert [w["word"] for w in record["words"]] == [w.word for w in words] and words[3].word == "$3.50"
    assert [TEXT[w["offset"]:w["offset"] + w["length"]] for w in record["words"]][:4] == ["Dr.", "Smith", "paid", "$3.50"]
    assert record["phonemes"][0] == {"phoneme": "D", "start": 0.0, "end": phonemes[0].end}
    ssml = '<speak>Hi <break time="500ms"/> there.</speak>'
    status, _, pcm = _post(server, {"input": ssml, "response_format": "pcm"})
    assert status == 200 and pcm == to_pcm16(synth.synthesize(ssml)).astype("<i2").tobytes()
    status, _, raw = _post(server, {"input": "<speak>Hi <break> there</speak>", "response_format": "pcm"})
    assert status == 400 and _error(raw)["code"] == "invalid_ssml" and "line 1" in _error(raw)["message"]
    status, _, raw = _post(server, {"input": "Hi.", "sentence_pause": -1})
    assert status == 422 and _error(raw)["code"] == "invalid_pause"


def test_websocket_audio_messages_time_the_words_they_complete(server, synth):
    with _ws(server) as ws:
        json.loads(ws.recv(timeout=60))
        ws.send(json.dumps({"type": "text", "text": TEXT}))
        ws.send(json.dumps({"type": "flush"}))
        pcm, meta, _ = _utterance(ws)
    words = [w for m in meta for w in m["words"]]
    _, expected, _ = synth.synthesize_with_timings(TEXT)
    assert [(w["word"], w["start"], w["end"]) for w in words] == [(w.word, w.start, w.end) for w in expected]
    sources = [m["source"] for m in meta if "source" in m]
    assert sources[0] == "Dr. Smith paid $3.50 for it." and len(sources) == 3
    first = [w for m in meta if m["sentence"] == 0 for w in m["words"]]
    assert [sources[0][w["offset"]:w["offset"] + w["length"]] for w in first] == ["Dr.", "Smith", "paid", "$3.50",
                                                                                  "for", "it"]


def test_websocket_bad_messages_get_errors_and_the_session_goes_on(server, synth):
    def error(ws) -> dict:
        message = json.loads(ws.recv(timeout=60))
        assert message["type"] == "error", message
        return message["error"]

    with _ws(server) as ws:
        json.loads(ws.recv(timeout=60))  # ready
        ws.send("not json")
        assert error(ws)["code"] == "invalid_json"
        ws.send(b"\x00\x01")
        assert error(ws)["code"] == "invalid_message"
        ws.send(json.dumps({"type": "speak"}))
        assert error(ws)["code"] == "invalid_message"
        ws.send(json.dumps({"type": "config", "voice": "alloy"}))
        assert error(ws)["code"] == "voice_not_found"
        ws.send(json.dumps({"type": "config", "speed": 9}))
        assert error(ws)["code"] == "invalid_speed"
        ws.send(json.dumps({"type": "text", "text": "Hel"}))
        ws.send(json.dumps({"type": "config", "seed": 1}))
        assert error(ws)["code"] == "config_mid_utterance"
        ws.send(json.dumps({"type": "text", "text": "lo."}))
        ws.send(json.dumps({"type": "flush"}))
        assert _utterance(ws)[0] == _pcm(synth, "Hello.")
        ws.send(json.dumps({"type": "text", "text": "😀 ..."}))
        ws.send(json.dumps({"type": "flush"}))
        assert error(ws)["code"] == "nothing_to_speak"
        assert _utterance(ws)[2]["sentences"] == 0
        ws.send(json.dumps({"type": "text", "text": "a" * 5000}))
        assert error(ws)["code"] == "input_too_long"
        with pytest.raises(Exception) as closed:
            ws.recv(timeout=60)
        assert getattr(closed.value, "rcvd", None) is not None and closed.value.rcvd.code == 1009


# --- bad input, keys, origins --------------------------------------------------------------


@pytest.mark.parametrize("body, status, code", [
    ({"voice": "tiny"}, 400, "missing_required_parameter"),
    ({"input": "", "voice": "tiny"}, 400, "empty_input"),
    ({"input": "   \n", "voice": "tiny"}, 400, "empty_input"),
    ({"input": "😀 ... ?!", "voice": "tiny"}, 400, "nothing_to_speak"),
    ({"input": ["Hello."], "voice": "tiny"}, 400, "invalid_type"),
    ({"input": "a" * 4097, "voice": "tiny"}, 413, "input_too_long"),
    ({"input": "Hello.", "voice": "nobody"}, 404, "voice_not_found"),
    ({"input": "Hello.", "voice": "tiny", "response_format": "opus"}, 422, "unsupported_format"),
    ({"input": "Hello.", "voice": "tiny", "speed": 4.0}, 422, "invalid_speed"),
    ({"input": "Hello.", "voice": "tiny", "speed": "fast"}, 422, "invalid_speed"),
    ({"input": "Hello.", "voice": "tiny", "seed": -1}, 422, "invalid_seed"),
    ({"input": "Hello.", "voice": "tiny", "seed": 1.5}, 422, "invalid_seed"),
    (b"{not json", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_json"),
    (b'{"input": "' + b"a" * 200_000 + b'"}', 413, "request_too_large"),
])
def test_bad_requests_get_their_status_and_a_json_error(server, body, status, code):
    got, headers, reply = _post(server, body)
    assert (got, _error(reply)["code"]) == (status, code)
    assert headers["content-type"] == "application/json"
    assert _get(server + "/health")[0] == 200  # still up


def test_voices_and_unknown_routes(server, synth):
    status, _, voices = _get(server + "/v1/voices")
    assert status == 200 and voices["default"] == "tiny"
    assert [v["id"] for v in voices["data"]] == ["tiny"] and "wav" in voices["formats"]
    status, _, body = _get(server + "/v1/nothing")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_api_key_guards_every_route_but_health(guarded, synth):
    status, headers, body = _get(guarded + "/v1/voices")
    assert status == 401 and body["error"]["code"] == "invalid_api_key" and headers["www-authenticate"] == "Bearer"
    assert _get(guarded + "/v1/voices", {"Authorization": "Bearer wrong"})[0] == 401
    assert _get(guarded + "/v1/voices", {"Authorization": f"Bearer {KEY}"})[0] == 200
    assert _get(guarded + "/health")[0] == 200
    with pytest.raises(openai.AuthenticationError):
        _client(guarded).audio.speech.create(model="tts-1", voice="tiny", input="Hello.")
    audio = _client(guarded, KEY).audio.speech.create(model="tts-1", voice="tiny", input="Hello.",
                                                     response_format="pcm").content
    assert audio == _pcm(synth, "Hello.")
    with pytest.raises(Exception) as refused:
        with _ws(guarded):
            pass
    assert getattr(getattr(refused.value, "response", None), "status_code", None) == 403
    with _ws(guarded, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
        assert json.loads(ws.recv(timeout=60))["type"] == "ready"


def test_cors_only_for_the_origins_given(server, guarded):
    def preflight(url: str, origin: str) -> dict:
        request = urllib.request.Request(url + "/v1/audio/speech", method="OPTIONS", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return dict(r.headers)
        except urllib.error.HTTPError as e:
            return dict(e.headers)

    assert preflight(guarded, "http://app.example").get("access-control-allow-origin") == "http://app.example"
    assert "access-control-allow-origin" not in preflight(guarded, "http://evil.example")
    assert "access-control-allow-origin" not in preflight(server, "http://app.example")


# --- the command line ----------------------------------------------------------------------


def test_startup_without_a_voice_is_one_line_and_exit_1(tmp_path):
    empty = tmp_path / "no-voices"
    empty.mkdir()
    result = subprocess.run(_server_command("--voice-dir", str(empty)), cwd=ROOT, env=_env(), capture_output=True,
                            text=True, timeout=STARTUP_TIMEOUT_S)
    assert result.returncode == 1
    assert result.stderr.strip() == f"tts-server: error: no voice installed yet in {empty}: pass --voice DIR or --voice-dir DIR"


def test_bad_options_are_one_line(tmp_path, voice, capsys):
    from tts.server import cli

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = str(taken.getsockname()[1])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{")
    try:
        for args, code, message in [
            (["--voice", str(tmp_path / "missing")], 2, "voice folder not found"),
            (["--voice", str(voice), "--workers", "0"], 2, "--workers must be at least 1"),
            (["--voice", str(voice), "--port", "70000"], 2, "not a port number"),
            (["--voice", str(voice), "--speed"], 2, "unrecognized arguments"),
            # A wrong --voice is bad input (2), as for synthesize; a broken voice cannot run (1).
            (["--voice", str(tmp_path)], 2, f"voice folder {tmp_path} has no config.json"),
            (["--voice", str(broken)], 1, "config.json"),
            (["--voice", str(voice), "--port", port], 1, f"cannot serve on 127.0.0.1:{port}"),
        ]:
            assert cli.main([*args, "--device", "cpu"]) == code, args
            lines = capsys.readouterr().err.strip().splitlines()
            assert len(lines) == 1 and message in lines[0], (args, lines)
    finally:
        taken.close()


def test_listening_beyond_loopback_without_a_key_warns(voice, capsys, monkeypatch):
    import uvicorn

    from tts.server import cli

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    assert cli.main(["--voice", str(voice), "--device", "cpu", "--host", "0.0.0.0", "--port", "0"]) == 0
    assert "without --api-key" in capsys.readouterr().err
    assert cli.main(["--voice", str(voice), "--device", "cpu", "--port", "0"]) == 0
    assert "warning" not in capsys.readouterr().err
