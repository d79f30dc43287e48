"""The task registry: a task name -> the class that trains that model, imported on first use
(so that ``python -m tts.train parallel`` never imports the g2p task's dependencies, or the reverse)."""

from __future__ import annotations

import importlib

from tts.train.task import Task

TASKS: dict[str, str] = {
    "g2p": "tts.train.tasks.g2p:G2PTask",
    "attention": "tts.train.tasks.attention:AttentionTask",
    "parallel": "tts.train.tasks.parallel:ParallelTask",
    "vocoder": "tts.train.tasks.vocoder:VocoderTask",
}


# Names tasks had before: runs stored under them still resume; a command line gets a hint.
RENAMED = {"acoustic": "attention"}


class UnknownTaskError(ValueError):
    """A task name that is not in the registry."""


def get_task(name: str) -> type[Task]:
    """The task class registered under ``name``."""
    if name in RENAMED:
        raise UnknownTaskError(f"the task {name!r} is now named {RENAMED[name]!r}")
    if name not in TASKS:
        raise UnknownTaskError(f"unknown task {name!r} (expected one of {', '.join(TASKS)})")
    module, _, attr = TASKS[name].partition(":")
    return getattr(importlib.import_module(module), attr)
