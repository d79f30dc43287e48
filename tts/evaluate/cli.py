"""``python -m tts.evaluate VOICE_DIR --corpus CORPUS_DIR [--start 0] [--n 50] [--out report.json] [--skip ...]
[--speaker DIR]``

Exit codes: 0 success; 2 bad usage or input (no corpus, no ``heldout.csv``, a missing clip,
an unknown --skip, a --speaker folder without recordings); 1 the evaluation cannot run (a
missing or broken voice, the ``eval`` extra not installed). Every error is one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tts.cli import add_vocoder_options, check_vocoder_options
from tts.command import OneLineParser, UsageError, run_command
from tts.evaluate.metrics import LEVEL_ROWS
from tts.files import replacing

PARTS = ("engine", "vocoder", "griffin-lim", "robustness", "speed")
JUDGES = ("wer", "dnsmos", "mcd", "similarity")
# Speaker similarity averages this many reference recordings at most: the mean embedding has
# long settled, and a whole corpus would take minutes to embed.
SPEAKER_CLIPS = 100
# The systems judged on every held-out line; the table puts each in the engine's or the teacher's column.
SYSTEMS = {
    "engine": "text -> acoustic model -> vocoder",
    "teacher": "the corpus audio",
    "copy_synthesis": "teacher mel -> the voice's vocoder",
    "acoustic_griffin_lim": "the acoustic model's free-running mel -> Griffin-Lim",
    "teacher_griffin_lim": "the teacher's mel -> Griffin-Lim",
}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m tts.evaluate",
                description="Judge a voice beside its teacher on held-out lines: Whisper word error rate, "
                            "DNSMOS, mel-cepstral distortion, speaker similarity, each model alone, "
                            "robustness and speed.")
    p.add_argument("voice", type=Path, help="voice folder")
    p.add_argument("--corpus", type=Path, required=True,
                   help="corpus folder in the LJ Speech layout: heldout.csv (id|text|normalized text), wavs/<id>.flac|.wav")
    p.add_argument("--n", type=int, default=50, help="held-out lines to use (default 50)")
    p.add_argument("--start", type=int, default=0,
                   help="held-out lines to pass over before the --n used (default 0: from the top)")
    p.add_argument("--out", type=Path, help="also write every number (and each line's transcripts) to this JSON file")
    p.add_argument("--skip", default="", help=f"comma-separated parts to leave out: {', '.join(PARTS + JUDGES)}")
    p.add_argument("--speaker", type=Path,
                   help="the target speaker's recordings for speaker similarity: a folder of WAV/FLAC files, or a "
                        "corpus in the LJ Speech layout (the clips its metadata.csv lists); at most "
                        f"{SPEAKER_CLIPS}, in file order (default: the corpus's held-out recordings, each line's own "
                        "left out)")
    p.add_argument("--save-audio", type=Path, help="write each system's audio to DIR/<system>/<id>.wav to listen to")
    add_vocoder_options(p)
    p.add_argument("--threads", type=int, default=1, help="CPU threads for every model and judge (default 1)")
    p.add_argument("--seed", type=int, default=0, help="vocoder sampling seed")
    p.add_argument("--temperature", type=float,
                   help="judge the voice as if its WaveNet sampled at this temperature (the folder stays as it is)")
    p.add_argument("--voicing-strength", type=float,
                   help="judge the voice as if its WaveNet sampled voiced frames at temperature / (1 + this) "
                        "(voicing-dependent sampling; the folder stays as it is)")
    return p


SAMPLING_OPTIONS = (("temperature", "set_temperature"), ("voicing_strength", "set_voicing_strength"))


def with_sampling(voice: Path, args, workdir: Path) -> tuple[Path, dict]:
    """The voice folder to judge: ``voice`` itself, or where --temperature or
    --voicing-strength ask for other sampling, a copy of it in ``workdir`` with those settings
    (and the settings, for the report)."""
    import shutil

    from tts import voice as voices

    asked = {key: getattr(args, key) for key, _ in SAMPLING_OPTIONS if getattr(args, key) is not None}
    if not asked or not voice.is_dir():  # a missing folder is the loader's error to name
        return voice, asked
    copy = workdir / voice.name
    shutil.copytree(voice, copy)
    for key, setter in SAMPLING_OPTIONS:
        if key in asked:
            try:
                getattr(voices, setter)(copy, asked[key])
            except voices.VoiceError as e:
                raise UsageError(f"--{key.replace('_', '-')}: {e}".replace(str(copy), str(voice))) from None
    return copy, asked


# --- the corpus ------------------------------------------------------------------------------

@dataclass
class Clip:
    id: str
    text: str  # what the teacher said: the normalized text, else the text
    audio: Path


def read_heldout(corpus: Path, n: int, start: int = 0) -> list[Clip]:
    """``n`` lines of ``corpus/heldout.csv`` after its first ``start``, with their teacher audio."""
    if not corpus.is_dir():
        raise UsageError(f"corpus folder not found: {corpus}")
    path = corpus / "heldout.csv"
    if not path.is_file():
        raise UsageError(f"corpus {corpus} has no heldout.csv (build it with python -m tts.train.corpus)")
    clips, passed = [], 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if len(clips) == n:
            break
        if not line.strip():
            continue
        if passed < start:
            passed += 1
            continue
        fields = line.split("|")
        if len(fields) < 2 or not fields[0].strip():
            raise UsageError(f"{path}:{number}: expected id|text|normalized text, got {line[:60]!r}")
        text = (fields[2] if len(fields) > 2 and fields[2].strip() else fields[1]).strip()
        audio = next((p for p in (corpus / "wavs" / f"{fields[0].strip()}{ext}" for ext in (".flac", ".wav"))
                      if p.is_file()), None)
        if audio is None:
            raise UsageError(f"{corpus}/wavs has no {fields[0].strip()}.flac or .wav")
        clips.append(Clip(fields[0].strip(), text, audio))
    if not clips:
        raise UsageError(f"{path} has no lines" + (f" after its first {start}" if start else ""))
    return clips


def read_speaker(folder: Path, limit: int = SPEAKER_CLIPS) -> list[Path]:
    """The speaker's reference recordings in ``folder``: the clips its ``metadata.csv`` lists
    (wavs/<id>.flac|.wav, an LJ Speech layout corpus), else its own WAV and FLAC files."""
    if not folder.is_dir():
        raise UsageError(f"--speaker folder not found: {folder}")
    metadata = folder / "metadata.csv"
    if metadata.is_file():
        paths = []
        for line in metadata.read_text(encoding="utf-8").splitlines():
            clip_id = line.split("|")[0].strip()
            if not clip_id:
                continue
            path = next((p for p in (folder / "wavs" / f"{clip_id}{ext}" for ext in (".flac", ".wav")) if p.is_file()),
                        None)
            if path is None:
                raise UsageError(f"{folder}/wavs has no {clip_id}.flac or .wav (listed in {metadata})")
            paths.append(path)
    else:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".wav", ".flac") and p.is_file())
    if not paths:
        raise UsageError(f"--speaker folder {folder} has no recordings (WAV or FLAC files, or a metadata.csv)")
    return paths[:limit]


# --- one held-out line -------------------------------------------------------------------------

def copy_synthesis(synth, mel: np.ndarray, seed: int) -> np.ndarray:
    """A mel (frames, n_mels) through the voice's vocoder, exactly as the engine runs it."""
    pieces = [audio for audio, _ in synth.vocoder.stream(mel, np.random.default_rng([seed, 0]))]
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def sentence_pairs(chunks) -> list[tuple[np.ndarray, np.ndarray]]:
    """(a sentence's audio, the mel it was made of) for each sentence of a stream's chunks;
    pauses, which have no mel, left out."""
    sentences: dict[int, tuple[list[np.ndarray], np.ndarray]] = {}
    for chunk in chunks:
        if len(chunk.mel):
            sentences.setdefault(chunk.sentence, ([], chunk.mel))[0].append(chunk.audio)
    return [(np.concatenate(pieces), mel) for pieces, mel in sentences.values()]


