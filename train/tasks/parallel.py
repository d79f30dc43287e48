"""Training the parallel acoustic model (tts/parallel_model.py) on an LJ Speech-layout folder.

The features, held-out split and batching of every text-to-mel task (train/tasks/mel.py);
the aligner trains with the model, so no alignments are prepared
beforehand. Its binarization loss is off for the first ``binarization_start`` steps, while the
soft alignment is still forming, then ramps in over as many steps again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from tts.train.data import DatasetError
from tts.train.tasks.mel import (MEL_KEYS, CachedClips, TextToMelTask, check_config, figure, held_out_losses,
                             open_cache, pyplot, split_clips)
from tts.parallel_model import ParallelConfig, ParallelModel


@dataclass(frozen=True)
class ParallelTaskConfig:
    model: ParallelConfig = field(default_factory=ParallelConfig)
    eval_clips: int = 8  # the corpus's last clips, held out
    binarization_start: int = 1000
    cache_dir: str = ""  # feature cache; "" puts it in the data folder's .cache
    # Leading/trailing audio quieter than this (dB below the peak) is cut; none: keep all.
    trim_db: float | None = 40.0

    def __post_init__(self):
        if self.binarization_start < 0:
            raise ValueError(f"binarization_start must be >= 0, got {self.binarization_start}")
        check_config(self)


class ParallelTask(TextToMelTask):
    name = "parallel"
    config_class = ParallelTaskConfig

    def __init__(self, config: ParallelTaskConfig = ParallelTaskConfig()):
        super().__init__(config)

    def build_model(self) -> ParallelModel:
        return ParallelModel(self.config.model)

    def datasets(self, data_dir: Path) -> tuple[CachedClips, CachedClips]:
        """Only clips with at least as many mel frames as symbols: the aligner gives every
        symbol a frame of its own."""
        cache = open_cache(data_dir, self.config.cache_dir, self.config.trim_db)
        train, held_out = split_clips(cache, self.config.eval_clips)
        fits = lambda i: cache.entries[i]["frames"] >= cache.entries[i]["n_ids"]  # noqa: E731
        train, held_out = [i for i in train if fits(i)], [i for i in held_out if fits(i)]
        if not train or not held_out:
            raise DatasetError(f"{data_dir}: no clip has as many mel frames as symbols")
        return CachedClips(cache, train, MEL_KEYS), CachedClips(cache, held_out, MEL_KEYS)

    def binarization_weight(self) -> float:
        start = self.config.binarization_start
        return 1.0 if start == 0 else float(np.clip((self.step - start) / start, 0.0, 1.0))

    def loss(self, model: ParallelModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        out = model(batch["ids"], batch["id_lengths"], batch["mel"], batch["mel_lengths"])
        losses = model.loss(out, batch["mel"], batch["mel_lengths"], batch["id_lengths"], self.binarization_weight())
        return losses["total"], {k: v.detach() for k, v in losses.items() if k != "total"}

    @torch.no_grad()
    def evaluate(self, model: ParallelModel, batches: Iterable[dict[str, torch.Tensor]], writer, step: int
                 ) -> dict[str, float]:
        """Held-out losses on the aligner's durations, the predicted durations' total against
        the truth, and for the first held-out clip: its alignment and mel, aligned and generated."""
        metrics, first = held_out_losses(model, batches)
        if first is not None:
            batch, out = first
            n_ids, n_frames = int(batch["id_lengths"][0]), int(batch["mel_lengths"][0])
            gen = model.generate(batch["ids"][:1, :n_ids])
            n_gen = int(gen.lengths[0])
            metrics["generated_frames_ratio"] = n_gen / n_frames
            if writer is not None and pyplot() is not None:
                target = batch["mel"][0, :n_frames].cpu()
                writer.add_figure("eval/aligned", figure(
                    out["alignment"][0, :n_frames, :n_ids].cpu(), out["mel"][0, :n_frames].cpu(), target,
                    "aligner"), step)
                writer.add_figure("eval/generated", figure(
                    gen.alignment[0, :n_gen].cpu(), gen.mel[0, :n_gen].cpu(), target, "generated"), step)
        return metrics
