"""Training the acoustic model (tts/model.py): phoneme ids -> mel, on an LJ Speech-layout folder.

Features come from `FeatureCache` (computed once, by rank 0, in ``prepare``). The last
``eval_clips`` clips of the corpus are held out for evaluation. Batches are length-bucketed
by mel frames and padded to a multiple of the reduction factor r.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from train.data import DatasetError, FeatureCache, collate_text_mel
from train.task import Task
from tts.audio import DEFAULT_AUDIO
from tts.model import AcousticConfig, AcousticModel
from tts.voice import save_model

MEL_KEYS = ("ids", "mel")


@dataclass(frozen=True)
class AcousticTaskConfig:
    model: AcousticConfig = field(default_factory=AcousticConfig)
    eval_clips: int = 8  # the corpus's last clips, held out
    guided_weight: float = 1.0  # weight of the guided-attention loss in the total
    # Against exposure bias (at inference the decoder reads its own frames, not the truth):
    # this fraction of decoder steps reads the model's own prediction of the frames (from a
    # first, gradient-free teacher-forced pass: parallel scheduled sampling), and every
    # decoder input gets Gaussian noise of this standard deviation.
    self_feed: float = 0.0
    input_noise: float = 0.0
    cache_dir: str = ""  # feature cache; "" puts it in the data folder's .cache
    # Leading/trailing audio quieter than this (dB below the peak) is cut; none: keep all.
    trim_db: float | None = 40.0

    def __post_init__(self):
        if not 0.0 <= self.self_feed <= 1.0:
            raise ValueError(f"self_feed must be in [0, 1], got {self.self_feed}")
        if self.input_noise < 0:
            raise ValueError(f"input_noise must be >= 0, got {self.input_noise}")
        if self.eval_clips < 1:
            raise ValueError(f"eval_clips must be >= 1, got {self.eval_clips}")
        if self.model.n_mels != DEFAULT_AUDIO.n_mels:
            raise ValueError(f"model.n_mels must be {DEFAULT_AUDIO.n_mels} (the audio config's), "
                             f"got {self.model.n_mels}")


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


class AcousticTask(Task):
    name = "acoustic"
    config_class = AcousticTaskConfig
    # Deep Voice 3's schedule: warm-up, then inverse square-root decay.
    train_defaults = {"batch_size": 16, "lr": 1e-3, "warmup_steps": 1000, "decay": "inverse_sqrt",
                      "max_steps": 200_000, "grad_clip": 1.0, "eval_every": 2000, "checkpoint_every": 2000}
    unit = "frames"

    def __init__(self, config: AcousticTaskConfig = AcousticTaskConfig()):
        super().__init__(config)

    def prepare(self, data_dir: Path) -> None:
        build_cache(data_dir, self.config.cache_dir, self.config.trim_db)

    def build_model(self) -> AcousticModel:
        return AcousticModel(self.config.model)

    def datasets(self, data_dir: Path) -> tuple[CachedClips, CachedClips]:
        cache = open_cache(data_dir, self.config.cache_dir, self.config.trim_db)
        train, held_out = split_clips(cache, self.config.eval_clips)
        return CachedClips(cache, train, MEL_KEYS), CachedClips(cache, held_out, MEL_KEYS)

    def lengths(self, dataset: CachedClips) -> list[int]:
        return [dataset.entry(i)["frames"] for i in range(len(dataset))]

    def collate(self, items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        return collate_text_mel(items, multiple_of=self.config.model.r)

    def units(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["mel_lengths"].sum())

    def decoder_input(self, model: AcousticModel, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """What the decoder reads in training: the true frames, some steps replaced by the
        model's own predictions and all of them noised, per the config (None: the truth)."""
        c, mel = self.config, batch["mel"]
        if c.self_feed == 0 and c.input_noise == 0:
            return None
        feed = mel
        if c.self_feed > 0:
            with torch.no_grad():
                own = model(batch["ids"], batch["id_lengths"], mel, batch["mel_lengths"])["mel_before"]
            r = model.config.r
            B, T, _ = mel.shape
            steps = torch.rand(B, -(-T // r), 1, device=mel.device) < c.self_feed  # (B, S, 1)
            pick = steps.repeat_interleave(r, dim=1)[:, :T]  # (B, T, 1)
            feed = torch.where(pick, own.to(mel.dtype), mel)
        if c.input_noise > 0:
            feed = (feed + c.input_noise * torch.randn_like(feed)).clamp(0.0, 1.0)
        return feed

    def loss(self, model: AcousticModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        out = model(batch["ids"], batch["id_lengths"], batch["mel"], batch["mel_lengths"],
                    decoder_input=self.decoder_input(model, batch))
        losses = model.loss(out, batch["mel"], batch["mel_lengths"], batch["id_lengths"], self.config.guided_weight)
        return losses["total"], {k: v.detach() for k, v in losses.items() if k != "total"}

    @torch.no_grad()
    def evaluate(self, model: AcousticModel, batches: Iterable[dict[str, torch.Tensor]], writer, step: int
                 ) -> dict[str, float]:
        """Held-out losses (teacher-forced), and for the first held-out clip: attention and mel
        plots, teacher-forced and free-running."""
        metrics, first = held_out_losses(model, batches, guided_weight=self.config.guided_weight)
        if first is not None:
            batch, out = first
            n_ids, n_frames = int(batch["id_lengths"][0]), int(batch["mel_lengths"][0])
            steps = -(-n_frames // model.config.r)
            # Free-running, capped at twice the true length: an untrained model may never stop.
            gen = model.generate(batch["ids"][:1, :n_ids], max_steps=2 * steps + 1)
            n_gen = int(gen.lengths[0])
            metrics["generated_frames_ratio"] = n_gen / n_frames
            if writer is not None and _pyplot() is not None:
                target = batch["mel"][0, :n_frames].cpu()
                writer.add_figure("eval/teacher_forced", _figure(
                    out["alignment"][0, :steps, :n_ids].cpu(), out["mel_after"][0, :n_frames].cpu(), target,
                    "teacher-forced"), step)
                writer.add_figure("eval/generated", _figure(
                    gen.alignment[0, :n_gen // model.config.r].cpu(), gen.mel[0, :n_gen].cpu(), target,
                    "generated"), step)
        return metrics

    def export(self, model: AcousticModel, voice_dir: Path) -> None:
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
def _pyplot():
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


def _figure(alignment: torch.Tensor, mel: torch.Tensor, target: torch.Tensor, title: str):
    """Alignment (S, N) over predicted and target mels (T, n_mels), stacked vertically."""
    fig, axes = _pyplot().subplots(3, 1, figsize=(8, 9))
    axes[0].imshow(alignment.T.numpy(), aspect="auto", origin="lower", interpolation="none")
    axes[0].set(title=f"{title}: attention", xlabel="decoder step", ylabel="symbol")
    for ax, m, name in ((axes[1], mel, "predicted"), (axes[2], target, "target")):
        ax.imshow(m.T.numpy(), aspect="auto", origin="lower", interpolation="none", vmin=0, vmax=1)
        ax.set(title=f"{name} mel", xlabel="frame", ylabel="mel band")
    fig.tight_layout()
    return fig