def systems_audio(synth, clip: Clip, parts: set[str], seed: int
                  ) -> tuple[dict[str, np.ndarray], dict[str, list[tuple[np.ndarray, np.ndarray]]]]:
    """Every system's audio for one held-out line, and for the vocoder's systems the
    (audio, mel) pairs of what it was asked to render."""
    from tts.audio import load_audio, mel_spectrogram
    from tts.audio import griffin_lim

    config = synth.voice.audio
    teacher = load_audio(clip.audio, config)
    out, asked = {"teacher": teacher}, {}
    mel = None
    if "engine" in parts:
        chunks = list(synth.stream(clip.text, seed=seed))
        out["engine"] = np.concatenate([c.audio for c in chunks])
        asked["engine"] = sentence_pairs(chunks)
        mel = np.concatenate([sentence_mel for _, sentence_mel in asked["engine"]])
    teacher_mel = mel_spectrogram(teacher, config) if parts & {"vocoder", "griffin-lim"} else None
    if "vocoder" in parts:
        out["copy_synthesis"] = copy_synthesis(synth, teacher_mel, seed)
        asked["copy_synthesis"] = [(out["copy_synthesis"], teacher_mel)]
    if "griffin-lim" in parts:
        out["acoustic_griffin_lim"] = griffin_lim(synth.mel(clip.text) if mel is None else mel, config)
        out["teacher_griffin_lim"] = griffin_lim(teacher_mel, config)
    return out, asked


