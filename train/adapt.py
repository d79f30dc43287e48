"""A voice from a speaker's own recordings: one command, a folder of audio in, a voice out.

    python -m tts.train adapt --data my-recordings/ --to my-voice [--minutes 60] [--from VOICE]

The folder's recordings become a corpus (`tts.train.recordings`: any format, rate and
length; transcripts given or made by Whisper; cut, trimmed, normalized), a few of its clips
are held out for judging, and the voice it starts from (the default voice unless --from)
learns the speaker in runs of the one trainer: its acoustic model (every part: the aligner
finds the speaker's durations, the decoder her spectrum), then, given a share of the minutes
(``--wavenet-share``), its WaveNet (her pitch range and excitation); the voicing detector is
refitted on her audio. Then the voice folder is written whole, with its card.

The whole command keeps to ``--minutes``: what the corpus took comes off the top, and the
rest goes to the two runs (``--wavenet-share`` of it to the WaveNet; 0 keeps the base voice's
WaveNet and gives the acoustic model all of it). Each run has a constant
learning rate after its warm-up and a short moving average of its weights (EMA_DECAY): a
run stopped at any moment (its deadline, Ctrl-C, SIGTERM) has weights as good as its last
hundred steps, and the voice is exported from them. Everything lives in a work folder beside
the voice (``--work``, default ``VOICE.adapt``): the same command again resumes where it
stopped, each run with what is left of its share.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tts.command import EXIT_INTERRUPTED, EXIT_OK, OneLineParser, UsageError
from tts.files import temporary_folder_beside, write_text_atomic
from tts.voice import BUNDLED_VOICE, load_model, read_config, save_model

# The WaveNet's share of the training minutes, by default none: on ten minutes of a speaker,
# fine-tuning it lowers its teacher-forced loss on her audio while what it says on its own
# grows less periodic and loses words (BENCHMARKS.md, 2026-12-07), and the same minutes given
# to the acoustic model bring the voice closer to her.
WAVENET_SHARE = 0.0
EMA_DECAY = 0.99  # weights averaged over about the last 100 steps: a fine-tune ends well whenever it stops
EXPORT_SHARE, EXPORT_MAX_S = 0.1, 60.0  # kept back from the budget for the voicing fit and the export
JUDGE_SHARE, JUDGE_MAX_S = 0.1, 180.0  # and, with --judge, for judging the voice on the held-out recordings
JUDGE_SKIP = {"vocoder", "griffin-lim", "robustness", "speed", "mcd"}  # the voice end to end and the recordings
MIN_RUN_SECONDS = 5.0  # a run with less left than this is done
HELD_OUT_FRACTION, MIN_HELD_OUT, MAX_HELD_OUT = 0.05, 2, 20  # recordings kept from training, for judging
MARKER = "adapt.json"  # in the work folder: what it adapts, so a resume is the same adaptation

# The trainer's settings for each run, over the task's cpu preset: the deadline ends it, a
# checkpoint every two minutes keeps it.
COMMON = ["warmup_steps=50", "decay=constant", f"ema={EMA_DECAY}", "eval_every=0", "eval_clips=2",
          "checkpoint_every=1000000", "checkpoint_minutes=2", "keep_checkpoints=1", "max_steps=1000000"]
SETTINGS = {"parallel": COMMON + ["lr=3e-4", "binarization_start=0"], "vocoder": COMMON + ["lr=2.5e-4"]}


class AdaptError(ValueError):
    """A user's adaptation cannot start as asked (its message is the one line to show)."""


@dataclass(frozen=True)
class Plan:
    """Where an adaptation reads and writes."""
    data: Path
    voice: Path  # the voice folder it writes
    base: Path  # the voice it starts from
    work: Path

    @property
    def corpus(self) -> Path:
        return self.work / "corpus"

    def run(self, task: str) -> Path:
        return self.work / task


def plan(data: str, to: str, base: str | None, work: str | None, replace: bool) -> Plan:
    """Check the folders before anything is written."""
    data_dir, voice = Path(data), Path(to)
    if not data_dir.is_dir():
        raise AdaptError(f"recordings folder not found: {data}")
    base_dir = BUNDLED_VOICE if base is None else Path(base)
    read_config(base_dir)  # VoiceError: one line naming what is wrong with it
    work_dir = voice.with_name(voice.name + ".adapt") if work is None else Path(work)
    marker = work_dir / MARKER
    before = json.loads(marker.read_text()) if marker.is_file() else None
    if voice.exists() and not replace and (before is None or before["voice"] != str(voice.resolve())):
        raise AdaptError(f"{voice} exists; pass --replace to write over it")
    if before is not None:
        if before["data"] != str(data_dir.resolve()) or before["base"] != str(base_dir.resolve()):
            raise AdaptError(f"{work_dir} holds the adaptation of {before['data']} from {before['base']}; "
                             f"remove it or pass another --work")
    elif work_dir.exists() and any(work_dir.iterdir()):
        raise AdaptError(f"{work_dir} exists and is not an adaptation's work folder; pass another --work")
    return Plan(data_dir, voice, base_dir, work_dir)


