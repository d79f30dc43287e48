"""The synthesize command end to end, in a subprocess, on a tiny random-weight voice."""

import os
import select
import signal
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


@pytest.fixture(scope="module")
def gl_voice(voice, tmp_path_factory):
    """The tiny voice, naming Griffin-Lim its default vocoder (as the bundled voice may)."""
    import json
    import shutil

    copy = tmp_path_factory.mktemp("gl") / "tiny-gl"
    shutil.copytree(voice, copy)
    config = json.loads((copy / "config.json").read_text())
    config["default_vocoder"] = "griffin-lim"
    (copy / "config.json").write_text(json.dumps(config))
    return copy


ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}
# The CLI with a gate in front of its vocoder: before the vocoder's second chunk it says
# "gate" on stderr and waits for a line on stdin: "go" lets it run on, "fail" makes the
# vocoder raise. Nothing else is changed.
GATED_CLI = """
import os, signal, sys
from tts import kernels

# Ctrl-C as in a terminal, even when the test runs as a background job (which starts its
# children with SIGINT ignored, and Python then installs no KeyboardInterrupt handler).
signal.signal(signal.SIGINT, signal.default_int_handler)
from tts import cli

open_kernel = kernels.open_kernel

def gated_open_kernel(*args, **kwargs):
    kernel = open_kernel(*args, **kwargs)
    generate, calls = kernel.generate, [0]

    def gated_generate(*a, **k):
        calls[0] += 1
        if calls[0] == 2:
            sys.stderr.write("gate\\n")
            sys.stderr.flush()
            if os.read(0, 100).strip() == b"fail":
                raise RuntimeError("the vocoder failed")
        return generate(*a, **k)

    kernel.generate = gated_generate
    return kernel

kernels.open_kernel = gated_open_kernel
sys.exit(cli.main())
"""


def synthesize(*args, stdin=None, input=None):
    env = ENV
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