def judge(audio: np.ndarray, reference: list[str], teacher: np.ndarray, judges: dict, config,
          is_teacher: bool, clip_id: str | None = None, asked: list | None = None) -> dict:
    """One system's numbers on one line; ``asked``: the (audio, mel) pairs it rendered, for
    its level against them."""
    from tts.audio import to_mono_16k
    from tts.evaluate.judges import normalize_words
    from tts.evaluate.metrics import level_differences, mcd, periodicity, speech_seconds, word_errors

    record = {"seconds": speech_seconds(audio, config), "periodicity": periodicity(audio, config)}
    if asked:
        record.update({f"level_{name}": value for name, value in level_differences(asked, config).items()})
    if "wer" in judges:
        record["hypothesis"] = judges["wer"](audio)
        record["errors"] = word_errors(reference, normalize_words(record["hypothesis"]))
        record["words"] = len(reference)
    if "dnsmos" in judges:
        record.update(judges["dnsmos"](audio))
    if "mcd" in judges and not is_teacher:
        record["mcd"] = mcd(audio, teacher, config)
    if "similarity" in judges:
        record["similarity"] = judges["similarity"](to_mono_16k(audio, config.sample_rate), leave_out=clip_id)
    return record


def aggregate(clips: list[dict]) -> dict:
    """One system's numbers over all lines: corpus WER, mean DNSMOS, MCD, periodicity and speaker
    similarity, and for WER, OVRL, periodicity and similarity the 95% bootstrap interval over
    lines (``wer_ci``, ...)."""
    from tts.evaluate.metrics import bootstrap_interval, mean_statistic, wer_statistic

    out = {}
    if clips and "errors" in clips[0]:
        words = sum(c["words"] for c in clips)
        out["wer"] = sum(c["errors"] for c in clips) / words if words else float("nan")
        out["wer_ci"] = bootstrap_interval(wer_statistic([c["errors"] for c in clips], [c["words"] for c in clips]),
                                           len(clips))
    for key in ("sig", "bak", "ovrl", "p808", "mcd", "periodicity", "similarity", *(name for name, _, _ in LEVEL_ROWS)):
        values = [c[key] for c in clips if c.get(key) is not None and not math.isnan(c[key])]  # None: NaN in JSON
        if clips and key in clips[0]:
            out[key] = float(np.mean(values)) if values else float("nan")
            if key in ("ovrl", "periodicity", "similarity"):
                out[f"{key}_ci"] = bootstrap_interval(mean_statistic(values), len(values))
    return out


def held_out_summary(per_clip: dict[str, list[dict]]) -> dict:
    """The report's held-out part from each system's per-line records: ``systems`` (each
    system's numbers over the lines, and the lines) and ``duration_ratio`` (the engine's
    duration against the teacher's) where the engine was judged."""
    out = {"systems": {name: {"description": SYSTEMS[name], **aggregate(records), "clips": records}
                       for name, records in per_clip.items()}}
    if "engine" in per_clip:
        ratios = [e["seconds"] / t["seconds"] for e, t in zip(per_clip["engine"], per_clip["teacher"]) if t["seconds"] > 0]
        out["duration_ratio"] = {"mean": float(np.mean(ratios)), "min": float(np.min(ratios)),
                                 "max": float(np.max(ratios))} if ratios else None
    engine, griffin_lim = per_clip.get("engine", []), per_clip.get("acoustic_griffin_lim", [])
    if engine and griffin_lim and "errors" in engine[0] and "errors" in griffin_lim[0]:
        # The words the vocoder loses: the engine's errors over those of the same mels through
        # Griffin-Lim, the interval over the lines resampled for both (errors over errors is
        # wer_statistic's errors over words).
        from tts.evaluate.metrics import bootstrap_interval, wer_statistic

        errors = [c["errors"] for c in engine], [c["errors"] for c in griffin_lim]
        out["wer_over_griffin_lim"] = {"ratio": sum(errors[0]) / max(sum(errors[1]), 1),
                                       "ci": bootstrap_interval(wer_statistic(*errors), len(engine))}
    return out