def trained_seconds(run_dir: Path) -> float:
    """Seconds a run has spent in its training steps so far (its log, which a resume cuts
    back to its checkpoint, so this is the time its weights hold)."""
    log = run_dir / "log.jsonl"
    if not log.is_file():
        return 0.0
    return sum(json.loads(line).get("seconds", 0.0) for line in log.read_text().splitlines() if line.strip())


def hold_out(corpus: Path) -> list[str]:
    """Move the last few clips of the corpus's metadata.csv into heldout.csv (once): recordings
    of the speaker no run trains on, for judging the voice. Returns their ids."""
    held = corpus / "heldout.csv"
    if held.is_file():
        return [line.split("|", 1)[0] for line in held.read_text(encoding="utf-8").splitlines() if line]
    lines = [line for line in (corpus / "metadata.csv").read_text(encoding="utf-8").splitlines() if line]
    n = min(MAX_HELD_OUT, max(MIN_HELD_OUT, round(len(lines) * HELD_OUT_FRACTION))) if len(lines) >= 5 * MIN_HELD_OUT else 0
    if n == 0:
        write_text_atomic(held, "")
        return []
    write_text_atomic(held, "\n".join(lines[-n:]) + "\n")
    write_text_atomic(corpus / "metadata.csv", "\n".join(lines[:-n]) + "\n")
    return [line.split("|", 1)[0] for line in lines[-n:]]


def train_stage(task_name: str, p: Plan, seconds: float) -> dict:
    """One run of the trainer on the corpus, from the base voice (or its own checkpoint),
    for ``seconds`` more of training; returns the trainer's last record."""
    from tts.train.config import PRESETS, resolve_config, with_voice_model
    from tts.train.tasks import get_task
    from tts.train.trainer import Trainer, latest_checkpoint

    task_cls = get_task(task_name)
    run_dir = p.run(task_name)
    resumed = latest_checkpoint(run_dir) is not None
    train_config, task_config = resolve_config(task_cls, None, [PRESETS / f"{task_name}-cpu.json"],
                                               SETTINGS[task_name])
    task = task_cls(with_voice_model(task_cls, task_config, p.base))
    task.name = task_name
    init = None if resumed else p.base
    return Trainer(task, train_config, p.corpus, run_dir, resume=True, init_voice=init,
                   deadline=time.monotonic() + seconds).fit()


def write_voice(p: Plan, report: dict) -> Path:
    """The voice folder, whole: the base voice's folder with every adapted model in it, the
    voicing detector refitted on the speaker's audio, and the card; written beside and moved
    into place, so that a stop leaves the previous folder (or none)."""
    from tts.audio import DEFAULT_AUDIO
    from tts.train.tasks.vocoder import fit_voicing_on_corpus
    from tts.train.trainer import export_run, latest_checkpoint

    staging = temporary_folder_beside(p.voice)
    shutil.copytree(p.base, staging, dirs_exist_ok=True)
    try:
        for task in ("parallel", "vocoder"):
            if latest_checkpoint(p.run(task)) is not None:
                export_run(p.run(task), staging)
        config = read_config(staging)
        if "voicing" in config["models"]:
            strength = load_model(staging, "voicing").config.strength
            save_model(staging, "voicing", fit_voicing_on_corpus(p.corpus, DEFAULT_AUDIO, strength), DEFAULT_AUDIO)
        (staging / "MODEL_CARD.md").write_text(card(p, report), encoding="utf-8")
        if p.voice.exists():
            old = temporary_folder_beside(p.voice)
            old.rmdir()
            p.voice.rename(old)
            staging.rename(p.voice)
            shutil.rmtree(old)
        else:
            staging.rename(p.voice)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return p.voice


def _judges_installed() -> bool:
    from tts.evaluate.judges import check_installed
    from tts.command import MissingExtraError

    try:
        check_installed(["wer", "dnsmos", "similarity"])
    except MissingExtraError:
        return False
    return True


def _evaluate(p: Plan, voice: Path) -> dict:
    """`tts.evaluate`'s report of ``voice`` beside the speaker's recordings on the held-out lines."""
    import torch

    from tts.evaluate.cli import evaluate, read_heldout
    from tts.synthesizer import Synthesizer

    clips = read_heldout(p.corpus, MAX_HELD_OUT)
    synth = Synthesizer.load(voice, device="cpu")
    try:
        return evaluate(synth, clips, JUDGE_SKIP, threads=torch.get_num_threads())
    except UsageError as e:  # no speech in the recordings that Resemblyzer can hear: judged without it
        print(f"adapt: warning: {e}", file=sys.stderr)
        return evaluate(synth, clips, JUDGE_SKIP | {"similarity"}, threads=torch.get_num_threads())


