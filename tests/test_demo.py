"""The web demo end to end: a real server process on a tiny voice, driven by gradio_client
(concurrent users, refused requests, the queue bound) and by a real headless browser.

The server runs under tests/demo_hooks.py, which can hold a request (seed >= HOLD_FROM) in
the middle of its first sentence until the test releases it: that is how the tests make
requests overlap for sure, or keep the workers busy, without timing anything."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client
from gradio_client.exceptions import AppError
from gradio_client.utils import Status

from tts.demo.app import QUEUE_PER_WORKER
from tests.demo_hooks import HOLD_FROM

ROOT = Path(__file__).resolve().parents[1]
# gradio encodes the streamed audio with ffmpeg: every test that talks to a running demo needs it.
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                  reason="needs ffmpeg, which gradio streams audio with (apt-get install ffmpeg)")
STARTUP_TIMEOUT_S = 420  # torch + gradio imports and the numba compile, on a busy machine
CONCURRENCY = 2
WAIT_S = 120  # for what a working demo does at once; only a broken one reaches it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _demo_env() -> dict[str, str]:
    # One thread per process, so the server computes exactly what this process computes.
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
            "GRADIO_ANALYTICS_ENABLED": "False"}




@contextlib.contextmanager
def _serve(voice: Path, folder: Path, concurrency: int):
    """(URL, hold folder) of the demo serving the tiny voice, stopped on exit."""
    port = _free_port()
    log = folder / "server.log"
    hold = folder / "hold"
    hold.mkdir()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tests.demo_hooks", "--voice", str(voice), "--port",
                                 str(port), "--device", "cpu", "--concurrency", str(concurrency)],
                                cwd=ROOT, env={**_demo_env(), "DEMO_HOLD_DIR": str(hold)}, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the demo exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the demo did not answer within {STARTUP_TIMEOUT_S} s:\n{log.read_text()}")
            time.sleep(0.3)
        yield url, hold
    finally:
        for seed_file in hold.glob("held-*"):  # never leave a request waiting
            (hold / seed_file.name.replace("held-", "release-")).touch()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def served(voice, tmp_path_factory):
    """(URL, hold folder) of the demo with --concurrency CONCURRENCY, for the whole module."""
    with _serve(voice, tmp_path_factory.mktemp("demo"), CONCURRENCY) as found:
        yield found


@pytest.fixture(scope="module")
def server(served) -> str:
    return served[0]


def _client(server: str) -> Client:
    # httpx's 20 s default is too short for a server on a machine busy with training.
    return Client(server, verbose=False, download_files=False, httpx_kwargs={"timeout": WAIT_S})


def _wait_until(condition, what: str):
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def _url(output) -> str | None:
    """The URL of a file output of gradio_client (download_files=False), else None (a skip)."""
    return output.get("url") if isinstance(output, dict) else None


def _streamed_audio(playlist_url: str) -> np.ndarray:
    """What the streaming player gets: the HLS playlist's AAC segments, decoded to 16 kHz."""
    base = playlist_url.rsplit("/", 1)[0]
    lines = _fetch(playlist_url).decode().splitlines()
    assert "#EXT-X-ENDLIST" in lines, "the stream was not closed"
    aac = b"".join(_fetch(f"{base}/{line}") for line in lines if line and not line.startswith("#"))
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:", "-f", "s16le", "-ac", "1", "-ar", "16000",
                          "pipe:"], input=aac, capture_output=True, check=True).stdout
    return np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0


def _similarity(streamed: np.ndarray, audio: np.ndarray, max_delay: int = 2048) -> float:
    """Best correlation of ``audio`` with ``streamed`` delayed by 0..max_delay samples (the AAC
    encoder's priming): near 1 for the same audio through the lossy codec, near 0 for another."""
    n = len(audio)
    if len(streamed) < n:
        return 0.0
    best = 0.0
    for delay in range(min(max_delay, len(streamed) - n) + 1):
        x = streamed[delay:delay + n]
        best = max(best, float(np.dot(x, audio) / (np.linalg.norm(x) * np.linalg.norm(audio) + 1e-12)))
    return best


def _pcm16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)


