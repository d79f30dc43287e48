"""The routes: OpenAI's speech endpoint, a WebSocket for text still being written, voices, health.

``POST /v1/audio/speech`` takes OpenAI's request (``model`` is accepted and ignored) plus the
engine's optional ``seed``, ``ssml`` (read ``input`` as SSML; by default when it starts with
markup, `tts.text.ssml.is_ssml`), ``sentence_pause`` and ``paragraph_pause`` (seconds) and ``stream``: true sends the
body while it is generated, false the whole file once it is done, its header carrying the true
length (by default pcm and mp3 stream, wav and flac come whole). ``POST /v1/audio/speech/timings`` takes the same request and answers JSON:
the audio (base64, in ``response_format``) with every word's and phoneme's start and end. ``/v1/audio/speech/stream`` is
a WebSocket: the client sends text as it arrives and a flush at the end; each sentence is
spoken as soon as it is complete (``tts.text.SentenceBuffer``), and the audio comes back as
16-bit PCM, one JSON message of metadata before each binary chunk. Either way the audio is
exactly ``Synthesizer.synthesize`` of the whole text for the same seed.

Errors are JSON in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.websockets import WebSocket

from tts.audio import to_pcm16
from tts.errors import check_rate, check_seed
from tts.server.encode import MEDIA_TYPES, StreamEncoder, encode_file
from tts.server.workers import ServerBusy, WorkerPool
from tts.text import NothingToSpeakError, SentenceBuffer
from tts.text.ssml import SsmlError

MAX_INPUT_CHARS = 4096  # characters of one request's input: OpenAI's limit
MAX_PAUSE = 60.0  # seconds
# Formats a player can start on before the end: pcm has no header, mp3 a header per frame.
# wav and flac are files whose header holds the length, so they come whole unless asked.
STREAMED_BY_DEFAULT = ("pcm", "mp3")
log = logging.getLogger("tts.server")


class ApiError(Exception):
    """A request the server refuses, with its HTTP status and OpenAI-style error."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None,
                 type: str = "invalid_request_error", headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.param, self.type, self.headers = status, code, param, type, headers

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": self.type, "param": self.param, "code": self.code}}


def _busy(e: ServerBusy) -> ApiError:
    return ApiError(503, f"{e}: it runs as many streams as it keeps in real time and the queue is full",
                    "server_busy", type="server_error", headers={"Retry-After": str(e.retry_after)})


@dataclass
class Speech:
    """One checked request."""

    text: str
    voice: str
    format: str
    rate: float
    seed: int
    ssml: bool | None = None
    sentence_pause: float = 0.0
    paragraph_pause: float = 0.0
    stream: bool = True  # the body sent while it is generated, its length unknown to its header

    def options(self) -> dict:
        """What `Synthesizer.stream` takes of it."""
        return {"seed": self.seed, "rate": self.rate, "ssml": self.ssml, "sentence_pause": self.sentence_pause,
                "paragraph_pause": self.paragraph_pause}


