"""Training settings: the trainer's own (`TrainConfig`) and each task's, from defaults, a JSON
file and ``--set key=value`` overrides, in one namespace (``lr``, ``segment_frames``,
``model.r``)."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tts.train.precision import FORMATS
from tts.train.task import Task, config_class_of


PRESETS = Path(__file__).resolve().parent / "presets"  # TASK-NAME.json: settings sized for a kind of machine


class ConfigError(ValueError):
    """A setting that does not exist or has a value of the wrong type or range."""


@dataclass(frozen=True)
class TrainConfig:
    """Trainer settings, common to every task. Tasks adjust the defaults (Task.train_defaults)."""

    max_steps: int = 100_000
    batch_size: int = 16  # global: items per optimizer step, summed over ranks and micro-steps
    accumulation_steps: int = 1
    lr: float = 1e-3  # peak learning rate, reached at the end of warm-up
    min_lr: float = 1e-5  # cosine decays to this
    warmup_steps: int = 1000
    decay: str = "cosine"  # cosine | inverse_sqrt | constant
    decay_steps: int = 0  # where cosine reaches min_lr; 0: at max_steps
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    grad_clip: float = 1.0  # max global gradient norm; 0: no clipping
    ema: float = 0.0  # decay of the weights' moving average; 0: none
    eval_every: int = 1000  # 0: never
    checkpoint_every: int = 1000
    # Also checkpoint once this many minutes have passed since the last one (rank 0's clock
    # decides, for every rank alike): on a machine lent for minutes, steps are no measure.
    # 0: by steps only.
    checkpoint_minutes: float = 0.0
    keep_checkpoints: int = 3
    num_workers: int = 2  # DataLoader worker processes per rank
    bucket_batches: int = 32  # global batches sorted together by length
    seed: int = 1234
    device: str = "auto"  # auto (the local GPU when there is one) | cpu | cuda
    bf16: bool = True  # autocast to bfloat16 on GPUs that support it
    # On the CPU: fp32, bf16 (autocast), or auto: whichever one probe step of the task measures
    # faster on this CPU (train/precision.py). bf16 pays where the cores have bf16 arithmetic
    # (AVX-512 BF16, AMX) and costs several times over where they only emulate it (AVX2).
    cpu_format: str = "auto"
    compile: bool = False  # torch.compile the task's forward and loss (fixed-shape tasks gain most)

    def __post_init__(self):
        for name in ("max_steps", "batch_size", "accumulation_steps", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "decay_steps", "eval_every", "num_workers", "weight_decay", "grad_clip",
                     "min_lr", "checkpoint_minutes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.adam_eps <= 0:
            raise ConfigError(f"adam_eps must be > 0, got {self.adam_eps}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.bucket_batches < 1:
            raise ConfigError(f"bucket_batches must be >= 1, got {self.bucket_batches}")
        if self.decay not in ("cosine", "inverse_sqrt", "constant"):
            raise ConfigError(f"decay must be cosine, inverse_sqrt or constant, got {self.decay!r}")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"ema must be in [0, 1), got {self.ema}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"betas must be in [0, 1), got {self.betas}")
        if self.cpu_format not in FORMATS:
            raise ConfigError(f"cpu_format must be {', '.join(FORMATS)}, got {self.cpu_format!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.batch_size % self.accumulation_steps:
            raise ConfigError(f"batch_size {self.batch_size} is not divisible by "
                              f"accumulation_steps {self.accumulation_steps}")


def _is_config(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert(value: Any, tp, key: str) -> Any:
    """A value from --set (a string) or from a JSON file, as the field type ``tp`` wants it."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bad = ConfigError(f"{key}: expected {getattr(tp, '__name__', str(tp))}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
            raise bad
        for arg in (a for a in args if a is not type(None)):
            with contextlib.suppress(ConfigError):
                return _convert(value, arg, key)
        raise bad
    if origin is typing.Literal:
        for allowed in args:
            if value == allowed or (isinstance(value, str) and str(allowed) == value):
                return allowed
        raise ConfigError(f"{key}: expected one of {', '.join(map(str, args))}, got {value!r}")
    if _is_config(tp):
        raise ConfigError(f"{key} is a group of settings: set its fields as {key}.FIELD=VALUE")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise bad
    if tp in (int, float):
        if isinstance(value, str):
            try:
                return tp(value)
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, (int, float) if tp is float else int):
            raise bad
        return tp(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    if origin is tuple:
        if isinstance(value, str):
            text = value.strip().strip("()[]").strip()
            value = [v.strip() for v in text.split(",") if v.strip()] if text else []
        if not isinstance(value, (list, tuple)):
            raise bad
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} comma-separated values, got {value!r}")
        return tuple(_convert(v, a, key) for v, a in zip(value, args))
    raise ConfigError(f"{key}: settings of type {tp} cannot be set")


