"""Command line of the trainer.

    python -m tts.train TASK --data DIR --out RUN_DIR [--preset cpu] [--config FILE.json]
                             [--set KEY=VALUE ...] [--init VOICE_DIR] [--resume | --no-resume]
    python -m tts.train TASK --print-config [--preset cpu] [...]   the settings, without --data or --out
    torchrun --nproc_per_node=N -m tts.train TASK ...        one process per GPU (or CPU worker)
    python -m tts.train adapt --data RECORDINGS --to VOICE_DIR [--minutes 60] [--from VOICE_DIR]
                                                      a voice from one speaker's recordings (train/adapt.py)
    python -m tts.train export RUN_DIR --to VOICE_DIR [--default-vocoder wavenet|griffin-lim] [--temperature T]
        [--wavenet-weights fp32|bf16]
                                      [--voicing STRENGTH --data CORPUS]

TASK is g2p, parallel (the acoustic model that ships), attention (the attention acoustic
model) or vocoder. Settings come from the task's defaults, then a preset
(``train/presets/TASK-NAME.json``: ``cpu`` sizes the schedule for a few CPU cores), then
--config, then every --set in order. A resumed run starts from its own settings instead of
the defaults and the preset: a preset named again is left out (a note says what it would
have changed), so that ``--resume --set max_steps=N`` keeps every other setting the run had. ``--init VOICE_DIR``
starts a new run from the task's model in a voice folder (its config and weights), so that
training continues from a shipped voice on a machine that has no checkpoint. Trainer settings are plain
names (``--set lr=3e-4 batch_size=32``), task settings too (``--set segment_frames=20``), and
the model's fields are ``model.NAME`` (``--set model.r=2``). ``--print-config`` shows them all.
``export --voicing STRENGTH --data CORPUS`` also fits the voice's voicing detector on the corpus's
audio, so that its WaveNet samples voiced frames more sharply (tts/vocoder/voicing.py).

Errors a user can cause end in one line on stderr and exit code 2 (tts.command).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from tts.train.adapt import AdaptError, main as adapt_main
from tts.train.data import DatasetError
from tts.train.tasks import RENAMED, TASKS, UnknownTaskError, get_task
from tts.train.config import PRESETS, ConfigError, config_dict, resolve_config, with_voice_model
from tts.train.trainer import RunDirError, Trainer, export_run, latest_checkpoint, load_checkpoint, stored_config
from tts.audio import DEFAULT_AUDIO, AudioFileError
from tts.command import EXIT_OK, OneLineParser, UsageError, run_command
from tts.voice import (DEFAULT_VOCODERS, VoiceError, save_model, set_default_vocoder, set_temperature,
                       set_wavenet_weights)
from tts.vocoder.choice import WEIGHT_FORMATS
from tts.train.tasks.vocoder import fit_voicing_on_corpus
from tts.vocoder.voicing import VoicingConfig
from tts.vocoder.wavenet import WaveNetConfig

USER_ERRORS = (ConfigError, RunDirError, UnknownTaskError, DatasetError, AudioFileError, VoiceError, AdaptError)


def presets(task: str) -> list[str]:
    return sorted(p.stem.split("-", 1)[1] for p in PRESETS.glob(f"{task}-*.json"))


def _train_parser(task: str) -> argparse.ArgumentParser:
    p = OneLineParser(prog=f"python -m tts.train {task}", description=f"Train the {task} model.")
    # Required for training only (checked in `train`): --print-config needs neither.
    p.add_argument("--data", help="dataset folder (LJ Speech layout for acoustic and vocoder)")
    p.add_argument("--out", help="run folder: checkpoints, logs, TensorBoard")
    p.add_argument("--preset", choices=presets(task), help="settings sized for a kind of machine "
                   "(train/presets/TASK-NAME.json)")
    p.add_argument("--config", help="JSON file of settings")
    p.add_argument("--init", metavar="VOICE_DIR", help="start a new run from this voice's weights")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override a setting (model fields as model.NAME)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue the run in --out if it has a checkpoint (default); "
                        "--no-resume refuses a folder that already holds a run")
    p.add_argument("--print-config", action="store_true", help="print the resolved settings and exit")
    return p


def _config_value(config_cls, field: str):
    """An argparse type for one field of a config dataclass, checked by the config itself as
    the arguments are parsed, so that a bad value writes nothing."""
    def parse(text: str) -> float:
        try:
            return getattr(config_cls(**{field: float(text)}), field)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


def _export_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m tts.train export", description="Write a run's model into a voice folder.")
    p.add_argument("run_dir")
    p.add_argument("--to", required=True, dest="voice_dir", help="voice folder to write (created if missing)")
    p.add_argument("--default-vocoder", choices=DEFAULT_VOCODERS,
                   help="what the voice speaks with by default (griffin-lim while its WaveNet is weaker)")
    p.add_argument("--temperature", type=_config_value(WaveNetConfig, "temperature"),
                   help="the WaveNet's sampling temperature in the voice (default: the run's)")
    p.add_argument("--wavenet-weights", choices=WEIGHT_FORMATS,
                   help="the precision the voice's WaveNet runs in where the kernel takes it (bf16: half "
                        "the weight stream, for a wide network; default: the voice's setting, else fp32)")
    p.add_argument("--voicing", type=_config_value(VoicingConfig, "strength"), metavar="STRENGTH",
                   help="fit a voicing detector on --data and sample voiced frames up to "
                        "1 + STRENGTH times more sharply (LPCNet: 1)")
    p.add_argument("--data", help="the corpus (LJ Speech layout) to fit --voicing on")
    p.add_argument("--alone", action="store_true",
                   help="write the run's model alone, not the other models of the voice it started from")
    return p


def _flat(settings: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in settings.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def _note_preset_left_out(task_cls, base: dict, preset, preset_name: str, run_dir) -> None:
    """One line on stderr (first process only) naming what --preset would have changed in a
    resumed run, which keeps its own settings."""
    def settings(*files) -> dict:
        train_config, task_config = resolve_config(task_cls, base, list(files))
        return _flat({**config_dict(train_config), **config_dict(task_config)})

    kept, preset_values = settings(), settings(preset)
    changes = [f"{key} {value} (the run: {kept[key]})" for key, value in preset_values.items() if kept.get(key) != value]
    if changes and int(os.environ.get("RANK", 0)) == 0:
        print(f"note: resuming {run_dir} with its own settings; --preset {preset_name} left out, which would have set "
              f"{', '.join(changes)} (--set changes a resumed run)", file=sys.stderr)


def train(argv: list[str]) -> int:
    name = argv[0]
    parser = _train_parser(name)
    args = parser.parse_args(argv[1:])
    missing = [flag for flag in ("--data", "--out") if getattr(args, flag[2:]) is None]
    if missing and not args.print_config:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    task_cls = get_task(name)
    base = None
    resume_from = latest_checkpoint(args.out) if args.resume and args.out is not None else None
    if resume_from is not None:
        stored_task, base = stored_config(load_checkpoint(resume_from, mmap=True))
        stored_task = RENAMED.get(stored_task, stored_task)
        if stored_task != name:
            raise RunDirError(f"{args.out} holds a {stored_task} run, not a {name} run")
    preset = PRESETS / f"{name}-{args.preset}.json" if args.preset else None
    if resume_from is not None and preset is not None:
        # A resumed run's settings already hold the preset it started with and the --set
        # values given then; laid over them again, a preset would quietly undo those.
        _note_preset_left_out(task_cls, base, preset, args.preset, args.out)
        preset = None
    train_config, task_config = resolve_config(task_cls, base, [preset, args.config], args.overrides)
    init = args.init if resume_from is None else None  # a resumed run has its own weights
    if init is not None:
        task_config = with_voice_model(task_cls, task_config, init, args.overrides)
    if args.print_config:
        print(json.dumps({"task": name, **config_dict(train_config), **config_dict(task_config)}, indent=2))
        return EXIT_OK
    if not os.path.isdir(args.data):
        raise ConfigError(f"data folder not found: {args.data}")
    task = task_cls(task_config)
    task.name = name
    record = Trainer(task, train_config, args.data, args.out, resume=args.resume, init_voice=init).fit()
    if int(os.environ.get("RANK", 0)) == 0:
        loss = "n/a" if record["loss"] is None else f"{record['loss']:.4f}"
        print(f"{name}: step {record['step']}, loss {loss}, skipped steps {record['skipped_total']}, "
              f"run in {args.out}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    def body() -> int:
        if argv and argv[0] in ("-h", "--help"):
            print(__doc__.strip())
            return EXIT_OK
        if not argv:
            raise UsageError(f"no task given (expected {', '.join(TASKS)} or export; -h for help)")
        if argv[0] == "adapt":
            return adapt_main(argv[1:])
        if argv[0] == "export":
            parser = _export_parser()
            args = parser.parse_args(argv[1:])
            if (args.voicing is None) != (args.data is None):
                parser.error("--voicing and --data go together")
            # Fitted before anything is written, so that a bad corpus leaves the voice as it was.
            voicing = None if args.voicing is None else \
                fit_voicing_on_corpus(args.data, DEFAULT_AUDIO, args.voicing)
            voice = export_run(args.run_dir, args.voice_dir, carry=not args.alone)
            if voicing is not None:
                save_model(voice, "voicing", voicing, DEFAULT_AUDIO)
            if args.default_vocoder:
                set_default_vocoder(voice, args.default_vocoder)
            if args.temperature is not None:
                set_temperature(voice, args.temperature)
            if args.wavenet_weights:
                set_wavenet_weights(voice, args.wavenet_weights)
            print(f"wrote {voice}")
            return EXIT_OK
        get_task(argv[0])  # an unknown or renamed task: one line with the hint
        return train(argv)

    return run_command("train", body, usage=USER_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