class Server:
    """What the routes share: the voices ({name: Synthesizer}), the worker pool, the limits."""

    def __init__(self, synths: dict, pool: WorkerPool, formats: list[str], max_chars: int = MAX_INPUT_CHARS,
                 api_key: str | None = None):
        if not synths:
            raise ValueError("the server needs at least one voice")
        self.synths, self.pool, self.formats, self.max_chars = synths, pool, formats, max_chars
        self.api_key = api_key
        self.default_voice = "default" if "default" in synths else next(iter(synths))
        # OpenAI answers in mp3 unless asked otherwise; so do we, where mp3 can be encoded.
        self.default_format = "mp3" if "mp3" in formats else "wav"

    # --- checks shared by both routes ---

    def authorized(self, headers) -> bool:
        if self.api_key is None:
            return True
        scheme, _, key = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(key.strip().encode(), self.api_key.encode())

    def voice(self, name) -> str:
        if name is None:
            return self.default_voice
        if not isinstance(name, str):
            raise ApiError(400, "'voice' must be a string", "invalid_type", "voice")
        if name not in self.synths:
            raise ApiError(404, f"no voice {name!r} (voices: {', '.join(self.synths)})", "voice_not_found", "voice")
        return name

    @staticmethod
    def rate(speed) -> float:
        if speed is None:
            return 1.0
        if isinstance(speed, bool) or not isinstance(speed, (int, float)):
            raise ApiError(422, f"'speed' must be a number, got {speed!r}", "invalid_speed", "speed")
        try:
            check_rate(speed)
        except ValueError as e:
            raise ApiError(422, f"'speed': {e}", "invalid_speed", "speed") from None
        return float(speed)

    @staticmethod
    def seed(seed) -> int:
        if seed is None:
            return 0
        try:
            check_seed(seed)
        except ValueError as e:
            raise ApiError(422, f"'seed': {e}", "invalid_seed", "seed") from None
        return seed

    def speech(self, body) -> Speech:
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object", "invalid_json")
        text = body.get("input")
        if text is None:
            raise ApiError(400, "missing required parameter 'input'", "missing_required_parameter", "input")
        if not isinstance(text, str):
            raise ApiError(400, "'input' must be a string", "invalid_type", "input")
        if len(text) > self.max_chars:
            raise ApiError(413, f"'input' is {len(text)} characters long; the limit is {self.max_chars}",
                           "input_too_long", "input")
        if not text.strip():
            raise ApiError(400, "'input' is empty", "empty_input", "input")
        if body.get("model") is not None and not isinstance(body["model"], str):
            raise ApiError(400, "'model' must be a string", "invalid_type", "model")
        voice = self.voice(body.get("voice"))
        fmt = body.get("response_format") or self.default_format
        if fmt not in self.formats:
            raise ApiError(422, f"response_format {fmt!r} is not available here (available: "
                           f"{', '.join(self.formats)})", "unsupported_format", "response_format")
        if body.get("stream_format", "audio") != "audio":
            raise ApiError(422, "only stream_format 'audio' is supported", "unsupported_stream_format",
                           "stream_format")
        ssml = body.get("ssml")
        if ssml is not None and not isinstance(ssml, bool):
            raise ApiError(422, f"'ssml' must be true or false, got {ssml!r}", "invalid_type", "ssml")
        stream = body.get("stream")
        if stream is None:
            stream = fmt in STREAMED_BY_DEFAULT
        elif not isinstance(stream, bool):
            raise ApiError(422, f"'stream' must be true or false, got {stream!r}", "invalid_type", "stream")
        return Speech(text, voice, fmt, self.rate(body.get("speed")), self.seed(body.get("seed")), ssml,
                      self.pause(body, "sentence_pause"), self.pause(body, "paragraph_pause"), stream)

    @staticmethod
    def pause(body: dict, name: str) -> float:
        value = body.get(name)
        if value is None:
            return 0.0
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_PAUSE:
            raise ApiError(422, f"'{name}' must be a number of seconds from 0 to {MAX_PAUSE}, got {value!r}",
                           "invalid_pause", name)
        return float(value)


# --- HTTP --------------------------------------------------------------------------------