@needs_ffmpeg
def test_concurrent_users_each_get_their_own_audio(served, synth):
    server, hold = served
    # Two held requests (the server runs two at once) and two that run straight through.
    requests = [("Hello there.", HOLD_FROM, 1.0), ("Hello there.", HOLD_FROM + 7, 1.0),
                ("Good morning, Sam. How are you?", 3, 1.0), ("A cat sat.", 1, 1.5)]
    held = [seed for _, seed, _ in requests if seed >= HOLD_FROM]
    jobs = [_client(server).submit(text, seed, rate, synth.vocoder.label,
                                                                       api_name="/generate")
            for text, seed, rate in requests]
    # All held requests stand in the middle of their first sentence at the same time: they
    # overlap, whatever the scheduling. Then they all go on together.
    _wait_until(lambda: all((hold / f"held-{seed}").exists() for seed in held) or any(j.done() for j in jobs[:2]),
                "the held requests to run at the same time")
    assert all((hold / f"held-{seed}").exists() for seed in held), "the requests did not overlap"
    for seed in held:
        (hold / f"release-{seed}").touch()
    for job in jobs:
        job.result()  # the end of the request: outputs() alone is the list filled so far
    results = [job.outputs() for job in jobs]

    expected = [synth.synthesize(text, seed=seed, rate=rate) for text, seed, rate in requests]
    for i, ((text, seed, rate), updates) in enumerate(zip(requests, results)):
        streamed = [_url(u[0]) for u in updates if _url(u[0])]
        assert len(streamed) >= 2, f"the audio was not streamed in several chunks: {updates}"
        assert all(url.endswith(".m3u8") for url in streamed)
        # The streamed audio (AAC, lossy) is this request's audio and nobody else's.
        heard = _streamed_audio(streamed[-1])
        similarity = [_similarity(heard, audio) for audio in expected]
        assert similarity[i] > 0.9, f"the stream of {text!r} seed {seed} is not its audio: {similarity}"
        assert max(similarity[:i] + similarity[i + 1:]) < 0.5, f"the stream of {text!r} seed {seed}: {similarity}"
        full, timing = updates[-1][1], updates[-1][4]
        assert _url(full), f"the last update is not the full audio: {updates[-1]}"
        # Same backend, seed and thread count draw the same mu-law classes, and the full
        # output is 16-bit wav: the samples must be identical, not merely close.
        audio, sample_rate = sf.read(io.BytesIO(_fetch(_url(full))), dtype="int16")
        assert sample_rate == synth.sample_rate
        np.testing.assert_array_equal(audio, _pcm16(expected[i]), err_msg=f"wrong audio for {text!r} seed {seed}")
        assert "real-time factor" in timing and "done" in timing
        pictures = [_url(u[2]) for u in updates if _url(u[2])]
        assert pictures and all(p.endswith(".png") for p in pictures)
        assert _fetch([_url(u[3]) for u in updates if _url(u[3])][-1])
    assert not np.array_equal(expected[0], expected[1]), "another seed must draw other samples"


@needs_ffmpeg
def test_a_request_past_the_queue_bound_is_refused_at_once(served, synth):
    server, hold = served
    client = _client(server)
    seeds = [HOLD_FROM + 100 + i for i in range(CONCURRENCY)]
    busy = [client.submit("Hello there.", seed, 1.0, synth.vocoder.label, api_name="/generate") for seed in seeds]
    _wait_until(lambda: all((hold / f"held-{seed}").exists() for seed in seeds) or any(j.done() for j in busy),
                "the first requests to start")
    # Every worker is busy until released: one more request than the queue holds. (From
    # another session, so that cancelling them at the end cannot touch the held requests.)
    queued = _client(server)
    waiting = [queued.submit("Hi.", seed, 1.0, synth.vocoder.label, api_name="/generate")
               for seed in range(QUEUE_PER_WORKER * CONCURRENCY + 1)]
    try:
        _wait_until(lambda: all(j.done() or j.status().code == Status.IN_QUEUE for j in waiting),
                    "every request to be queued or refused")
        refused = [j for j in waiting if j.done()]
        # Refused while the workers are still busy: the user hears at once, not after a wait.
        assert not any(j.done() for j in busy) and len(refused) == 1, f"{len(refused)} of {len(waiting)} refused"
        with pytest.raises(Exception, match="[Qq]ueue is full"):
            refused[0].result()
    finally:
        for job in waiting:
            job.cancel()
        for seed in seeds:
            (hold / f"release-{seed}").touch()
    for job in busy:
        job.result()


@needs_ffmpeg
def test_refused_requests_say_why(served, synth):
    server, hold = served
    client = _client(server)
    with pytest.raises(AppError, match="2001 characters long.*at most 2000"):
        client.predict("a" * 2001, 0, 1.0, synth.vocoder.label, api_name="/generate")
    with pytest.raises(AppError, match="nothing to speak"):
        client.predict("?! ...", 0, 1.0, synth.vocoder.label, api_name="/generate")
    with pytest.raises(AppError, match="type some text"):
        client.predict("   ", 0, 1.0, synth.vocoder.label, api_name="/generate")
    with pytest.raises(AppError, match=r"speaking rate must be from 0\.5 to 2, got 3\.0"):
        client.predict("Hi.", 0, 3.0, synth.vocoder.label, api_name="/generate")
    for seed in (-1, 2**63):
        with pytest.raises(AppError, match=f"the seed must be an integer from 0 to {2**63 - 1}, got {seed}"):
            client.predict("Hi.", seed, 1.0, synth.vocoder.label, api_name="/generate")
    # The user's mistakes are told on the page, not logged as faults in the console.
    log = (hold.parent / "server.log").read_text()
    assert "Traceback" not in log and "Error" not in log, log


