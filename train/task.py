"""What a model brings to the trainer: a small task object. The loop lives in train/trainer.py.

A task is constructed from its config alone, ``Task(config)``, where ``config`` is an instance
of the task's ``config_class``: a frozen dataclass whose fields all have defaults (a nested
model config such as ``model: AttentionConfig`` is addressed as ``model.r`` on the command
line). Its field names must not repeat the trainer's own (``TrainConfig``: ``lr``,
``batch_size``, ...), because both are set through the same ``--set key=value`` namespace.

The trainer calls, in this order::

    task.prepare(data_dir)                 rank 0 only, before the others start (e.g. feature caches)
    train, eval = task.datasets(data_dir)  every rank
    task.lengths(train)                    for length-bucketed batching
    model = task.build_model()             every rank, after seeding: identical initial weights
    task.init_from(model, voice_model)     every rank, for a run started from a voice (--init)
    task.from_voice(voice_dir)             then, what else it takes from that voice
    DataLoader(train, collate_fn=task.collate, ...)
    task.step = n                          before each optimizer step: steps taken so far
    loss, scalars = task.loss(model, batch)     every micro-step, under autocast on GPU
    task.units(batch)                      throughput counting
    task.evaluate(model, eval_batches, writer, step)   rank 0, model in eval mode, no grad
    task.export(model, voice_dir)          ``python -m tts.train export``

A dataset may define ``set_epoch(epoch, seed)``: the trainer calls it with each item's epoch
before the item is made, so random choices (crops) can be drawn from (seed, epoch, index)
alone, which keeps resuming exact and makes them independent of DataLoader workers.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Iterable

import torch


class Task:
    """One trainable model of the engine (``g2p``, ``parallel``, ``attention``, ``vocoder``).

    The trainer owns distribution, the optimizer, schedules, checkpoints and logging; a task
    says only what differs between models. ``config`` is the task's frozen dataclass of
    model and data settings (every field overridable with ``--set``).
    """

    name: str
    # The model's name in a voice folder (tts/voice.py), where it differs from the task's.
    voice_model: str = ""
    # The frozen dataclass this task is configured with. When a subclass leaves it unset, the
    # type annotation of its __init__'s ``config`` parameter is used (see ``config_class_of``).
    config_class: type | None = None
    # Trainer settings that suit this model better than TrainConfig's defaults, e.g.
    # {"batch_size": 8, "ema": 0.9999}; the command line still overrides them.
    train_defaults: dict[str, Any] = {}
    # What `units` counts, for throughput: "items" unless a task knows better (frames, samples).
    unit: str = "items"
    # Whether some parameters can get no gradient from the loss; DistributedDataParallel must
    # then search the graph for them every step, which costs a little.
    find_unused_parameters: bool = False
    # The optimizer steps taken before the current one; the trainer sets it before each step,
    # for losses whose weights change over training.
    step: int = 0

    def __init__(self, config: Any):
        self.config = config

    def prepare(self, data_dir: Path) -> None:
        """One-time work on the data folder before training (rank 0 only; the other ranks wait).
        Computing feature caches here keeps ranks from building the same cache at once."""

    def build_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def datasets(self, data_dir: Path) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
        """(train, eval) datasets from a data folder; eval is held out."""
        raise NotImplementedError

    def lengths(self, dataset) -> list[int]:
        """One length per item, for length-bucketed batching."""
        raise NotImplementedError

    def collate(self, items: list) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        """(scalar loss to minimize, named scalars to log: floats or 0-dim tensors).

        ``model`` is always the plain model (never the DistributedDataParallel wrapper: the
        trainer routes this whole call through DDP), so calling any of its methods is fine.
        The loss should be a mean over the batch's items (or frames): DDP averages it over
        ranks, which equals the single-process loss of the global batch when every rank's
        share weighs the same."""
        raise NotImplementedError

    def units(self, batch: dict[str, torch.Tensor]) -> int:
        """How many `unit`s a batch holds (for throughput); by default its number of items."""
        first = next(iter(batch.values()))
        return int(first.shape[0])

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]], writer,
                 step: int) -> dict[str, float]:
        """Rank 0 only: metrics (and plots/audio to the TensorBoard writer, when not None) on
        held-out data. ``model`` is the plain model (the EMA copy when there is one), in eval
        mode; ``batches`` are collated held-out batches, on CPU."""
        raise NotImplementedError

    def init_from(self, model: torch.nn.Module, source: torch.nn.Module) -> None:
        """Start ``model`` from a voice's model (``--init``): by default the same network,
        weight for weight. A task may grow a network here (new parts start as the task says)."""
        from tts.voice import VoiceError

        if source.config != model.config:
            raise VoiceError(f"the voice's {self.voice_model or self.name} model has another config than this run's")
        model.load_state_dict(source.state_dict(), strict=True)

    def from_voice(self, voice_dir: Path) -> None:
        """Take what the task needs from the voice a run starts from, besides its model's
        weights (which the trainer loads): e.g. the vocoder's evaluation samples as that voice
        does. Nothing by default."""

    def export(self, model: torch.nn.Module, voice_dir: Path) -> None:
        """Write the weights-only model into a voice folder (see tts/voice.py)."""
        raise NotImplementedError


def config_class_of(task_cls: type[Task]) -> type:
    """The config dataclass of a task class: ``config_class``, else the annotation of the
    ``config`` parameter of its ``__init__``."""
    if task_cls.config_class is not None:
        return task_cls.config_class
    hints = typing.get_type_hints(task_cls.__init__)
    cls = hints.get("config")
    if not isinstance(cls, type) or not hasattr(cls, "__dataclass_fields__"):
        raise TypeError(f"{task_cls.__name__} names no config dataclass: set its config_class")
    return cls