# --- the whole run -----------------------------------------------------------------------------

def evaluate(synth, clips: list[Clip], skip: set[str], threads: int = 1, seed: int = 0,
             save_audio: Path | None = None, speaker: list[Path] | None = None) -> dict:
    """Judge every system on the held-out ``clips``; speaker similarity against the recordings
    ``speaker`` (default: the clips' own recordings, each line's own left out)."""
    from tqdm import tqdm

    from tts.audio import write_audio
    from tts.evaluate import judges as J

    config = synth.voice.audio
    parts = set(PARTS) - skip
    report = {"voice": str(synth.voice.path), "lines": len(clips), "skipped": sorted(skip), "timings_s": {},
              "definitions": definitions()}
    started = time.perf_counter()
    judges = {}
    if "wer" not in skip:
        judges["wer"] = J.Recognizer(threads)
    if "dnsmos" not in skip:
        judges["dnsmos"] = J.DNSMOS(threads)
    if "mcd" not in skip:
        judges["mcd"] = True
    if "similarity" not in skip:
        judges["similarity"], report["speaker"] = speaker_judge(clips, speaker)
    normalize = J.normalize_words if "wer" in judges else (lambda text: text.split())
    per_clip: dict[str, list[dict]] = {}
    for clip in tqdm(clips, desc="held-out lines", unit="line", disable=None):
        audio, asked = systems_audio(synth, clip, parts, seed)
        reference = normalize(clip.text)
        for name, samples in audio.items():
            record = {"id": clip.id, **judge(samples, reference, audio["teacher"], judges, config, name == "teacher",
                                             clip.id, asked.get(name))}
            per_clip.setdefault(name, []).append(record)
            if save_audio is not None:
                (save_audio / name).mkdir(parents=True, exist_ok=True)
                write_audio(save_audio / name / f"{clip.id}.wav", samples, config.sample_rate)
    report.update(held_out_summary(per_clip))
    report["timings_s"]["held-out lines"] = time.perf_counter() - started

    if "robustness" in parts:
        from tts.evaluate import robustness as R

        started = time.perf_counter()
        teacher = J.Teacher(threads, config)
        records = []
        for kind, text in tqdm(R.TEXTS, desc="robustness", unit="text", disable=None):
            records.append({"kind": kind, **R.check_text(synth, text, lambda t: _teacher_seconds(teacher, t, config), seed)})
        report["robustness"] = {"summary": R.summarize(records), "failures": R.failures(records), "texts": records}
        report["timings_s"]["robustness"] = time.perf_counter() - started

    if "speed" in parts:
        from tts.bench import SENTENCE, measure, paragraph

        started = time.perf_counter()
        synth.synthesize("Warm up.")  # compile / load kernels outside the measurement
        speed = [{"text": "sentence", **measure(synth, SENTENCE)}]
        if speed[0]["realtime_factor"] < 1.0:  # slower than real time, 300 words would take many minutes
            speed.append({"text": "paragraph", **measure(synth, paragraph(300))})
        # A busy machine slows every figure here: say how busy it was.
        report["speed"] = {"backend": synth.backend, "threads": threads, "load_average": os.getloadavg()[0],
                           "runs": speed}
        report["timings_s"]["speed"] = time.perf_counter() - started
    return report


def speaker_judge(clips: list[Clip], speaker: list[Path] | None):
    """The speaker-similarity judge, and what the report says of its reference recordings."""
    from tts.audio import load_audio
    from tts.evaluate.judges import SpeakerSimilarity

    paths = speaker if speaker is not None else [c.audio for c in clips]
    judge = SpeakerSimilarity([load_audio(p) for p in paths], [p.stem for p in paths])
    if len(judge.references) == 0:
        raise UsageError("speaker similarity: no reference recording has speech in it")
    folder = os.path.commonpath([p.parent for p in paths])
    return judge, {"reference": folder if speaker is not None else f"the held-out recordings in {folder}",
                   "clips": len(judge.references)}