def start_gated(tmp_path, *args) -> subprocess.Popen:
    script = tmp_path / "gated_cli.py"
    script.write_text(GATED_CLI)
    # Python's own buffering as a user gets it: the CLI must flush, not the environment.
    env = {k: v for k, v in ENV.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def wait_for_gate(proc: subprocess.Popen) -> None:
    """Until the CLI waits in front of the vocoder's second chunk (or fail if it ended)."""
    lines = []
    while (line := proc.stderr.readline()) != b"gate\n":
        if not line:
            proc.wait()
            pytest.fail(f"the CLI exited with {proc.returncode} before its second chunk: {b''.join(lines)!r}")
        lines.append(line)


def test_raw_pcm_arrives_before_the_sentence_is_done(voice, tmp_path):
    proc = start_gated(tmp_path, "Hello, world.", "--raw", "--voice", voice, "--vocoder", "numba")
    try:
        wait_for_gate(proc)
        # The vocoder has made one chunk and waits before the next: its 100 ms must already
        # be in the pipe, not in a buffer of the CLI.
        first = b""
        fd = proc.stdout.fileno()
        while select.select([fd], [], [], 0)[0] and (data := os.read(fd, 1 << 16)):
            first += data
        assert len(first) == 2 * 1600, f"{len(first)} bytes had arrived when the second chunk was started"
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        rest, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err.decode()
    pcm = np.frombuffer(first + rest, dtype="<i2")
    assert len(pcm) == expected_samples("Hello, world.")
    wav = tmp_path / "x.wav"
    assert synthesize("Hello, world.", "-o", wav, "--voice", voice, "--vocoder", "numba").returncode == 0
    np.testing.assert_array_equal(pcm, sf.read(wav, dtype="int16")[0])


@pytest.mark.parametrize("how", ["vocoder error", "SIGINT", "SIGTERM", "SIGHUP"])
def test_a_stream_stopped_midway_leaves_no_file(voice, tmp_path, how):
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "speech.wav"
    proc = start_gated(tmp_path, "Hello, world. Goodbye.", "-o", out, "--voice", voice)
    try:
        wait_for_gate(proc)
        # Midway: the first chunk is in the temporary file beside the target.
        assert [p.name for p in folder.iterdir() if p.name.endswith(".part")] and not out.exists()
        if how.startswith("SIG"):
            proc.send_signal(getattr(signal, how))
        else:
            proc.stdin.write(b"fail\n")
            proc.stdin.flush()
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    err = err.decode()
    if how == "SIGINT":
        assert proc.returncode == 130 and err.strip().splitlines()[-1] == "synthesize: interrupted", err
    elif how.startswith("SIG"):
        signum = getattr(signal, how)
        assert proc.returncode == 128 + signum and err.strip().splitlines()[-1] == f"synthesize: stopped by {how}", err
    else:
        assert proc.returncode != 0 and "the vocoder failed" in err, err
    assert list(folder.iterdir()) == [], "a partial or temporary file was left"


def test_list_backends():
    from tts.kernels import BACKENDS, backend_status

    r = synthesize("--list-backends")
    assert r.returncode == 0
    lines = r.stdout.decode().splitlines()
    assert [line.split()[:3] for line in lines[:3]] == [["wavenet", "--backend", name] for name in BACKENDS]
    assert lines[3].split()[0] == "griffin-lim" and len(lines) == 4
    for name, line in zip(BACKENDS, lines):
        ok, why = backend_status(name)
        status = line.split(maxsplit=3)[3]
        assert status == ("available" if ok else f"unavailable: {why}"), line
    # The reference always runs; numba is a dependency of the package; Griffin-Lim needs no kernel.
    assert lines[0].split()[3:] == ["available"] and lines[1].split()[3:] == ["available"]
    assert lines[3].split()[1] == "available"


@pytest.mark.parametrize("case,code,message", [
    ("no text", 2, "nothing to speak"),
    ("nothing speakable", 2, "nothing to speak"),
    ("unreadable text file", 2, "cannot read text file"),
    ("missing output folder", 2, "output folder does not exist"),
    ("bad extension", 2, ".wav or .flac"),
    ("unknown vocoder", 2, "unknown vocoder 'tpu'; choose from auto, wavenet, griffin-lim"),
    ("unknown backend", 2, "invalid choice"),
    ("backend of griffin-lim", 2, "runs the WaveNet, not griffin-lim"),
    ("bf16 on torch", 2, "only numba"),
    ("bad rate", 2, "--rate: speaking rate must be from 0.5 to 2, got 9.0"),
    ("cuda absent", 1, "no CUDA GPU"),
    ("voice folder without a voice", 2, "has no config.json"),
    ("broken voice", 1, "config.json is not valid JSON"),
    ("missing voice", 2, "voice folder not found"),
    ("negative seed", 2, "--seed: seed must be an integer from 0"),
    ("output is a folder", 2, "is a folder"),
    ("unwritable folder", 2, "cannot write"),
    ("random bytes", 2, "the text is mostly not speakable"),
    ("unknown device", 1, "unknown device 'tpu'"),
])
def test_bad_input_one_line_and_exit_code(voice, tmp_path, case, code, message):
    out = tmp_path / "out.wav"
    broken = tmp_path / "broken"
    broken.mkdir()
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text("{not json", encoding="utf-8")
    args = {
        "no text": ["-o", out, "--voice", voice],
        "nothing speakable": ["!!! ...", "-o", out, "--voice", voice],
        "unreadable text file": ["--text-file", tmp_path / "missing.txt", "-o", out, "--voice", voice],
        "missing output folder": ["Hello.", "-o", tmp_path / "no" / "out.wav", "--voice", voice],
        "bad extension": ["Hello.", "-o", tmp_path / "out.mp3", "--voice", voice],
        "unknown vocoder": ["Hello.", "-o", out, "--voice", voice, "--vocoder", "tpu"],
        "unknown backend": ["Hello.", "-o", out, "--voice", voice, "--backend", "tpu"],
        "backend of griffin-lim": ["Hello.", "-o", out, "--voice", voice, "--vocoder", "griffin-lim",
                                   "--backend", "numba"],
        "bf16 on torch": ["Hello.", "-o", out, "--voice", voice, "--vocoder", "torch", "--weights", "bf16"],
        "bad rate": ["Hello.", "-o", out, "--voice", voice, "--rate", "9"],
        "cuda absent": ["Hello.", "-o", out, "--voice", voice, "--device", "cuda"],
        "voice folder without a voice": ["Hello.", "-o", out, "--voice", broken],
        "broken voice": ["Hello.", "-o", out, "--voice", damaged],
        "missing voice": ["Hello.", "-o", out, "--voice", tmp_path / "nowhere"],
        "negative seed": ["Hello.", "-o", out, "--voice", voice, "--seed", "-1"],
        "output is a folder": ["Hello.", "-o", tmp_path / "folder.wav", "--voice", voice],
        "unwritable folder": ["Hello.", "-o", "/proc/out.wav", "--voice", voice],
        "random bytes": ["-o", out, "--voice", voice],
        "unknown device": ["Hello.", "-o", out, "--voice", voice, "--device", "tpu"],
    }[case]
    if case == "cuda absent" and __import__("torch").cuda.is_available():
        pytest.skip("a GPU is present")
    (tmp_path / "folder.wav").mkdir()
    if case == "unwritable folder" and not os.path.isdir("/proc"):
        pytest.skip("no /proc here")
    if case == "random bytes":
        r = synthesize(*args, input=np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    else:
        r = synthesize(*args, stdin=subprocess.DEVNULL)
    err = r.stderr.decode().strip()
    assert r.returncode == code, err
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob("*.part"))


def test_loud_speech_never_reaches_full_scale_in_a_file_or_on_standard_output(voice, tmp_path):
    # The tiny voice's random weights put many samples at full scale before the limiter.
    out = tmp_path / "out.wav"
    r = synthesize("Hello there, how are you today?", "-o", out, "--voice", voice, "--seed", "3")
    assert r.returncode == 0, r.stderr.decode()
    written, _ = sf.read(out, dtype="int16")
    raw = synthesize("Hello there, how are you today?", "--raw", "--voice", voice, "--seed", "3")
    streamed = np.frombuffer(raw.stdout, dtype="<i2")
    assert np.array_equal(written, streamed)
    assert 0 < np.abs(written.astype(np.int32)).max() < 32767


XML_BOMB = """<?xml version="1.0"?>
<!DOCTYPE speak [
 <!ENTITY a "doctype speak entity">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
]>
<speak>&c;</speak>
"""
XXE = '<!DOCTYPE speak [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n<speak>&xxe;</speak>\n'


@pytest.mark.parametrize("case, message", [
    ("bomb.xml", ": a document type declaration (<!DOCTYPE>) is not allowed"),
    ("xxe.xml", ": a document type declaration (<!DOCTYPE>) is not allowed"),
    ("page.html", "SSML line 1, column 1: the root element must be <speak>, not <html>"),
    ("--ssml plain text", "synthesize: error: the text is not SSML: it has no <speak> root element"),
])
def test_markup_is_never_read_aloud(voice, tmp_path, case, message):
    out = tmp_path / "out.wav"
    files = {"bomb.xml": XML_BOMB, "xxe.xml": XXE, "page.html": "<html><body>Hi</body></html>\n"}
    if case in files:
        (tmp_path / case).write_text(files[case], encoding="utf-8")
        r = synthesize("--text-file", tmp_path / case, "-o", out, "--voice", voice)
    else:
        r = synthesize("--ssml", "Just plain text.", "-o", out, "--voice", voice)
    err = r.stderr.decode().strip()
    assert r.returncode == 2 and len(err.splitlines()) == 1 and err.endswith(message), err
    assert not out.exists() and not list(tmp_path.glob("*.part"))


def test_text_with_some_unspeakable_characters_speaks_with_one_warning(voice, tmp_path):
    out = tmp_path / "out.wav"
    r = synthesize("Hello \U0001F600 world.", "-o", out, "--voice", voice)
    err = r.stderr.decode().strip()
    assert r.returncode == 0 and out.exists(), err
    assert err.splitlines() == ["synthesize: warning: skipping 1 character(s) with no English reading: "
                                "'\U0001F600' (U+1F600)"]


def test_help_and_usage_errors_answer_without_importing_torch(tmp_path):
    script = ("import sys\nfrom tts import cli\n"
              "code = cli.main(sys.argv[1:])\n"
              "assert 'torch' not in sys.modules, 'torch was imported'\n"
              "sys.exit(code)\n")
    for args, code in ((["--help"], 0), (["Hello.", "--seed", "-1"], 2), (["Hello.", "--rate", "9"], 2),
                       (["Hello.", "-o", str(tmp_path / "no" / "x.wav")], 2)):
        r = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, timeout=60, env=ENV)
        assert r.returncode == code, r.stderr.decode()


def test_a_kernel_or_weight_format_asked_for_means_the_wavenet(gl_voice):
    """A voice that speaks through Griffin-Lim by default still speaks through its WaveNet
    when the user names a backend or bf16 weights: both apply to the WaveNet alone."""
    from tts import Synthesizer

    assert Synthesizer.load(gl_voice, device="cpu").vocoder.label == "griffin-lim"
    assert Synthesizer.load(gl_voice, device="cpu", weights="bf16").vocoder.label == "wavenet (numba)"
    assert Synthesizer.load(gl_voice, device="cpu", backend="torch").vocoder.label == "wavenet (torch)"