@needs_ffmpeg
def test_a_script_gets_the_whole_result_from_predict(server, synth):
    """predict() answers the last update alone: it carries the full audio, the pictures, the
    timing and the words, not gradio's "no change" placeholders."""
    text = "Hello there. Nice to meet you."
    result = _client(server).predict(text, 5, 1.0, synth.vocoder.label, api_name="/generate")
    _, full, mel, alignment, timing, words = result
    audio, sample_rate = sf.read(io.BytesIO(_fetch(_url(full))), dtype="int16")
    np.testing.assert_array_equal(audio, _pcm16(synth.synthesize(text, seed=5)))
    for picture in (mel, alignment):
        assert _url(picture) and _url(picture).endswith(".png") and _fetch(_url(picture))[:4] == b"\x89PNG"
    assert "done" in timing
    assert [row[0] for row in words["data"]] == ["Hello", "there.", "Nice", "to", "meet", "you."]


@needs_ffmpeg
def test_the_heading_names_the_loaded_models(server, synth):
    from tts.demo.app import describe

    assert describe(synth) == "parallel acoustic model (predicted durations) + autoregressive WaveNet vocoder (numba kernel)"
    assert describe(synth) in _fetch(f"{server}config").decode()


def test_a_wrong_voice_folder_is_one_line_and_exit_code_2(tmp_path):
    """Bad input, as for tts-server: fixing the command line fixes it."""
    for voice, message in [(tmp_path / "nowhere", f"voice folder not found: {tmp_path / 'nowhere'}"),
                           (tmp_path, f"voice folder {tmp_path} has no config.json")]:
        result = subprocess.run([sys.executable, "-m", "tts.demo", "--voice", str(voice)], cwd=ROOT,
                                env=_demo_env(), capture_output=True, text=True, timeout=STARTUP_TIMEOUT_S,
                                check=False)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [f"demo: error: {message}"]


def _chromium() -> str | None:
    """Chromium from the PATH, else the one Playwright installed, else None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        path = p.chromium.executable_path
    return path if Path(path).is_file() else None


PLAYER_STATE = """() => {
    const a = document.querySelector('#streamed-audio audio');
    return a && {readyState: a.readyState, currentTime: a.currentTime, ended: a.ended,
                 error: a.error && (a.error.code + ': ' + a.error.message)};
}"""


@needs_ffmpeg
def test_browser_plays_the_streamed_audio(server, synth):
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    if chromium is None:
        pytest.skip("needs chromium: apt-get install chromium, or python -m playwright install chromium")
    text = "Hello there. Nice to meet you."
    seconds = len(synth.synthesize(text)) / synth.sample_rate
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                profile, executable_path=chromium, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            try:
                page = browser.pages[0] if browser.pages else browser.new_page()
                page.goto(server)
                page.get_by_label("Text").fill(text)
                page.get_by_role("button", name="Generate").click()
                # The stream plays by itself (the click allows autoplay) to its end: the
                # browser had enough data, its clock ran through the whole utterance, and no
                # media error came up on the way.
                page.wait_for_function(f"() => {{ const s = ({PLAYER_STATE})(); return s && (s.ended || s.error); }}",
                                       timeout=WAIT_S * 1000)
                state = page.evaluate(PLAYER_STATE)
                assert state["error"] is None, state
                assert state["ended"] and state["readyState"] == 4, state  # HAVE_ENOUGH_DATA
                assert state["currentTime"] >= seconds, f"played {state['currentTime']} s of {seconds} s"
                page.get_by_text(re.compile(r"^done")).wait_for(timeout=10_000)
                assert page.get_attribute("#full-audio a[download]", "href").endswith(".wav")
            finally:
                browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_a_request_shows_its_words_with_their_times(synth):
    from tts.demo.app import DemoInputError, check_pauses, speak, words_table

    updates = list(speak(synth, "<speak>Hello <break time='300ms'/> there.</speak>", 0, 1.0, ssml=None,
                         sentence_pause=0.0, paragraph_pause=0.0))
    rows = words_table(updates[-1].words)
    assert [row[0] for row in rows] == ["Hello", "there."] and rows[1][1] >= rows[0][2] + 0.3
    assert check_pauses("0.5", None) == {"sentence_pause": 0.5, "paragraph_pause": 0.0}
    for bad in (-1, 11, "soon"):
        with pytest.raises(DemoInputError, match="pause"):
            check_pauses(bad, 0)