def _unknown(key: str, known) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return ConfigError(f"unknown setting {key!r}{hint}")


def build_config(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """An instance of the config dataclass ``cls`` from a (possibly nested, partial) dict;
    missing fields keep their defaults, unknown ones are an error."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise _unknown(prefix + key, [prefix + n for n in names])
        tp = hints[key]
        if _is_config(tp):
            if dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{key} is a group of settings, expected an object, got {value!r}")
            kwargs[key] = build_config(tp, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _convert(value, tp, prefix + key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from None


def config_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON-able data (tuples become lists)."""
    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain(dataclasses.asdict(config))


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _upgraded(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as stored by an earlier version, in today's names: the boolean ``cpu_bf16``
    became ``cpu_format``, so runs and files from before still resume and load."""
    settings = dict(settings)
    if "cpu_bf16" in settings:
        legacy = settings.pop("cpu_bf16")
        settings.setdefault("cpu_format", "bf16" if legacy in (True, "true") else "fp32")
    return settings


def resolve_config(task_cls: type[Task], base: dict[str, Any] | None = None,
                   file: str | os.PathLike | list | None = None,
                   overrides: list[str] = ()) -> tuple[TrainConfig, Any]:
    """(TrainConfig, task config) from defaults (or ``base``, a stored run's merged settings),
    then JSON files (one, or a list applied in order), then ``key=value`` overrides.

    Trainer and task settings share one namespace: ``lr``, ``batch_size``, ... are the
    trainer's, every other top-level key is the task's, and ``model.r`` sets field ``r`` of
    the task's nested ``model`` config. A JSON file uses the same names, nested as objects.
    """
    task_cls_config = config_class_of(task_cls)
    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    clash = train_names & {f.name for f in dataclasses.fields(task_cls_config)}
    if clash:
        raise TypeError(f"{task_cls_config.__name__} repeats trainer settings: {', '.join(sorted(clash))}")
    if base is None:
        base = {**config_dict(build_config(TrainConfig, dict(task_cls.train_defaults))),
                **config_dict(task_cls_config())}
    merged = _upgraded(base)
    for path in [Path(f) for f in (file if isinstance(file, (list, tuple)) else [file]) if f is not None]:
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a JSON object of settings")
        loaded.pop("task", None)  # a copied RUN_DIR/config.json names its task
        merged = _deep_merge(merged, _upgraded(loaded))
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        *groups, leaf = key.split(".")
        cls, node = (TrainConfig if key.split(".")[0] in train_names else task_cls_config), merged
        for i, group in enumerate(groups):
            hints = typing.get_type_hints(cls)
            if group not in hints:
                raise _unknown(".".join(groups[:i + 1]), [f.name for f in dataclasses.fields(cls)])
            if not _is_config(hints[group]):
                raise ConfigError(f"{'.'.join(groups[:i + 1])} is a single setting, not a group")
            cls = hints[group]
            node[group] = dict(node.get(group) or {})
            node = node[group]
        hints = typing.get_type_hints(cls)
        if leaf not in hints:
            known = train_names | {f.name for f in dataclasses.fields(task_cls_config)} if not groups else hints
            raise _unknown(key, [".".join(groups + [n]) for n in known])
        node[leaf] = _convert(text, hints[leaf], key)
    train = build_config(TrainConfig, {k: v for k, v in merged.items() if k in train_names})
    task = build_config(task_cls_config, {k: v for k, v in merged.items() if k not in train_names})
    return train, task


def with_voice_model(task_cls: type[Task], task_config: Any, voice_dir: str | os.PathLike,
                     overrides: list[str] = ()) -> Any:
    """``task_config`` with the model of the task in a voice folder: the voice's config fixes
    the shapes and replaces the task's model settings, except those named in ``overrides``
    (``model.NAME=...``: a network the task grows from it, e.g. ``model.lpc_inputs=true``;
    `Task.init_from` says which it can)."""
    from tts.voice import load_model

    voice_config = load_model(voice_dir, task_cls.voice_model or task_cls.name).config
    if type(voice_config) is not type(task_config.model):
        raise ConfigError(f"{voice_dir} holds a {type(voice_config).__name__} model; the {task_cls.name} task "
                          f"trains a {type(task_config.model).__name__}")
    asked = {key.partition("=")[0].removeprefix("model.") for key in overrides if key.startswith("model.")}
    return dataclasses.replace(task_config, model=dataclasses.replace(
        voice_config, **{field: getattr(task_config.model, field) for field in asked}))
