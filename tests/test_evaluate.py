"""The evaluation tool: its metric code on tiny synthetic inputs, and the runner end to end on
a tiny random-weight voice and a two-line corpus. The judges' opinions are not tested, only
that they run; those tests skip where the ``eval`` extra is not installed."""

import importlib.util
import json
import math

import numpy as np
import pytest

from tts.audio import DEFAULT_AUDIO, _normalize_db, mel_amplitude, write_audio
from tts.evaluate import metrics
from tts.evaluate.cli import UsageError, main, read_heldout
from tts.evaluate.judges import NEEDS
from tts.evaluate.robustness import check_text, failures, summarize

SR = DEFAULT_AUDIO.sample_rate


def needs_extra(part: str):
    missing = [package for module, package in NEEDS[part].items() if importlib.util.find_spec(module) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs the eval extra (missing {', '.join(missing)})")


def voiced(seconds: float, f0: float = 120.0, seed: int = 0) -> np.ndarray:
    """A buzzy harmonic tone plus a little noise: energy in every mel band."""
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 40) if f0 * k < SR / 2)
    x = x + 0.05 * np.random.default_rng(seed).standard_normal(len(t))
    return (0.2 * x / np.max(np.abs(x))).astype(np.float32)


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    (root / "wavs").mkdir(parents=True)
    (root / "heldout.csv").write_text("c1|Hello there.|hello there.\nc2|It is 5 now.|it is five now.\n"
                                      "c3|Not used.|not used.\n", encoding="utf-8")
    write_audio(root / "wavs" / "c1.flac", voiced(0.8), SR)
    write_audio(root / "wavs" / "c2.wav", voiced(0.6, 150.0), SR)
    write_audio(root / "wavs" / "c3.wav", voiced(0.3), SR)
    return root


# --- metrics -------------------------------------------------------------------------------

def test_word_errors():
    assert metrics.word_errors([], []) == 0
    assert metrics.word_errors("a b c".split(), "a b c".split()) == 0
    assert metrics.word_errors("a b c".split(), "a x c d".split()) == 2  # one substitution, one insertion
    assert metrics.word_errors("a b c".split(), []) == 3
    # Corpus WER weighs lines by their length: 1 error in 4 words + 0 in 1 = 1 / 5.
    assert metrics.corpus_wer([("a b c d".split(), "a b c".split()), (["e"], ["e"])]) == pytest.approx(0.2)
    assert math.isnan(metrics.corpus_wer([([], ["x"])]))


@needs_extra("wer")
def test_whisper_normalizer_counts_spoken_numbers_as_written():
    from tts.evaluate.judges import normalize_words

    assert normalize_words("$3.5 million") == normalize_words("three point five million dollars")
    assert normalize_words("Dr. Smith's colour!") == normalize_words("doctor smith's color")


def test_cepstrum_scaling():
    # log S(w) = c0 + c1 cos(w) + c3 cos(3 w) sampled at the band centres gives back c1, c3.
    bands = 80
    w = np.pi * (np.arange(bands) + 0.5) / bands
    log_s = 1.5 + 0.3 * np.cos(w) - 0.1 * np.cos(3 * w)
    c = metrics.cepstrum(log_s[None], order=4)[0]
    np.testing.assert_allclose(c, [0.3, 0.0, -0.1, 0.0], atol=1e-12)
    # So MCD is the RMS difference in dB between two smooth log spectra.
    other = log_s + 0.2 * np.cos(2 * w)
    rms_db = np.sqrt(np.mean((20 / np.log(10) * (other - log_s)) ** 2))
    assert metrics.mcd_aligned(metrics.cepstrum(other[None]), metrics.cepstrum(log_s[None])) == pytest.approx(rms_db)


def test_mcd_definition_and_dtw():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((30, 24))
    b = a.copy()
    b[:, 0] += 0.1  # every frame off by 0.1 in c1: MCD = 10/ln10 * sqrt(2 * 0.01)
    assert metrics.mcd_aligned(a, b) == pytest.approx(10 / np.log(10) * np.sqrt(2 * 0.01))
    # The same frames played at another pace align perfectly.
    assert metrics.mcd_aligned(a, np.repeat(a, 2, axis=0)) == pytest.approx(0.0)
    assert math.isnan(metrics.mcd_aligned(a, a[:0]))


