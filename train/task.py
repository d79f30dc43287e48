"""What a model brings to the trainer: a small task object. The loop lives in train/trainer.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch


class Task:
    """One trainable model of the engine (``g2p``, ``acoustic``, ``vocoder``).

    The trainer owns distribution, the optimizer, schedules, checkpoints and logging; a task
    says only what differs between models. ``config`` is the task's frozen dataclass of
    model and data settings (every field overridable with ``--set``).
    """

    name: str

    def __init__(self, config: Any):
        self.config = config

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

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """(scalar loss to minimize, named scalars to log)."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]], writer, step: int) -> dict[str, float]:
        """Rank 0 only: metrics (and plots/audio to the TensorBoard writer) on held-out data."""
        raise NotImplementedError

    def export(self, model: torch.nn.Module, voice_dir: Path) -> None:
        """Write the weights-only model into a voice folder (see tts/voice.py)."""
        raise NotImplementedError
