"""The synthesize command end to end, in a subprocess, on a tiny random-weight voice."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tests.voices import TINY_SAMPLES_PER_SYMBOL, make_tiny_voice
from tts.text import to_phonemes


@pytest.fixture(scope="module")
def voice(tmp_path_factory):
    return make_tiny_voice(tmp_path_factory.mktemp("voice") / "tiny")


def synthesize(*args, stdin=None, input=None):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "tts", *map(str, args)], input=input,
                          stdin=stdin if input is None else None, capture_output=True, timeout=120, env=env)


def expected_samples(text):
    return (len(to_phonemes(text)) + 1) * TINY_SAMPLES_PER_SYMBOL  # +1: EOS


def test_writes_wav_and_flac(voice, tmp_path):
    out = tmp_path / "hello.wav"
    r = synthesize("Hello, world.", "-o", out, "--voice", voice, "--vocoder", "numba")
    assert r.returncode == 0, r.stderr.decode()
    audio, sr = sf.read(out)
    assert sr == 16000 and len(audio) == expected_samples("Hello, world.")
    assert np.abs(audio).max() > 0
    flac = tmp_path / "hello.flac"
    assert synthesize("Hello, world.", "-o", flac, "--voice", voice).returncode == 0
    np.testing.assert_array_equal(sf.read(flac)[0], audio)  # same seed, lossless
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hello.flac", "hello.wav"]


def test_text_sources_seed_and_rate(voice, tmp_path):
    text_file = tmp_path / "t.txt"
    text_file.write_text("Hi there.", encoding="utf-8")
    a, b, c, d = (tmp_path / f"{n}.wav" for n in "abcd")
    assert synthesize("--text-file", text_file, "-o", a, "--voice", voice).returncode == 0
    assert synthesize("-o", b, "--voice", voice, input=b"Hi there.").returncode == 0
    assert synthesize("Hi there.", "-o", c, "--voice", voice, "--seed", "7").returncode == 0
    assert synthesize("Hi there.", "-o", d, "--voice", voice, "--rate", "2").returncode == 0
    xa, xb, xc, xd = (sf.read(p)[0] for p in (a, b, c, d))
    np.testing.assert_array_equal(xa, xb)
    assert len(xc) == len(xa) and not np.array_equal(xa, xc)
    assert abs(len(xd) - len(xa) / 2) <= 400  # twice as fast: half the frames


def test_raw_streams_pcm_to_stdout(voice, tmp_path):
    r = synthesize("Hello, world.", "--raw", "--voice", voice)
    assert r.returncode == 0, r.stderr.decode()
    pcm = np.frombuffer(r.stdout, dtype="<i2")
    assert len(pcm) == expected_samples("Hello, world.")
    wav = tmp_path / "x.wav"
    synthesize("Hello, world.", "-o", wav, "--voice", voice)
    np.testing.assert_array_equal(pcm, sf.read(wav, dtype="int16")[0])


def test_list_backends():
    r = synthesize("--list-backends")
    assert r.returncode == 0
    lines = r.stdout.decode().splitlines()
    assert [l.split()[0] for l in lines] == ["torch", "numba", "cuda", "griffin-lim"]
    assert "available" in lines[1]


@pytest.mark.parametrize("case,code,message", [
    ("no text", 2, "nothing to speak"),
    ("nothing speakable", 2, "nothing to speak"),
    ("unreadable text file", 2, "cannot read text file"),
    ("missing output folder", 2, "output folder does not exist"),
    ("bad extension", 2, ".wav or .flac"),
    ("unknown backend", 2, "invalid choice"),
    ("bf16 on torch", 1, "only numba"),
    ("bad rate", 2, "outside"),
    ("cuda absent", 1, "no CUDA GPU"),
    ("broken voice", 1, "config.json"),
    ("missing voice", 1, "not found"),
])
def test_bad_input_one_line_and_exit_code(voice, tmp_path, case, code, message):
    out = tmp_path / "out.wav"
    broken = tmp_path / "broken"
    broken.mkdir()
    args = {
        "no text": ["-o", out, "--voice", voice],
        "nothing speakable": ["!!! ...", "-o", out, "--voice", voice],
        "unreadable text file": ["--text-file", tmp_path / "missing.txt", "-o", out, "--voice", voice],
        "missing output folder": ["Hello.", "-o", tmp_path / "no" / "out.wav", "--voice", voice],
        "bad extension": ["Hello.", "-o", tmp_path / "out.mp3", "--voice", voice],
        "unknown backend": ["Hello.", "-o", out, "--voice", voice, "--vocoder", "tpu"],
        "bf16 on torch": ["Hello.", "-o", out, "--voice", voice, "--vocoder", "torch", "--weights", "bf16"],
        "bad rate": ["Hello.", "-o", out, "--voice", voice, "--rate", "9"],
        "cuda absent": ["Hello.", "-o", out, "--voice", voice, "--device", "cuda"],
        "broken voice": ["Hello.", "-o", out, "--voice", broken],
        "missing voice": ["Hello.", "-o", out, "--voice", tmp_path / "nowhere"],
    }[case]
    if case == "cuda absent" and __import__("torch").cuda.is_available():
        pytest.skip("a GPU is present")
    r = synthesize(*args, stdin=subprocess.DEVNULL)
    err = r.stderr.decode().strip()
    assert r.returncode == code, err
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob("*.part"))