def test_mcd_on_audio():
    x = voiced(0.5)
    assert metrics.mcd(x, x) == pytest.approx(0.0)
    assert metrics.mcd(0.5 * x, x) < 0.01  # a change of level is c0 only, which MCD leaves out
    padded = np.concatenate([np.zeros(4000, np.float32), x, np.zeros(4000, np.float32)])
    assert metrics.mcd(padded, x) < 0.5  # silence at the ends is trimmed (edge frames differ a little)
    assert metrics.mcd(voiced(0.5, 220.0, seed=1), x) > 3  # another pitch: other harmonics in the bands


def test_periodicity_falls_as_a_voice_turns_to_noise():
    rng = np.random.default_rng(0)
    clean = voiced(1.0)
    noisy = [metrics.periodicity(clean + level * rng.standard_normal(len(clean)).astype(np.float32))
             for level in (0.02, 0.05, 0.2)]
    assert metrics.periodicity(clean) > 0.9 and noisy[0] > noisy[1] > noisy[2]
    assert metrics.periodicity(rng.standard_normal(SR).astype(np.float32)) < 0.2
    assert metrics.periodicity(voiced(1.0, f0=300.0)) > 0.9  # any pitch of a speaking voice
    # Pauses do not count: half a second of near-silence beside the tone changes little.
    padded = np.concatenate([1e-4 * rng.standard_normal(SR // 2).astype(np.float32), clean])
    assert metrics.periodicity(padded) == pytest.approx(metrics.periodicity(clean), abs=0.03)
    assert np.isnan(metrics.periodicity(np.zeros(SR, np.float32)))


def test_level_differences_hear_a_vocoder_too_quiet_where_it_is():
    hop = DEFAULT_AUDIO.hop_length
    x = voiced(1.0)[:(SR // hop) * hop]
    from tts.audio import mel_spectrogram
    mel = mel_spectrogram(x)[:len(x) // hop]
    same = metrics.level_differences([(x, mel)])
    assert set(same) == set(metrics.LEVEL_RANGES) and all(abs(v) < 0.01 for v in same.values())
    half = metrics.level_differences([(0.5 * x, mel)])
    assert all(v == pytest.approx(-6.02, abs=0.05) for v in half.values())
    # Only what lies above 2.5 kHz halved: the low and middle ranges hold, the high one falls.
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(len(x), 1 / SR) > 2500] *= 0.5
    dull = metrics.level_differences([(np.fft.irfft(spectrum, len(x)).astype(np.float32), mel)])
    assert abs(dull["low"]) < 0.1 and abs(dull["mid"]) < 0.5 and dull["high"] < -4.0
    assert math.isnan(metrics.level_differences([(x[:-1], mel)])["mid"])  # not the mel's length: left out


def test_mel_amplitude_undoes_the_normalization():
    amplitude = np.array([[1e-6, 1e-4, 1e-3, 0.1, 1.0, 9.0]], dtype=np.float32)
    mel = _normalize_db(amplitude, DEFAULT_AUDIO, np)
    expected = np.maximum(amplitude, metrics.floor_amplitude())  # below the floor is the floor
    assert metrics.floor_amplitude() == pytest.approx(1e-4)
    np.testing.assert_allclose(mel_amplitude(mel), expected, rtol=1e-4)


def test_speech_seconds():
    x = np.concatenate([np.zeros(SR // 2, np.float32), voiced(1.0), np.zeros(SR // 2, np.float32)])
    assert metrics.speech_seconds(x) == pytest.approx(1.0, abs=0.05)
    assert metrics.speech_seconds(np.zeros(SR, np.float32)) == 0.0


def test_attention_checks():
    diagonal = np.eye(5)[[0, 0, 1, 2, 2, 3, 4]]  # (steps, symbols)
    assert metrics.attention_checks(diagonal) == {"reached_end": True, "moved_back": False, "max_jump": 1, "steps": 7}
    back = np.eye(5)[[0, 1, 3, 2, 4]]
    assert metrics.attention_checks(back)["moved_back"] and metrics.attention_checks(back)["max_jump"] == 2
    stalled = np.eye(5)[[0, 1, 2, 2, 2, 2]]
    assert not metrics.attention_checks(stalled)["reached_end"]
    assert not metrics.attention_checks(np.zeros((0, 5)))["reached_end"]


# --- the corpus and the engine -----------------------------------------------------------------

def test_read_heldout(corpus, tmp_path):
    clips = read_heldout(corpus, 2)
    assert [(c.id, c.text, c.audio.name) for c in clips] == [("c1", "hello there.", "c1.flac"),
                                                             ("c2", "it is five now.", "c2.wav")]
    assert [c.id for c in read_heldout(corpus, 5, start=1)] == ["c2", "c3"]
    assert [c.id for c in read_heldout(corpus, 1, start=2)] == ["c3"]
    with pytest.raises(UsageError, match="no lines after its first 3"):
        read_heldout(corpus, 1, start=3)
    with pytest.raises(UsageError, match="no heldout.csv"):
        read_heldout(tmp_path, 2)
    (corpus / "wavs" / "c1.flac").unlink()
    with pytest.raises(UsageError, match="c1.flac or .wav"):
        read_heldout(corpus, 2)


def test_vocode_is_what_the_engine_plays(synth):
    # Copy-synthesis goes through Synthesizer.vocode; the engine's stream must be that exactly.
    from tts.text import to_phonemes

    chunks = list(synth.stream("Hi there.", seed=3))
    mel, _ = synth.sentence_mel(to_phonemes("hi there."))
    pieces = list(synth.vocoder.stream(mel, np.random.default_rng([3, 0])))
    assert [last for _, last in pieces] == [c.last for c in chunks]
    np.testing.assert_array_equal(np.concatenate([a for a, _ in pieces]), np.concatenate([c.audio for c in chunks]))


def test_robustness_checks(synth):
    from tts.evaluate.robustness import TEXTS

    assert any(len(text.split()) >= 60 for _, text in TEXTS)
    ok = check_text(synth, "Yes.", lambda text: 1.0)
    assert ok["error"] is None and ok["sentences"] == 1 and ok["seconds"] > 0
    assert ok["duration_ratio"] == pytest.approx(ok["seconds"])
    broken = check_text(synth, "?! ...", lambda text: 1.0)
    assert broken["error"].startswith("NothingToSpeakError") and not broken["passed"]
    summary = summarize([ok, broken])
    assert summary["texts"] == 2 and summary["no_exception"] == 1
    assert any("NothingToSpeakError" in line for line in failures([ok, broken]))


# --- the command -------------------------------------------------------------------------------

def test_cli_without_judges(voice, corpus, tmp_path, capsys):
    out = tmp_path / "report.json"
    rc = main([str(voice), "--corpus", str(corpus), "--n", "2", "--skip", "wer,dnsmos,similarity,robustness",
               "--out", str(out), "--save-audio", str(tmp_path / "audio")])
    table = capsys.readouterr().out
    assert rc == 0
    for row in ("MCD dB", "duration / teacher", "copy-synthesis", "Griffin-Lim", "real-time factor", "first audio ms"):
        assert row in table
    report = json.loads(out.read_text())
    systems = report["systems"]
    assert set(systems) == {"engine", "teacher", "copy_synthesis", "acoustic_griffin_lim", "teacher_griffin_lim"}
    assert [c["id"] for c in systems["engine"]["clips"]] == ["c1", "c2"]
    assert "mcd" not in systems["teacher"] and systems["engine"]["mcd"] > 0
    for name in ("engine", "copy_synthesis"):  # every line's level measured, its sentences the mels' lengths
        assert all(math.isfinite(c["level_high"]) for c in systems[name]["clips"])
    assert "level_mid" not in systems["teacher"] and "level dB, > 2 kHz" in table
    copy = systems["copy_synthesis"]
    assert 0 < copy["periodicity"] < 1 and "periodicity" in report["definitions"]
    assert copy["periodicity_ci"][0] <= copy["periodicity"] <= copy["periodicity_ci"][1]
    assert "ovrl_ci" not in copy  # no DNSMOS asked, no OVRL interval
    ratios = [e["seconds"] / t["seconds"] for e, t in zip(systems["engine"]["clips"], systems["teacher"]["clips"])]
    assert report["duration_ratio"]["mean"] == pytest.approx(np.mean(ratios))
    assert report["speed"]["runs"][0]["realtime_factor"] > 0
    assert (tmp_path / "audio" / "copy_synthesis" / "c2.wav").is_file()
    assert not list(tmp_path.glob(".report.json.*"))  # written atomically


def test_cli_in_parts(voice, corpus, capsys):
    rc = main([str(voice), "--corpus", str(corpus), "--n", "1",
               "--skip", "wer,dnsmos,similarity,robustness,speed,engine,vocoder"])
    table = capsys.readouterr().out
    assert rc == 0 and "Griffin-Lim" in table and "copy-synthesis" not in table and "speed" not in table


def test_the_words_the_vocoder_loses_against_griffin_lim():
    from tts.evaluate.cli import format_table, held_out_summary

    def lines(errors):
        return [{"id": f"c{i}", "errors": e, "words": 10, "seconds": 1.0} for i, e in enumerate(errors)]

    summary = held_out_summary({"teacher": lines([0, 0, 1, 0]), "engine": lines([3, 1, 2, 0]),
                                "acoustic_griffin_lim": lines([1, 1, 2, 0])})
    ratio = summary["wer_over_griffin_lim"]
    assert ratio["ratio"] == pytest.approx(1.5) and ratio["ci"][0] <= 1.5 <= ratio["ci"][1] and ratio["ci"][0] >= 0.5
    table = format_table({"lines": 4, "voice": "v", "timings_s": {}, **summary})
    assert "end-to-end WER / this WER" in table and "1.50 [" in table
    unjudged = held_out_summary({"teacher": lines([0] * 4), "engine": [{"id": "c0", "seconds": 1.0}] * 4,
                                 "acoustic_griffin_lim": [{"id": "c0", "seconds": 1.0}] * 4})
    assert "wer_over_griffin_lim" not in unjudged  # no recognizer, no ratio


def test_parts_merge_into_the_report_of_one_run(voice, corpus, tmp_path, capsys):
    from tts.evaluate.merge import main as merge_main

    skip = ["--skip", "wer,dnsmos,similarity,robustness,speed,engine,vocoder"]  # Griffin-Lim's systems: quick
    runs = {"whole": ["--n", "3"], "a": ["--n", "1"], "b": ["--start", "1", "--n", "2"]}
    for name, lines in runs.items():
        assert main([str(voice), "--corpus", str(corpus), *lines, *skip, "--out", str(tmp_path / f"{name}.json")]) == 0
    capsys.readouterr()
    parts = [str(tmp_path / "b.json"), str(tmp_path / "a.json")]
    assert merge_main([*parts, "--out", str(tmp_path / "merged.json")]) == 0
    assert "3 held-out lines" in capsys.readouterr().out
    whole, merged = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("whole", "merged"))
    assert merged["lines"] == 3 and set(merged["systems"]) == set(whole["systems"])
    for name, system in whole["systems"].items():
        by_id = {c["id"]: c for c in system["clips"]}
        assert [c["id"] for c in merged["systems"][name]["clips"]] == ["c2", "c3", "c1"]  # the parts' order
        assert all(by_id[c["id"]] == c for c in merged["systems"][name]["clips"])
        for key in ("mcd", "periodicity"):  # taken again over all the lines
            if key in system:
                assert merged["systems"][name][key] == pytest.approx(system[key]), (name, key)
    # One line judged twice, or parts of another sampling: one line on stderr, exit code 2.
    assert merge_main([str(tmp_path / "a.json"), str(tmp_path / "whole.json"), "--out", str(tmp_path / "m2.json")]) == 2
    assert "line c1 is in both" in capsys.readouterr().err
    other = json.loads((tmp_path / "b.json").read_text()) | {"sampling": {"temperature": 1.0}}
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert merge_main([str(tmp_path / "a.json"), str(tmp_path / "other.json"), "--out", str(tmp_path / "m3.json")]) == 2
    err = capsys.readouterr().err
    assert "differ in sampling" in err and err.count("\n") == 1
    assert not (tmp_path / "m2.json").exists() and not (tmp_path / "m3.json").exists()


@pytest.mark.parametrize("args, rc, message", [
    (["{missing}", "--corpus", "{corpus}", "--skip", "wer,dnsmos,similarity,robustness"], 1, "voice folder not found"),
    (["{voice}", "--corpus", "{tmp}"], 2, "no heldout.csv"),
    (["{voice}", "--corpus", "{corpus}", "--skip", "nothing"], 2, "unknown part"),
    (["{voice}", "--corpus", "{corpus}", "--start", "-1"], 2, "--start must be 0 or more"),
    (["{voice}", "--corpus", "{corpus}", "--start", "3"], 2, "no lines after its first 3"),
    (["{voice}", "--corpus", "{corpus}", "--out", "{missing}/r.json"], 2, "output folder does not exist"),
])
def test_cli_errors_are_one_line(voice, corpus, tmp_path, capsys, args, rc, message):
    paths = {"voice": voice, "corpus": corpus, "tmp": tmp_path, "missing": tmp_path / "missing"}
    assert main([a.format(**paths) for a in args]) == rc
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("evaluate: error:")


def test_cli_judges_other_sampling_on_a_copy_of_the_voice(voice, corpus, tmp_path, capsys):
    import shutil

    import torch

    from tts.voice import read_config, save_model
    from tts.vocoder.voicing import VoicingConfig, VoicingDetector

    voiced_voice = tmp_path / "voice"
    shutil.copytree(voice, voiced_voice)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        save_model(voiced_voice, "voicing", VoicingDetector(VoicingConfig(strength=2.0)))
    before = (voiced_voice / "config.json").read_bytes()
    skip = ["--skip", "wer,dnsmos,mcd,similarity,robustness,speed,vocoder,griffin-lim"]
    runs = {}
    for name, options in (("as is", []), ("other", ["--temperature", "3", "--voicing-strength", "0.5"])):
        out = tmp_path / f"{name}.json"
        assert main([str(voiced_voice), "--corpus", str(corpus), "--n", "1", *skip, *options, "--out", str(out),
                     "--save-audio", str(tmp_path / name)]) == 0
        runs[name] = (json.loads(out.read_text()), capsys.readouterr().out)
    report, table = runs["other"]
    assert report["sampling"] == {"temperature": 3.0, "voicing_strength": 0.5} and "sampling" not in runs["as is"][0]
    assert "temperature 3, voicing strength 0.5" in table.splitlines()[0] and report["voice"] == str(voiced_voice)
    from tts.audio import load_audio
    heard = [load_audio(tmp_path / name / "engine" / "c1.wav") for name in runs]
    assert heard[0].shape == heard[1].shape and not np.array_equal(*heard)  # the settings reached the sampler
    assert (voiced_voice / "config.json").read_bytes() == before  # the folder itself untouched
    assert read_config(voiced_voice)["models"]["vocoder"]["config"]["temperature"] != 3.0


@pytest.mark.parametrize("options, message", [
    (["--temperature", "20"], "--temperature: WaveNetConfig.temperature must be in (0, 10]"),
    (["--voicing-strength", "1"], "--voicing-strength: voice folder {voice} has no voicing model"),
])
def test_cli_sampling_errors_are_one_line(voice, corpus, capsys, options, message):
    assert main([str(voice), "--corpus", str(corpus), "--skip", "wer,dnsmos,similarity,robustness", *options]) == 2
    err = capsys.readouterr().err
    assert message.format(voice=voice) in err and err.count("\n") == 1


def test_cli_names_a_missing_extra(voice, corpus, capsys, monkeypatch):
    monkeypatch.setitem(NEEDS, "dnsmos", {"no_such_module_here": "no-such-package"})
    assert main([str(voice), "--corpus", str(corpus), "--skip", "wer,robustness"]) == 1
    err = capsys.readouterr().err
    assert "no-such-package" in err and "[eval]" in err and err.count("\n") == 1


@needs_extra("wer")
@needs_extra("dnsmos")
@needs_extra("teacher")
def test_judges_run():
    # That each judge runs offline and answers in its own terms; not what it thinks.
    from tts.evaluate.judges import DNSMOS, Recognizer, Teacher

    speech = Teacher()("yes.")
    assert speech.dtype == np.float32 and 0.2 < len(speech) / SR < 3
    assert isinstance(Recognizer()(speech), str)
    assert Recognizer()(np.zeros(100, np.float32)) == ""
    scores = DNSMOS()(speech)
    assert set(scores) == {"sig", "bak", "ovrl", "p808"} and all(1 <= v <= 5 for v in scores.values())
    assert all(math.isnan(v) for v in DNSMOS()(np.zeros(0, np.float32)).values())


def test_bootstrap_interval_covers_the_mean_and_narrows_with_lines():
    from tts.evaluate.metrics import bootstrap_interval, mean_statistic, wer_statistic

    rng = np.random.default_rng(0)
    few, many = rng.normal(2.0, 0.5, 10), rng.normal(2.0, 0.5, 400)
    lo_few, hi_few = bootstrap_interval(mean_statistic(few), len(few))
    lo_many, hi_many = bootstrap_interval(mean_statistic(many), len(many))
    assert lo_few < few.mean() < hi_few and lo_many < many.mean() < hi_many
    assert hi_many - lo_many < 0.5 * (hi_few - lo_few)
    lo, hi = bootstrap_interval(wer_statistic([0, 1, 2, 0], [10, 10, 10, 10]), 4)
    assert 0.0 <= lo < 3 / 40 < hi <= 2 / 10


def _report(path, ovrl, errors, periodicity=None, level_high=None):
    periodicity = ovrl / 4 if periodicity is None else periodicity
    clips = [{"id": f"c{i}", "ovrl": o, "errors": e, "words": 10, "periodicity": p}
             for i, (o, e, p) in enumerate(zip(ovrl, errors, periodicity))]
    systems = {"copy_synthesis": {"ovrl": float(np.mean(ovrl)), "wer": sum(errors) / (10 * len(errors)),
                                  "periodicity": float(np.mean(periodicity)), "clips": clips}}
    if level_high is not None:
        for clip, level in zip(clips, level_high):
            clip["level_high"] = level
        systems["copy_synthesis"]["level_high"] = float(np.mean(level_high))
    path.write_text(__import__("json").dumps({"systems": systems}))
    return path


def test_compare_calls_a_paired_difference_only_beyond_chance(tmp_path, capsys):
    from tts.evaluate.compare import main

    rng = np.random.default_rng(1)
    line_quality = rng.normal(2.0, 0.6, 50)  # lines differ far more than the systems do
    base = _report(tmp_path / "base.json", line_quality, [2] * 50)
    better = _report(tmp_path / "better.json", line_quality + 0.1 + rng.normal(0, 0.05, 50), [1] * 50)
    same = _report(tmp_path / "same.json", line_quality + rng.normal(0, 0.05, 50), [2] * 50)
    assert main([str(base), str(better)]) == 0
    out = capsys.readouterr().out
    assert "| copy_synthesis | DNSMOS OVRL | 50 |" in out and out.count("| better |") == 2
    assert "| periodicity | 50 |" in out and out.count("| higher |") == 1  # nearer the teacher is the aim, not more
    assert "level" not in out  # reports without the vocoder's level: no row for it
    assert main([str(base), str(same)]) == 0
    assert "| no difference |" in capsys.readouterr().out
    quiet = _report(tmp_path / "quiet.json", line_quality, [2] * 50, level_high=rng.normal(-3.6, 1.0, 50))
    brighter = _report(tmp_path / "brighter.json", line_quality, [2] * 50, level_high=rng.normal(-1.8, 1.0, 50))
    assert main([str(quiet), str(brighter)]) == 0
    assert "| copy_synthesis | level dB, > 2 kHz | 50 |" in (out := capsys.readouterr().out)
    assert "| higher |" in out
    assert main([str(base), str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err.startswith("compare: error: cannot read report")


def test_the_ceiling_systems_are_the_audio_through_each_representation():
    from tts.audio import mel_spectrogram
    from tts.evaluate.ceiling import systems

    t = np.arange(8000) / 16000
    audio = (0.4 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype(np.float32)
    mel = mel_spectrogram(audio)[:40]
    out = systems(audio, mel)
    assert list(out) == ["teacher", "mu-law 8", "lpc excitation", "lpc from mu-law"]
    assert out["teacher"] is audio
    for name in ("mu-law 8", "lpc excitation", "lpc from mu-law"):
        assert out[name].shape == audio.shape
        error = np.abs(out[name] - audio)
        assert 0 < error.max() < 0.05, name  # only the 8-bit quantization's error, shaped
