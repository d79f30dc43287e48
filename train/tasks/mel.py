"""What the tasks that learn text -> mel share: the feature cache, the held-out split, the
held-out losses and the evaluation's pictures, and `TextToMelTask`, their common base.

Features come from `FeatureCache` (computed once, by rank 0, in ``prepare``). The last
``eval_clips`` clips of the corpus are held out for evaluation. Batches are length-bucketed
by mel frames.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from tts.train.data import DatasetError, FeatureCache, collate_text_mel
from tts.train.task import Task
from tts.audio import DEFAULT_AUDIO
from tts.voice import save_model

MEL_KEYS = ("ids", "mel")


def check_config(config) -> None:
    """What every text-to-mel task's config must hold: a held-out clip, and the mel of the
    audio config."""
    if config.eval_clips < 1:
        raise ValueError(f"eval_clips must be >= 1, got {config.eval_clips}")
    if config.model.n_mels != DEFAULT_AUDIO.n_mels:
        raise ValueError(f"model.n_mels must be {DEFAULT_AUDIO.n_mels} (the audio config's), "
                         f"got {config.model.n_mels}")


class CachedClips(torch.utils.data.Dataset):
    """Some clips of a feature cache, each read with only the given arrays."""

    def __init__(self, cache: FeatureCache, indices: list[int], keys: tuple[str, ...]):
        self.cache, self.indices, self.keys = cache, indices, keys

    def __len__(self) -> int:
        return len(self.indices)

    def entry(self, i: int) -> dict[str, Any]:
        return self.cache.entries[self.indices[i]]

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        with np.load(self.cache.dir / f"{self.entry(i)['id']}.npz", allow_pickle=False) as f:
            return {k: f[k] for k in self.keys}


def open_cache(data_dir: Path, cache_dir: str, trim_db: float | None) -> FeatureCache:
    return FeatureCache(data_dir, cache_dir or None, DEFAULT_AUDIO, trim_db)


def split_clips(cache: FeatureCache, eval_clips: int) -> tuple[list[int], list[int]]:
    """(train, eval) indices: the last ``eval_clips`` clips are held out."""
    if not cache.built:
        raise DatasetError(f"no feature cache in {cache.dir}: it is built by the task's prepare()")
    if len(cache) <= eval_clips:
        raise DatasetError(f"{cache.root} has {len(cache)} usable clips; at least {eval_clips + 1} are needed "
                           f"to hold out eval_clips={eval_clips}")
    n = len(cache) - eval_clips
    return list(range(n)), list(range(n, len(cache)))


def build_cache(data_dir: Path, cache_dir: str, trim_db: float | None) -> None:
    cache = open_cache(data_dir, cache_dir, trim_db)
    if not cache.built:
        cache.build(workers=min(8, os.cpu_count() or 1))


class TextToMelTask(Task):
    """A task whose model makes a voice's acoustic model: symbol ids -> mel (either kind)."""

    voice_model = "acoustic"  # a voice has one acoustic model, of either kind
    unit = "frames"
    # Deep Voice 3's schedule: warm-up, then inverse square-root decay.
    train_defaults = {"batch_size": 16, "lr": 1e-3, "warmup_steps": 1000, "decay": "inverse_sqrt",
                      "max_steps": 200_000, "grad_clip": 1.0, "eval_every": 2000, "checkpoint_every": 2000}
    frames_multiple = 1  # batches pad the mel to a multiple of this many frames

    def prepare(self, data_dir: Path) -> None:
        build_cache(data_dir, self.config.cache_dir, self.config.trim_db)

    def datasets(self, data_dir: Path) -> tuple[CachedClips, CachedClips]:
        cache = open_cache(data_dir, self.config.cache_dir, self.config.trim_db)
        train, held_out = split_clips(cache, self.config.eval_clips)
        return CachedClips(cache, train, MEL_KEYS), CachedClips(cache, held_out, MEL_KEYS)

    def lengths(self, dataset: CachedClips) -> list[int]:
        return [dataset.entry(i)["frames"] for i in range(len(dataset))]

    def collate(self, items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        return collate_text_mel(items, multiple_of=self.frames_multiple)

    def units(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["mel_lengths"].sum())

    def export(self, model, voice_dir: Path) -> None:
        save_model(voice_dir, "acoustic", model, DEFAULT_AUDIO)


def held_out_losses(model, batches: Iterable[dict[str, torch.Tensor]], **loss_options
                    ) -> tuple[dict[str, float], tuple[dict, dict] | None]:
    """The model's losses on held-out batches, averaged over clips (``loss`` for the total,
    ``loss_NAME`` for the rest), and the first batch with its outputs (None when empty)."""
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    count, first = 0, None
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(batch["ids"], batch["id_lengths"], batch["mel"], batch["mel_lengths"])
        losses = model.loss(out, batch["mel"], batch["mel_lengths"], batch["id_lengths"], **loss_options)
        n = len(batch["ids"])
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v) * n
        count += n
        if first is None:
            first = (batch, out)
    return {f"loss_{k}" if k != "total" else "loss": v / max(count, 1) for k, v in sums.items()}, first


@functools.cache
def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or None (and one warning) without it."""
    try:
        import matplotlib
    except ImportError:
        warnings.warn("matplotlib is not installed: evaluation runs without attention and mel plots "
                      "(pip install matplotlib)", stacklevel=2)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(alignment: torch.Tensor, mel: torch.Tensor, target: torch.Tensor, title: str):
    """Alignment (S, N) over predicted and target mels (T, n_mels), stacked vertically."""
    fig, axes = pyplot().subplots(3, 1, figsize=(8, 9))
    axes[0].imshow(alignment.T.numpy(), aspect="auto", origin="lower", interpolation="none")
    axes[0].set(title=f"{title}: attention", xlabel="decoder step", ylabel="symbol")
    for ax, m, name in ((axes[1], mel, "predicted"), (axes[2], target, "target")):
        ax.imshow(m.T.numpy(), aspect="auto", origin="lower", interpolation="none", vmin=0, vmax=1)
        ax.set(title=f"{name} mel", xlabel="frame", ylabel="mel band")
    fig.tight_layout()
    return fig