def judge(p: Plan, voice: Path) -> str:
    """Judge the voice on the held-out lines as `tts.evaluate` judges every voice (speaker
    similarity, Whisper's WER, DNSMOS OVRL). Where its WaveNet was adapted, judge it once more
    with the base voice's, and keep the WaveNet that loses fewer words: a short run can leave a
    WaveNet that has her voice but not yet her words. Returns the card's section."""
    from tts.audio import DEFAULT_AUDIO
    from tts.train.trainer import latest_checkpoint

    adapted = _evaluate(p, voice)
    rows = [(adapted, "teacher", "the speaker's recordings")]
    if latest_checkpoint(p.run("vocoder")) is None:
        kept, choice = None, "base"
        rows.append((adapted, "engine", f"adapted acoustic model, `{p.base.name}`'s WaveNet"))
        kept_line = f"`{p.base.name}`'s WaveNet (its WaveNet was not adapted)"
    else:
        base = temporary_folder_beside(p.voice)
        try:
            shutil.copytree(voice, base, dirs_exist_ok=True)
            save_model(base, "vocoder", load_model(p.base, "vocoder"), DEFAULT_AUDIO)
            kept = _evaluate(p, base)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        wer = {name: report["systems"]["engine"]["wer"] for name, report in (("adapted", adapted), ("base", kept))}
        choice = "base" if wer["base"] < wer["adapted"] else "adapted"
        if choice == "base":
            save_model(voice, "vocoder", load_model(p.base, "vocoder"), DEFAULT_AUDIO)
        rows += [(adapted, "engine", "adapted acoustic model and WaveNet"),
                 (kept, "engine", f"adapted acoustic model, `{p.base.name}`'s WaveNet")]
        kept_line = ("its adapted WaveNet" if choice == "adapted" else
                     f"`{p.base.name}`'s WaveNet: the adapted one lost more words")
    write_text_atomic(p.work / "judged.json", json.dumps({"adapted": adapted, "base": kept, "kept": choice},
                                                         indent=2, default=float))
    lines = []
    for report, name, label in rows:
        system = report["systems"][name]
        similarity = f"{system['similarity']:.3f}" if "similarity" in system else "n/a"
        lines.append(f"| {label} | {similarity} | {system['wer']:.3f} | {system['ovrl']:.2f} |")
    return (f"\n\n## Judged\n\nOn the {adapted['lines']} held-out recordings' lines (`python -m "
            f"tts.evaluate`): speaker similarity to the held-out recordings (Resemblyzer, each line's own left "
            f"out), Whisper tiny.en's word error rate, DNSMOS OVRL. The voice speaks with {kept_line}.\n\n"
            f"| | similarity | WER | OVRL |\n|---|---:|---:|---:|\n" + "\n".join(lines) + "\n")


def card(p: Plan, report: dict) -> str:
    """The voice card: where it came from, what it learned from, for how long."""
    rec = report["recordings"]
    rows = "\n".join(f"| {task} | {info['minutes']:.1f} | {info['steps']} |" for task, info in report["runs"].items())
    return f"""# Voice card: `{p.voice.name}`

A voice adapted from `{p.base.name}` to one speaker's recordings (`python -m tts.train adapt`).
English, one speaker, 16 kHz.

## Recordings

{rec['summary']} {rec['transcribed']} clips transcribed by Whisper, {rec['given']} with the speaker's
own transcript; {report['held_out']} clips held out of training, for judging the voice.

## Training

| model | minutes | steps |
|---|---:|---:|
{rows}

Each run starts from `{p.base.name}`'s weights, with a constant learning rate after warm-up and
the moving average of its weights (decay {EMA_DECAY}) exported. The voicing detector was
refitted on the speaker's audio.{report.get('judged', '')}
"""


class Clock:
    """Wall seconds an adaptation has spent in each of its phases, over all the commands that
    worked on it (``time.json`` in the work folder, written as each phase ends, however it
    ends). A phase killed outright is counted by what its run's log holds."""

    def __init__(self, work: Path):
        self.path = work / "time.json"
        self.spent: dict[str, float] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def __getitem__(self, phase: str) -> float:
        return self.spent.get(phase, 0.0)

    @contextlib.contextmanager
    def phase(self, name: str):
        start = time.monotonic()
        try:
            yield
        finally:
            self.spent[name] = self[name] + time.monotonic() - start
            write_text_atomic(self.path, json.dumps(self.spent, indent=2))