async def _read_json(request: Request, limit: int):
    """The body as JSON, refusing more than ``limit`` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body is larger than {limit} bytes", "request_too_large")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise ApiError(413, f"the request body is larger than {limit} bytes", "request_too_large")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON", "invalid_json") from None


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_disconnected(awaitable, request: Request):
    """What ``awaitable`` gives, or None if the client leaves first."""
    result = asyncio.ensure_future(awaitable)
    gone = asyncio.ensure_future(_until_disconnected(request))
    try:
        await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not result.done():
        result.cancel()
        return None
    return result.result()


async def _rest(job) -> list:
    return [item async for item in job]


def build_app(server: Server, cors_origins: list[str] | None = None) -> FastAPI:
    app = FastAPI(title="tts-engine speech server", docs_url=None, redoc_url=None, openapi_url=None)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], expose_headers=["X-Sample-Rate"])

    @app.exception_handler(ApiError)
    async def api_error(request, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, e: HTTPException):  # unknown routes, wrong methods
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return JSONResponse(ApiError(e.status_code, str(e.detail), code).body(), status_code=e.status_code,
                            headers=e.headers)

    @app.exception_handler(Exception)
    async def server_error(request, e: Exception):
        log.exception("request failed")
        return JSONResponse(ApiError(500, f"internal error: {e}", "internal_error", type="server_error").body(),
                            status_code=500)

    def check_key(request: Request) -> None:
        if not server.authorized(request.headers):
            raise ApiError(401, "a valid API key is required: send 'Authorization: Bearer KEY'",
                           "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health")
    async def health():
        return {"status": "ok", "voices": list(server.synths), **server.pool.stats()}

    @app.get("/v1/voices")
    async def voices(request: Request):
        check_key(request)
        return {"object": "list", "default": server.default_voice, "formats": server.formats,
                "data": [{"id": name, "object": "voice", "sample_rate": synth.sample_rate,
                          "vocoder": synth.vocoder.name, "backend": synth.backend}
                         for name, synth in server.synths.items()]}

    @app.post("/v1/audio/speech")
    async def speech(request: Request):
        check_key(request)
        req = server.speech(await _read_json(request, 12 * server.max_chars + 65536))  # \uXXXX escapes
        synth = server.synths[req.voice]
        headers = {"X-Sample-Rate": str(synth.sample_rate)}
        job = submit(synth, req)
        if not req.stream:
            chunks = await all_chunks(job, request)
            if chunks is None:  # the client left
                return Response(status_code=499)
            return Response(encode_file(req.format, synth.sample_rate, _audio(chunks)),
                            media_type=MEDIA_TYPES[req.format], headers=headers)
        first = await first_chunk(job, request)
        if first is None:  # the client left while its request waited
            return Response(status_code=499)
        encoder = StreamEncoder(req.format, synth.sample_rate)

        async def body():
            try:
                yield encoder.encode(first.audio)
                async for chunk in job:
                    data = encoder.encode(chunk.audio)
                    if data:
                        yield data
                yield encoder.finish()
            finally:
                job.cancel()  # the client left, or the job failed: stop generating

        return StreamingResponse(body(), media_type=MEDIA_TYPES[req.format], headers=headers)

    @app.post("/v1/audio/speech/timings")
    async def speech_timings(request: Request):
        check_key(request)
        req = server.speech(await _read_json(request, 12 * server.max_chars + 65536))
        synth = server.synths[req.voice]
        chunks = await all_chunks(submit(synth, req), request)
        if chunks is None:
            return Response(status_code=499)
        audio = encode_file(req.format, synth.sample_rate, _audio(chunks))
        return {"sample_rate": synth.sample_rate, "format": req.format,
                "audio": base64.b64encode(audio).decode("ascii"),
                "words": [asdict(w) for c in chunks for w in c.words],
                "phonemes": [asdict(p) for c in chunks for p in c.phoneme_timings]}

    def submit(synth, req: Speech):
        try:
            return server.pool.submit(partial(synth.stream, req.text, **req.options()), _seconds(synth))
        except ServerBusy as e:
            raise _busy(e) from None

    async def first_chunk(job, request: Request):
        """The job's first chunk (None, the job cancelled, if the client left first); text
        with nothing to say and malformed SSML are a 400 before any audio is sent."""
        try:
            first = await _unless_disconnected(anext(job), request)
        except NothingToSpeakError as e:
            raise ApiError(400, str(e), "nothing_to_speak", "input") from None
        except SsmlError as e:
            raise ApiError(400, str(e), "invalid_ssml", "input") from None
        except BaseException:
            job.cancel()
            raise
        if first is None:
            job.cancel()
        return first

    async def all_chunks(job, request: Request) -> list | None:
        """Every chunk of the job (None, the job cancelled, if the client left first)."""
        first = await first_chunk(job, request)
        if first is None:
            return None
        try:
            rest = await _unless_disconnected(_rest(job), request)
        finally:
            job.cancel()
        return None if rest is None else [first, *rest]

    @app.websocket("/v1/audio/speech/stream")
    async def speech_stream(websocket: WebSocket):
        if not server.authorized(websocket.headers):
            await websocket.close(code=1008)  # before the handshake: the client sees HTTP 403
            return
        await websocket.accept()
        await StreamSession(server, websocket).run()

    return app


def _seconds(synth):
    """How long a chunk of ``synth``'s plays: what the pool weighs its speed against."""
    return lambda chunk: len(chunk.audio) / synth.sample_rate


def _audio(chunks: list):
    return np.concatenate([chunk.audio for chunk in chunks])  # (T,)


# --- WebSocket ---------------------------------------------------------------------------


