"""The web demo end to end: a real server process on a tiny voice, driven by gradio_client
(concurrent users, refused requests) and by a real headless browser."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.voices import make_tiny_voice
from tts import Synthesizer

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
STARTUP_TIMEOUT_S = 120  # torch + gradio imports and the numba compile, on a busy machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _demo_env() -> dict[str, str]:
    # One thread per process, so the server computes exactly what this process computes.
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
            "GRADIO_ANALYTICS_ENABLED": "False"}


@pytest.fixture(scope="module")
def voice(tmp_path_factory) -> Path:
    return make_tiny_voice(tmp_path_factory.mktemp("voice") / "tiny")


@pytest.fixture(scope="module")
def synth(voice) -> Synthesizer:
    return Synthesizer.load(voice, device="cpu")


@pytest.fixture(scope="module")
def server(voice, tmp_path_factory):
    """The URL of ``python -m demo`` serving the tiny voice; stopped after the module."""
    port = _free_port()
    log = tmp_path_factory.mktemp("demo") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "demo", "--voice", str(voice), "--port", str(port),
                                 "--device", "cpu", "--concurrency", "3"],
                                cwd=ROOT, env=_demo_env(), stdout=out, stderr=subprocess.STDOUT)
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
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _pcm16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)


def test_concurrent_users_each_get_their_own_audio(server, synth, tmp_path):
    requests = [("Hello there.", 0, 1.0), ("Hello there.", 7, 1.0), ("Good morning, Sam. How are you?", 3, 1.0),
                ("A cat sat.", 1, 1.5)]

    def user(i: int, text: str, seed: int, rate: float):
        client = Client(server, verbose=False, download_files=str(tmp_path / f"user{i}"))
        job = client.submit(text, seed, rate, synth.backend, api_name="/generate")
        job.result()  # the end of the request: outputs() alone is the list filled so far
        return job.outputs()

    with ThreadPoolExecutor(len(requests)) as pool:
        results = list(pool.map(lambda args: user(*args), [(i, *r) for i, r in enumerate(requests)]))

    audios = []
    for (text, seed, rate), updates in zip(requests, results):
        expected = _pcm16(synth.synthesize(text, seed=seed, rate=rate))
        streamed = [u[0] for u in updates if isinstance(u[0], str)]
        assert len(streamed) >= 2, f"the audio was not streamed in several chunks: {updates}"
        assert all(s.endswith(".m3u8") for s in streamed)
        full, timing = updates[-1][1], updates[-1][4]
        assert isinstance(full, str), f"the last update is not the full audio: {updates[-1]}"
        # Same backend, seed and thread count draw the same mu-law classes, and the full
        # output is 16-bit wav: the samples must be identical, not merely close.
        audio, sample_rate = sf.read(full, dtype="int16")
        assert sample_rate == synth.sample_rate
        np.testing.assert_array_equal(audio, expected, err_msg=f"wrong audio for {text!r} seed {seed}")
        audios.append(audio)
        assert "real-time factor" in timing and "done" in timing
        pictures = [u[2] for u in updates if isinstance(u[2], str)]
        assert pictures and all(Path(p).suffix == ".png" for p in pictures)
        assert Path([u[3] for u in updates if isinstance(u[3], str)][-1]).stat().st_size > 0
    assert not np.array_equal(audios[0], audios[1]), "another seed must draw other samples"


def test_refused_requests_say_why(server, synth):
    client = Client(server, verbose=False)
    with pytest.raises(AppError, match="2001 characters long.*at most 2000"):
        client.predict("a" * 2001, 0, 1.0, synth.backend, api_name="/generate")
    with pytest.raises(AppError, match="nothing to speak"):
        client.predict("?! ...", 0, 1.0, synth.backend, api_name="/generate")
    with pytest.raises(AppError, match="type some text"):
        client.predict("   ", 0, 1.0, synth.backend, api_name="/generate")
    with pytest.raises(AppError, match=r"greater than maximum value 2\.0"):  # the slider checks it
        client.predict("Hi.", 0, 3.0, synth.backend, api_name="/generate")


def test_missing_voice_is_one_line_and_exit_code_1(tmp_path):
    result = subprocess.run([sys.executable, "-m", "demo", "--voice", str(tmp_path / "nowhere")], cwd=ROOT,
                            env=_demo_env(), capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: voice folder not found: {tmp_path / 'nowhere'}"]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                   "(apt-get install chromium)")
def test_browser_plays_the_streamed_audio(server):
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            try:
                page = browser.pages[0] if browser.pages else browser.new_page()
                page.goto(server)
                page.get_by_label("Text").fill("Hello there. Nice to meet you.")
                page.get_by_role("button", name="Generate").click()
                # The stream starts playing while generation runs; the lossless copy follows.
                for player in ("#streamed-audio audio[src]", "#full-audio audio[src]"):
                    page.wait_for_selector(player, state="attached", timeout=60_000)
                    assert page.get_attribute(player, "src")
                page.get_by_text(re.compile(r"^done")).wait_for(timeout=10_000)
            finally:
                browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