def adapt(args: argparse.Namespace) -> int:
    from tts.train.recordings import RecordingsError, prepare_recordings

    start = time.monotonic()
    p = plan(args.data, args.to, args.base, args.work, args.replace)
    p.work.mkdir(parents=True, exist_ok=True)
    write_text_atomic(p.work / MARKER, json.dumps({"data": str(p.data.resolve()), "voice": str(p.voice.resolve()),
                                                  "base": str(p.base.resolve())}, indent=2))
    clock = Clock(p.work)
    with clock.phase("recordings"):
        try:
            recordings = prepare_recordings(p.data, p.corpus, transcribe=args.transcribe, progress=True)
        except RecordingsError as e:
            raise AdaptError(str(e)) from None
    print(recordings.summary())
    held = hold_out(p.corpus)
    total = 60 * args.minutes
    judging = args.judge if args.judge is not None else _judges_installed()
    reserve = min(EXPORT_MAX_S, EXPORT_SHARE * total) + (min(JUDGE_MAX_S, JUDGE_SHARE * total) if judging else 0.0)
    training = total - reserve - clock["recordings"]
    shares = {"parallel": (1 - args.wavenet_share) * training, "vocoder": args.wavenet_share * training}
    spent = {task: max(clock[task], trained_seconds(p.run(task))) for task in SETTINGS}
    print(f"adapt: {max(0.0, training) / 60:.1f} minutes of training: the acoustic model "
          f"{max(0.0, shares['parallel']) / 60:.1f}, then the WaveNet {max(0.0, shares['vocoder']) / 60:.1f}"
          + (f" ({sum(spent.values()) / 60:.1f} spent before)" if any(spent.values()) else ""))
    runs, stopped = {}, False
    for task in SETTINGS:
        left = shares[task] - spent[task]
        if left >= MIN_RUN_SECONDS and not stopped:
            with clock.phase(task):
                stopped = train_stage(task, p, left)["stopped_by"] == "signal"
        steps = _steps(p.run(task))
        if steps:
            runs["acoustic model" if task == "parallel" else "WaveNet"] = {
                "minutes": trained_seconds(p.run(task)) / 60, "steps": steps}
    report = {"recordings": {**recordings.to_dict(), "summary": recordings.summary()},
              "held_out": len(held), "runs": runs}
    with clock.phase("export"):
        voice = write_voice(p, report)
    if judging and held:
        with clock.phase("judge"):
            report["judged"] = judge(p, voice)
        write_text_atomic(voice / "MODEL_CARD.md", card(p, report))
        print(report["judged"].strip())
    if stopped:
        print(f"adapt: stopped; wrote the voice so far to {voice}. The same command goes on.")
        return EXIT_INTERRUPTED
    print(f"adapt: wrote {voice} in {(time.monotonic() - start) / 60:.1f} minutes")
    return EXIT_OK


def _steps(run_dir: Path) -> int:
    log = run_dir / "log.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    return json.loads(lines[-1])["step"] if lines else 0


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m tts.train adapt",
                      description="Make a voice from a folder of one speaker's recordings.")
    p.add_argument("--data", required=True, help="folder of recordings (WAV, FLAC, MP3; any rate, channels, "
                   "length), with metadata.csv or a .txt beside each file, or none (Whisper transcribes)")
    p.add_argument("--to", required=True, help="voice folder to write")
    p.add_argument("--from", dest="base", metavar="VOICE", help="the voice to start from (default: the default voice)")
    p.add_argument("--minutes", type=_minutes, default=60.0, help="time for the whole command (default 60)")
    p.add_argument("--wavenet-share", type=_share, default=WAVENET_SHARE, metavar="FRACTION",
                   help=f"the WaveNet's share of the training minutes (default {WAVENET_SHARE}); 0 keeps the base "
                        "voice's WaveNet and trains the acoustic model for all of them")
    p.add_argument("--work", help="work folder: corpus, runs, checkpoints (default: VOICE.adapt)")
    p.add_argument("--replace", action="store_true", help="write over an existing voice folder")
    p.add_argument("--judge", action=argparse.BooleanOptionalAction, default=None,
                   help="judge the voice on the held-out recordings for its card (default: when the eval "
                        "extra is installed)")
    p.add_argument("--transcribe", action=argparse.BooleanOptionalAction, default=None,
                   help="transcribe recordings that have no transcript with Whisper (default: when needed)")
    return p


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected minutes, got {text!r}") from None
    if not 0.0 < value <= 24 * 60:
        raise argparse.ArgumentTypeError(f"--minutes must be more than 0 and at most 1440, got {text}")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction, got {text!r}") from None
    if not 0.0 <= value <= 0.9:
        raise argparse.ArgumentTypeError(f"--wavenet-share must be in [0, 0.9], got {text}")
    return value


def main(argv: list[str]) -> int:
    return adapt(parser().parse_args(argv))
