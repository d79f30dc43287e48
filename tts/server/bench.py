"""Benchmark a speech server: time to first byte and real-time factor for 1, 2, 4, 8 concurrent
streams, and how many real-time streams it holds.

    python -m tts.server.bench --url http://127.0.0.1:8000          # a running server
    python -m tts.server.bench --voice DIR                          # start one on a free port

Each stream POSTs the same text (PCM) and reads the body as it comes. A stream "holds real
time" if a player starting at its first byte would never run dry: every chunk arrives before
the audio before it has played (with a 100 ms playback buffer). A stream the server refuses
(503: it already runs all the streams it keeps in real time) is counted with the time the
answer took, and the rest are judged as admitted. Also measured: over the WebSocket, the time
from the moment the first sentence is complete (its final mark and the next word sent) to its
first audio.
"""

from __future__ import annotations

import http.client
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from tts.command import EXIT_OK, OneLineParser, UsageError, run_command

TEXT = ("The quick brown fox jumps over the lazy dog. A voice assistant reads the weather: light rain "
        "in the morning, clearing by noon, with a high of nineteen degrees. Then it reads the news.")
SAMPLE_RATE = 16000
SLACK_S = 0.1  # a player's buffer: chunks this late still play without a gap


@dataclass
class Stream:
    ttfb: float  # request sent -> first body byte, seconds
    wall: float  # request sent -> last byte
    audio: float  # seconds of audio received
    lag: float  # worst lateness of a chunk against playback started at the first byte
    refused: float | None = None  # seconds to a 503 (the stream was refused), else None

    @property
    def rtf(self) -> float:
        return self.wall / self.audio if self.audio else float("inf")


def _stream(url: str, text: str, voice: str | None, key: str | None) -> Stream:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=600)
    body = {"model": "tts-1", "input": text, "response_format": "pcm"} | ({"voice": voice} if voice else {})
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    start = time.perf_counter()
    conn.request("POST", "/v1/audio/speech", json.dumps(body), headers)
    response = conn.getresponse()
    if response.status == 503:  # the server runs all it keeps in real time: refused at once
        response.read()
        conn.close()
        return Stream(0.0, 0.0, 0.0, float("-inf"), refused=time.perf_counter() - start)
    if response.status != 200:
        raise RuntimeError(f"the server answered {response.status}: {response.read()[:200]!r}")
    first = None
    received = 0  # bytes
    lag = float("-inf")
    while chunk := response.read1(65536):
        now = time.perf_counter()
        if first is None:
            first = now
        lag = max(lag, now - (first + received / 2 / SAMPLE_RATE))
        received += len(chunk)
    conn.close()
    end = time.perf_counter()
    return Stream(first - start, end - start, received / 2 / SAMPLE_RATE, lag)


def run_level(url: str, n: int, text: str, voice: str | None, key: str | None) -> list[Stream]:
    results: list = [None] * n
    errors: list[Exception] = []

    def one(i: int) -> None:
        try:
            results[i] = _stream(url, text, voice, key)
        except Exception as e:  # reported below, after every stream ended
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(str(errors[0]))
    return results


def websocket_first_audio(url: str, text: str, voice: str | None, key: str | None) -> float:
    """Seconds from the first sentence being complete to its first audio."""
    from websockets.sync.client import connect

    first_end = re.search(r"[.?!]\s+\S+\s+\S", text)
    if first_end is None:
        raise ValueError("the benchmark text needs two sentences")
    ws_url = url.replace("http://", "ws://", 1) + "/v1/audio/speech/stream"
    headers = {"Authorization": f"Bearer {key}"} if key else None
    with connect(ws_url, additional_headers=headers, open_timeout=60) as ws:
        json.loads(ws.recv(timeout=60))  # ready
        if voice:
            ws.send(json.dumps({"type": "config", "voice": voice}))
        words = re.findall(r"\S+\s*", text[: first_end.end()])
        for word in words[:-1]:
            ws.send(json.dumps({"type": "text", "text": word}))
        start = time.perf_counter()
        ws.send(json.dumps({"type": "text", "text": words[-1]}))  # the sentence can now be cut
        while True:
            message = json.loads(ws.recv(timeout=600))
            if message["type"] == "audio":
                elapsed = time.perf_counter() - start
                break
            if message["type"] == "error":
                raise RuntimeError(message["error"]["message"])
        ws.send(json.dumps({"type": "flush"}))
        while not (isinstance(m := ws.recv(timeout=600), str) and json.loads(m)["type"] == "done"):
            pass
    return elapsed