def _teacher_seconds(teacher, text: str, config) -> float:
    from tts.evaluate.metrics import speech_seconds

    return speech_seconds(teacher(text), config)


def definitions() -> dict:
    from tts.evaluate.judges import Recognizer, SpeakerSimilarity
    from tts.audio import GRIFFIN_LIM_ITERATIONS
    from tts.evaluate.metrics import LEVEL_EDGES_HZ, MCD_ORDER, PERIODICITY_TOP_DB, PITCH_HZ, SPEECH_TOP_DB

    return {
        "wer": f"{Recognizer.name}; reference (the corpus's normalized text) and transcript both through "
               "whisper-normalizer's EnglishTextNormalizer; all errors over all reference words",
        "dnsmos": "speechmos DNSMOS P.835 (SIG, BAK, OVRL; not personalized) and P.808, mean over lines",
        "mcd": f"dB, c1..c{MCD_ORDER} of the natural-log mel amplitude cepstrum (the engine's 80 Slaney bands), "
               "10/ln10 * sqrt(2 * sum dc^2), mean over the DTW path, both sides trimmed to speech",
        "periodicity": f"mean over 40 ms frames within {PERIODICITY_TOP_DB:.0f} dB of the loudest of the peak "
                       f"normalized cross-correlation of the frame with itself at {PITCH_HZ[0]:.0f}-"
                       f"{PITCH_HZ[1]:.0f} Hz lags (1: periodic, 0: noise); the teacher's own audio is the target",
        "similarity": f"{SpeakerSimilarity.name}: the cosine between a line's embedding and the speaker's, the "
                      "normalized mean embedding of the reference recordings (the line's own recording left out); "
                      "mean over lines",
        "griffin_lim": f"tts.audio.griffin_lim: filterbank pseudo-inverse + librosa griffinlim, {GRIFFIN_LIM_ITERATIONS} iterations, the voice's AudioConfig",
        "level": f"dB, the vocoder's audio's own mel minus the mel it rendered, over the frames within "
                 f"{SPEECH_TOP_DB:.0f} dB of each sentence's loudest and the bands centred below "
                 f"{LEVEL_EDGES_HZ[0]:.0f} Hz, between, and above {LEVEL_EDGES_HZ[1]:.0f} Hz (negative: quieter than "
                 "asked); mean over lines",
        "duration": f"speech seconds (first to last frame within {SPEECH_TOP_DB:.0f} dB of the peak), engine / teacher",
    }


# --- output --------------------------------------------------------------------------------------

def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _fmt_ci(system: dict, key: str, digits: int) -> str:
    """The value, with its 95% bootstrap interval where there is one: "0.086 [0.061-0.114]"."""
    ci = system.get(f"{key}_ci")
    if ci is None or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in ci):
        return _fmt(system.get(key), digits)
    return f"{_fmt(system.get(key), digits)} [{ci[0]:.{digits}f}-{ci[1]:.{digits}f}]"