class StreamSession:
    """One WebSocket connection. The client sends JSON text messages:

        {"type": "config", "voice": "default", "speed": 1.0, "seed": 0}   optional, before an utterance
        {"type": "text", "text": "Hello wor"}                            text as it arrives
        {"type": "flush"}                                                the utterance is complete

    and receives ``{"type": "ready", "sample_rate": 16000, ...}`` once, then for every chunk of
    audio ``{"type": "audio", "sentence": i, "text": "...", "samples": n, "last": bool, "words":
    [...], "phonemes": [...]}`` followed by a binary message of n 16-bit little-endian samples.
    ``words`` are the words the chunk completes, each ``{"word", "start", "end", "offset",
    "length"}`` with times in seconds from the start of the utterance and offsets into
    ``source``, the sentence as it was received (sent with its first chunk); after a flush's audio,
    ``{"type": "done", "sentences": n, "samples": total}``. Text after a flush starts a new
    utterance. Errors come as ``{"type": "error", "error": {...}}``; the connection stays open
    unless the server is busy (close code 1013) or too much text waits (1009).
    """

    def __init__(self, server: Server, websocket: WebSocket):
        self.server, self.ws = server, websocket
        self.voice, self.rate, self.seed = server.default_voice, 1.0, 0
        self.buffer = SentenceBuffer()
        self.started = False  # text received since the last flush
        self.queued_chars = 0  # characters of sentences waiting to be spoken
        self.todo: asyncio.Queue = asyncio.Queue()  # (sentence text, voice, rate, seed) or None: flush
        self.send_lock = asyncio.Lock()  # an audio message and its samples go out together

    async def run(self) -> None:
        await self.send({"type": "ready", "sample_rate": next(iter(self.server.synths.values())).sample_rate,
                         "encoding": "pcm_s16le", "channels": 1, "voices": list(self.server.synths)})
        tasks = [asyncio.create_task(self._receive()), asyncio.create_task(self._speak())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception:  # the other side is gone or the session ended in error
                    log.debug("websocket session ended", exc_info=True)

    async def send(self, message: dict, samples: bytes | None = None) -> None:
        async with self.send_lock:
            await self.ws.send_text(json.dumps(message))
            if samples is not None:
                await self.ws.send_bytes(samples)

    async def error(self, e: ApiError) -> None:
        await self.send({"type": "error", **e.body()})

    async def _receive(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                if message.get("text") is None:
                    raise ApiError(400, "send JSON text messages, not binary ones", "invalid_message")
                await self._handle(message["text"])
            except ApiError as e:
                await self.error(e)
                if e.status == 413:
                    await self.ws.close(code=1009)
                    return

    async def _handle(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            raise ApiError(400, "the message is not valid JSON", "invalid_json") from None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "config":
            if self.started:
                raise ApiError(400, "send config before an utterance's text, or after a flush",
                               "config_mid_utterance")
            self.voice = self.server.voice(message.get("voice", self.voice))
            self.rate = self.server.rate(message.get("speed", self.rate))
            self.seed = self.server.seed(message.get("seed", self.seed))
        elif kind == "text":
            piece = message.get("text")
            if not isinstance(piece, str):
                raise ApiError(400, "'text' must be a string", "invalid_type", "text")
            waiting = self.queued_chars + self.buffer.pending + len(piece)
            if waiting > self.server.max_chars:
                raise ApiError(413, f"{waiting} characters would wait to be spoken; the limit is "
                               f"{self.server.max_chars}", "input_too_long", "text")
            self.started = True
            self._queue(self.buffer.feed(piece))
        elif kind == "flush":
            self._queue(self.buffer.flush())
            self.todo.put_nowait(None)
            self.started = False
        else:
            raise ApiError(400, f"unknown message type {kind!r} (expected config, text or flush)",
                           "invalid_message", "type")

    def _queue(self, sentences: list[str]) -> None:
        for sentence in sentences:
            self.queued_chars += len(sentence)
            self.todo.put_nowait((sentence, self.voice, self.rate, self.seed))

    async def _speak(self) -> None:
        sentences = samples = 0  # of the current utterance
        while True:
            item = await self.todo.get()
            if item is None:
                if sentences == 0:
                    await self.error(ApiError(400, "the utterance had nothing to speak", "nothing_to_speak"))
                await self.send({"type": "done", "sentences": sentences, "samples": samples})
                sentences = samples = 0
                continue
            text, voice, rate, seed = item
            synth = self.server.synths[voice]
            try:
                job = self.server.pool.submit(partial(synth.stream, text, seed=seed, rate=rate,
                                                      first_sentence=sentences, ssml=False), _seconds(synth))
            except ServerBusy as e:
                await self.error(_busy(e))
                await self.ws.close(code=1013)  # try again later
                return
            try:
                first, shift = True, samples / synth.sample_rate  # the sentence's times are from its start
                async for chunk in job:
                    message = {"type": "audio", "sentence": chunk.sentence, "text": chunk.text,
                               "samples": len(chunk.audio), "last": chunk.last,
                               "words": [{**asdict(w), "start": round(w.start + shift, 6),
                                          "end": round(w.end + shift, 6)} for w in chunk.words],
                               "phonemes": [{**asdict(p), "start": round(p.start + shift, 6),
                                             "end": round(p.end + shift, 6)} for p in chunk.phoneme_timings]}
                    if first:
                        message["source"], first = text, False
                    await self.send(message, to_pcm16(chunk.audio).astype("<i2").tobytes())
                    samples += len(chunk.audio)
                    sentences = chunk.sentence + 1
            except NothingToSpeakError:
                pass  # a sentence of emoji: skipped, as in the whole text
            finally:
                job.cancel()
                self.queued_chars -= len(text)