def _start_server(voice: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tts.server", "--voice", voice, "--port", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if m := re.search(r"on (http://\S+)", line):
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining its output
            return proc, m.group(1)
        print(line, end="", file=sys.stderr)
    raise RuntimeError(f"the server exited with {proc.wait()} before serving")


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m tts.server.bench", description=__doc__.splitlines()[0])
    where = p.add_mutually_exclusive_group()
    where.add_argument("--url", default="http://127.0.0.1:8000", help="a running server (default %(default)s)")
    where.add_argument("--voice", help="start a server on this voice folder instead")
    p.add_argument("--server-args", default="", help="more options for the started server, e.g. '--workers 8'")
    p.add_argument("--voice-name", help="the voice to ask for (default: the server's default)")
    p.add_argument("--api-key", help="the server's API key")
    p.add_argument("--streams", default="1,2,4,8", help="concurrent stream counts (default %(default)s)")
    p.add_argument("--text", default=TEXT, help="the text every stream speaks")
    return run_command("server-bench", lambda: _run(p.parse_args(argv)), failure=(OSError, RuntimeError, ValueError))


def _run(args) -> int:
    try:
        levels = [int(n) for n in args.streams.split(",")]
        if not levels or min(levels) < 1:
            raise ValueError
    except ValueError:
        raise UsageError(f"--streams must be positive whole numbers, got {args.streams!r}") from None
    proc = None
    try:
        url = args.url
        if args.voice:
            proc, url = _start_server(args.voice, args.server_args.split())
        run_level(url, 1, "Warm up.", args.voice_name, args.api_key)
        print(f"{len(args.text)} characters per stream, PCM, against {url}\n")
        print(f"{'streams':>7}  {'refused (503)':>13}  {'TTFB median':>11}  {'TTFB max':>9}  {'RTF mean':>8}  "
              f"{'RTF max':>7}  {'worst lag':>9}  admitted in real time")
        held = 0
        for n in levels:
            results = run_level(url, n, args.text, args.voice_name, args.api_key)
            streams = [s for s in results if s.refused is None]
            refused = [s.refused for s in results if s.refused is not None]
            said = f"{len(refused)}, in {max(refused) * 1000:.0f} ms" if refused else "0"
            if not streams:
                print(f"{n:>7}  {said:>13}  (every stream refused)")
                continue
            ttfb = [s.ttfb for s in streams]
            rtf = [s.rtf for s in streams]
            lag = max(s.lag for s in streams)
            on_time = lag <= SLACK_S
            if on_time:
                held = max(held, len(streams))
            print(f"{n:>7}  {said:>13}  {statistics.median(ttfb) * 1000:>8.0f} ms  {max(ttfb) * 1000:>6.0f} ms  "
                  f"{statistics.fmean(rtf):>8.2f}  {max(rtf):>7.2f}  {lag * 1000:>6.0f} ms  "
                  f"{'yes' if on_time else 'no'}")
        print(f"\nconcurrent real-time streams held: {held}" + ("" if held else " (none of the levels tried)"))
        ws = websocket_first_audio(url, args.text, args.voice_name, args.api_key)
        print(f"WebSocket: first audio {ws * 1000:.0f} ms after the first sentence was complete")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