def format_table(report: dict) -> str:
    systems = report.get("systems", {})
    rows: list[tuple[str, str, str]] = []

    def section(title: str, engine: str | None, teacher: str | None) -> None:
        e, t = systems.get(engine, {}) if engine else {}, systems.get(teacher, {}) if teacher else {}
        if not e and not t:
            return
        rows.append((title, "", ""))
        for key, label, digits in [("wer", "WER", 3), ("sig", "DNSMOS SIG", 2), ("bak", "DNSMOS BAK", 2),
                                   ("ovrl", "DNSMOS OVRL", 2), ("p808", "DNSMOS P.808", 2), ("mcd", "MCD dB", 2),
                                   ("periodicity", "periodicity", 3), ("similarity", "speaker similarity", 3),
                                   *LEVEL_ROWS]:
            if key in e or key in t:
                rows.append((f"  {label}", _fmt_ci(e, key, digits) if e else "", _fmt_ci(t, key, digits) if t else ""))

    section("end to end (engine; teacher: corpus audio)", "engine", "teacher")
    ratio = report.get("duration_ratio")
    if ratio:
        rows.append(("  duration / teacher, mean (range)",
                     f"{ratio['mean']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f})", ""))
    section("vocoder alone: copy-synthesis of the teacher mel", "copy_synthesis", None)
    section("Griffin-Lim: acoustic model's mel; teacher's mel", "acoustic_griffin_lim", "teacher_griffin_lim")
    if report.get("wer_over_griffin_lim"):
        ratio = report["wer_over_griffin_lim"]
        rows.append(("  end-to-end WER / this WER", _fmt_ci({"r": ratio["ratio"], "r_ci": ratio["ci"]}, "r", 2), ""))
    if "robustness" in report:
        s = report["robustness"]["summary"]
        n = s["texts"]
        rows.append((f"robustness ({n} texts)", "", ""))
        for key, label in [("passed", "passed"), ("no_exception", "no exception"),
                           ("reached_end", "attention reaches the end"), ("never_moved_back", "attention never moves back"),
                           ("duration_ok", "duration 0.67-1.5x teacher"), ("hit_step_limit", "ran to the step limit")]:
            rows.append((f"  {label}", f"{s[key]}/{n}", ""))
    if "speed" in report:
        speed = report["speed"]
        rows.append((f"speed ({speed['backend']}, {speed['threads']} thread(s), load average {speed['load_average']:.1f})",
                     "", ""))
        for run in report["speed"]["runs"]:
            rows.append((f"  real-time factor, {run['words']}-word {run['text']}", _fmt(run["realtime_factor"], 3), ""))
            rows.append((f"  first audio ms, {run['text']}", _fmt(run["first_audio_ms"], 0), ""))
    width = max(len(r[0]) for r in rows) if rows else 10
    sampling = "".join(f", {key.replace('_', ' ')} {value:g}" for key, value in report.get("sampling", {}).items())
    lines = [f"{report['lines']} held-out lines, voice {report['voice']}{sampling}",
             f"{'':{width}s}  {'engine':>22s}  {'teacher':>22s}",
             "(WER, OVRL, periodicity and speaker similarity: the mean over lines [its 95% bootstrap interval])"]
    lines += [f"{a:{width}s}  {b:>22s}  {c:>22s}" for a, b, c in rows]
    for failure in report.get("robustness", {}).get("failures", []):
        lines.append(f"robustness failure: {failure}")
    lines.append("took " + ", ".join(f"{k} {v:.0f} s" for k, v in report["timings_s"].items()))
    return "\n".join(lines)


def _finite(value):
    """JSON has no NaN: None instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _finite(value.item())
    return value


def write_json(path: Path, report: dict) -> None:
    """Write the report atomically: the file is complete or absent."""
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(_finite(report), indent=1) + "\n", encoding="utf-8")


def run(args) -> int:
    import torch

    from tts.evaluate.judges import check_installed
    from tts.synthesizer import Synthesizer

    check_vocoder_options(args)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(PARTS + JUDGES)
    if unknown:
        raise UsageError(f"--skip: unknown part(s) {', '.join(sorted(unknown))} (choose from {', '.join(PARTS + JUDGES)})")
    if args.n < 1 or args.threads < 1:
        raise UsageError("--n and --threads must be at least 1")
    if args.start < 0:
        raise UsageError(f"--start must be 0 or more, got {args.start}")
    if args.out is not None and not args.out.parent.is_dir():
        raise UsageError(f"output folder does not exist: {args.out.parent}")
    clips = read_heldout(args.corpus, args.n, args.start)
    speaker = read_speaker(args.speaker) if args.speaker is not None and "similarity" not in skip else None
    check_installed([part for part, needed in [("wer", "wer" not in skip), ("dnsmos", "dnsmos" not in skip),
                                               ("teacher", "robustness" not in skip),
                                               ("similarity", "similarity" not in skip)] if needed])
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as workdir:
        voice, sampling = with_sampling(args.voice, args, Path(workdir))
        synth = Synthesizer.load(voice, device="cpu", vocoder=args.choice)
        report = evaluate(synth, clips, skip, args.threads, args.seed, args.save_audio, speaker)
    report["voice"], report["corpus"] = str(args.voice), str(args.corpus)
    if sampling:
        report["sampling"] = sampling
    print(format_table(report))
    if args.out is not None:
        write_json(args.out, report)
    return 0


def main(argv: list[str] | None = None) -> int:
    from tts.errors import AudioFileError

    return run_command("evaluate", lambda: run(build_parser().parse_args(argv)), usage=(AudioFileError,))
