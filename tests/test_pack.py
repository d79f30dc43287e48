"""The feature pack (train/pack.py): build and unpack round trip on a tiny synthetic corpus,
the size limit, one-line errors, and training that starts on an unpacked folder at once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from test_parallel_model import PARALLEL
from test_trainer import COMMON, VOCODER

import tts.train.data as train_data
from tts.train.__main__ import main as train_main
from tts.train.data import FeatureCache, read_metadata
from tts.train.pack import MB, main
from tts.audio import DEFAULT_AUDIO, mu_law_encode

REPO = Path(__file__).resolve().parents[1]
WORDS = ["Cat.", "Dog.", "Pin.", "Sun.", "Map.", "Bed."]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Six 0.3 s modulated tones of different loudness with one-word texts; no feature cache
    yet (building the pack builds it)."""
    root = tmp_path_factory.mktemp("source")
    (root / "wavs").mkdir()
    sr = DEFAULT_AUDIO.sample_rate
    t = np.arange(int(0.3 * sr)) / sr
    for i in range(len(WORDS)):
        x = 0.5 * np.sin(2 * np.pi * (150 + 40 * i) * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
        sf.write(root / "wavs" / f"LJ{i:03d}.wav", x.astype(np.float32), sr)
    (root / "metadata.csv").write_text("".join(f"LJ{i:03d}|{w}|{w.lower()}\n" for i, w in enumerate(WORDS)))
    return root


def build(source, out, *args) -> int:
    # Untrimmed, as the trainer tests' settings (COMMON) read it: steady tones have nothing to trim.
    return main(["build", "--data", str(source), "--out", str(out), "--trim-db", "none", *args])


@pytest.fixture(scope="module")
def pack(source, tmp_path_factory):
    path = tmp_path_factory.mktemp("pack") / "corpus.npz"
    assert build(source, path) == 0
    return path


@pytest.fixture(scope="module")
def unpacked(pack, tmp_path_factory):
    folder = tmp_path_factory.mktemp("unpacked") / "corpus"
    assert main(["unpack", str(pack), "--to", str(folder)]) == 0
    return folder


def test_round_trip(source, unpacked):
    assert [(c.id, c.text, c.normalized) for c in read_metadata(unpacked)] == \
        [(c.id, c.text, c.normalized) for c in read_metadata(source)]
    original, copy = FeatureCache(source, trim_db=None), FeatureCache(unpacked, trim_db=None)
    assert copy.built and len(copy) == len(original) == len(WORDS)
    assert copy.entries == original.entries
    for i in range(len(copy)):
        a, b = original[i], copy[i]
        assert b["ids"].dtype == np.int16 and b["mel"].dtype == b["wave"].dtype == np.float32
        np.testing.assert_array_equal(b["ids"], a["ids"])
        np.testing.assert_allclose(b["wave"], a["wave"], atol=1 / 32768 + 1e-6)  # 16-bit, losslessly packed
        # Made again from that audio: 16-bit rounding shows only in bins near the floor (-100 dB).
        np.testing.assert_allclose(b["mel"], a["mel"], atol=5e-3)
        audio, sr = sf.read(unpacked / "wavs" / f"{copy.entries[i]['id']}.wav", dtype="float32")
        assert sr == DEFAULT_AUDIO.sample_rate
        np.testing.assert_allclose(audio, b["wave"], atol=1e-4)  # 16-bit PCM


def test_a_version_1_pack_still_unpacks(pack, unpacked, tmp_path):
    """Version 1 carried 8-bit mu-law audio and float16 mels."""
    cache = FeatureCache(unpacked, trim_db=None)
    clips = [cache[i] for i in range(len(cache))]
    with np.load(pack) as f:
        meta = json.loads(f["meta"].tobytes())
        old = {"n_ids": f["n_ids"], "ids": f["ids"], "frames": f["frames"]}
    old["meta"] = np.frombuffer(json.dumps({**meta, "version": 1}).encode(), dtype=np.uint8)
    old["mel"] = np.concatenate([c["mel"] for c in clips]).astype(np.float16)
    old["wave"] = np.concatenate([mu_law_encode(c["wave"]) for c in clips]).astype(np.uint8)
    np.savez_compressed(tmp_path / "v1.npz", **old)
    assert main(["unpack", str(tmp_path / "v1.npz"), "--to", str(tmp_path / "corpus")]) == 0
    copy = FeatureCache(tmp_path / "corpus", trim_db=None)
    for i, clip in enumerate(clips):
        np.testing.assert_allclose(copy[i]["mel"], clip["mel"], atol=2.5e-4)  # float16's half step below 1
        np.testing.assert_allclose(copy[i]["wave"], clip["wave"], atol=0.022)  # within half a mu-law class


def test_summary_line(source, tmp_path, capsys):
    assert build(source, tmp_path / "p.npz") == 0
    out = capsys.readouterr().out.strip()
    size = (tmp_path / "p.npz").stat().st_size / MB
    assert out.count("\n") == 0 and out.startswith(f"packed {len(WORDS)} of {len(WORDS)} clips, 0.00 h")
    assert f"{size:.1f} MB" in out
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]  # no temporary file left


