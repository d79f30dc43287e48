import shutil

import pytest
import soundfile as sf

from train.corpus import CorpusError, build, main, read_texts
from train.data import FeatureCache, read_metadata

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def test_read_texts_both_layouts(tmp_path):
    lj = tmp_path / "meta.csv"
    lj.write_text("LJ001|Hello there.|Hello there.\nLJ002|It costs $5.|It costs five dollars.\n", encoding="utf-8")
    assert read_texts(lj) == [("LJ001", "Hello there."), ("LJ002", "It costs $5.")]
    plain = tmp_path / "plain.txt"
    plain.write_text("One.\n\nTwo.\n", encoding="utf-8")
    assert read_texts(plain) == [("clip000000", "One."), ("clip000001", "Two.")]


@needs_espeak
def test_build_a_corpus_the_trainer_reads(tmp_path):
    texts = [("a1", "Dr. Smith paid $5."), ("a2", "!!!"), ("a3", "Hello, world.")]
    assert build(texts, tmp_path / "c", workers=2, progress=False) == 2  # "!!!" has nothing to speak
    clips = read_metadata(tmp_path / "c")
    assert [c.id for c in clips] == ["a1", "a3"]
    assert clips[0].normalized == "doctor smith paid five dollars."
    audio, sr = sf.read(clips[0].wav)
    assert sr == 16000 and 0.5 < len(audio) / sr < 5
    stamp = clips[0].wav.stat().st_mtime_ns
    build(texts, tmp_path / "c", workers=1, progress=False)  # continues: existing clips kept
    assert clips[0].wav.stat().st_mtime_ns == stamp
    assert len(FeatureCache(tmp_path / "c", tmp_path / "cache").build(progress=False)) == 2


@needs_espeak
def test_errors(tmp_path, capsys):
    with pytest.raises(CorpusError, match="voice"):
        build([("x", "Hi.")], tmp_path / "c", voice="no-such-voice", progress=False)
    assert main(["--text", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "cannot read" in capsys.readouterr().err
