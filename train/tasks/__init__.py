"""The task registry: a task name -> the class that trains that model, imported on first use
(so that ``python -m train acoustic`` never imports the g2p task's dependencies, or the reverse)."""

from __future__ import annotations

import importlib

from train.task import Task

TASKS: dict[str, str] = {
    "g2p": "train.tasks.g2p:G2PTask",
    "acoustic": "train.tasks.acoustic:AcousticTask",
    "parallel": "train.tasks.parallel:ParallelTask",
    "vocoder": "train.tasks.vocoder:VocoderTask",
}


class UnknownTaskError(ValueError):
    """A task name that is not in the registry."""


def get_task(name: str) -> type[Task]:
    """The task class registered under ``name``."""
    if name not in TASKS:
        raise UnknownTaskError(f"unknown task {name!r} (expected one of {', '.join(TASKS)})")
    module, _, attr = TASKS[name].partition(":")
    return getattr(importlib.import_module(module), attr)