def test_max_mb_keeps_a_prefix(source, pack, tmp_path):
    limit = 0.6 * pack.stat().st_size / MB
    small = tmp_path / "small.npz"
    assert build(source, small, "--max-mb", str(limit)) == 0
    assert small.stat().st_size <= limit * MB
    assert main(["unpack", str(small), "--to", str(tmp_path / "corpus")]) == 0
    ids = [c.id for c in read_metadata(tmp_path / "corpus")]
    assert 0 < len(ids) < len(WORDS)
    assert ids == [c.id for c in read_metadata(source)][:len(ids)]
    assert FeatureCache(tmp_path / "corpus", trim_db=None).built


def forged(pack: Path, out: Path, **changes) -> Path:
    """A copy of ``pack`` with some of its meta fields replaced."""
    with np.load(pack) as f:
        arrays = {k: f[k] for k in f.files}
    meta = {**json.loads(arrays["meta"].tobytes()), **changes}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez_compressed(out, **arrays)
    return out


def one_error_line(capsys, *words) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pack: error: ") and "Traceback" not in err, err
    for w in words:
        assert w in err, err


@pytest.mark.parametrize("change, words", [
    ({"symbols": ["<pad>", "<eos>", "A"]}, ["symbol table"]),
    ({"audio": {**DEFAULT_AUDIO.to_dict(), "n_mels": 64}}, ["audio config"]),
    ({"version": 99}, ["version 99"]),
])
def test_unpack_refuses_another_engines_pack(pack, tmp_path, capsys, change, words):
    other = forged(pack, tmp_path / "other.npz", **change)
    assert main(["unpack", str(other), "--to", str(tmp_path / "corpus")]) == 2
    one_error_line(capsys, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.npz"]  # nothing half-written


def test_errors(source, pack, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "notes.txt").write_text("not a pack\n")
    np.save(tmp_path / "array.npy", np.zeros(3))
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    cases = [
        (["build", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "p.npz")], "not found"),
        (["build", "--data", str(empty), "--out", str(tmp_path / "p.npz")], "no metadata.csv"),
        (["build", "--data", str(source), "--out", str(tmp_path / "p.npz"), "--trim-db", "none",
          "--max-mb", "0.001"], "too small"),
        (["build", "--data", str(source), "--out", str(tmp_path / "nowhere" / "p.npz")], "does not exist"),
        (["build", "--data", str(source)], "--out"),
        (["build", "--data", str(source), "--out", str(tmp_path / "p.npz"), "--max-mb", "lots"], "--max-mb"),
        (["build", "--data", str(source), "--out", str(tmp_path / "p.npz"), "--trim-db", "loud"], "decibels"),
        (["unpack", str(tmp_path / "missing.npz"), "--to", str(tmp_path / "c")], "not found"),
        (["unpack", str(tmp_path / "notes.txt"), "--to", str(tmp_path / "c")], "not a feature pack"),
        (["unpack", str(tmp_path / "array.npy"), "--to", str(tmp_path / "c")], "not a feature pack"),
        (["unpack", str(tmp_path / "other.npz"), "--to", str(tmp_path / "c")], "not a feature pack"),
        (["unpack", str(pack), "--to", str(full)], "not empty"),
        ([], "build or unpack"),
        (["pack"], "build or unpack"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv, words in cases:
        assert main(argv) == 2, argv
        one_error_line(capsys, words)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert [p.name for p in full.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("task, settings", [("parallel", PARALLEL), ("vocoder", VOCODER)])
def test_training_starts_on_an_unpacked_folder(unpacked, tmp_path, monkeypatch, capsys, task, settings):
    def no_features(*args, **kwargs):
        raise AssertionError("features computed again")

    monkeypatch.setattr(train_data, "compute_features", no_features)
    files = sorted((unpacked / ".cache").rglob("*"))
    mtimes = [p.stat().st_mtime_ns for p in files]
    assert train_main([task, "--data", str(unpacked), "--out", str(tmp_path / "run"),
                       "--set", *COMMON, *settings, "max_steps=2"]) == 0
    assert "step 2" in capsys.readouterr().out
    assert sorted((unpacked / ".cache").rglob("*")) == files
    assert [p.stat().st_mtime_ns for p in files] == mtimes


def test_gpu_session_trains_from_a_pack_and_brings_back_four_files(pack, tmp_path):
    """The GPU session's exact script on this machine: unpack, continue the bundled voice's
    WaveNet (three steps: a step count, not the clock, ends it here, so that a slow start
    cannot leave it without a checkpoint), export, report."""
    out = tmp_path / "out"
    run = subprocess.run(["bash", str(REPO / "train" / "gpu_session.sh"), str(pack), "5", str(out), "vocoder",
                          "--preset", "gpu", "--set", *COMMON, "segment_frames=4", "batch_size=2", "num_workers=0",
                          "max_steps=3"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "PYTHON": sys.executable})
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(p.name for p in (out / "voice").iterdir()) == ["config.json", "log.jsonl", "throughput.txt",
                                                                 "vocoder.safetensors"]
    report = (out / "voice" / "throughput.txt").read_text()
    assert "samples/s" in report and "FLOP/s" in report
