"""Training the attention acoustic model (tts/attention_model.py): phoneme ids -> mel, on an
LJ Speech-layout folder, with the features, split and batching of every text-to-mel task
(train/tasks/mel.py); batches are padded to a multiple of the reduction factor r.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch

from tts.train.tasks.mel import TextToMelTask, check_config, figure, held_out_losses, pyplot
from tts.attention_model import AttentionConfig, AttentionModel


@dataclass(frozen=True)
class AttentionTaskConfig:
    model: AttentionConfig = field(default_factory=AttentionConfig)
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
        check_config(self)


class AttentionTask(TextToMelTask):
    name = "attention"
    config_class = AttentionTaskConfig

    def __init__(self, config: AttentionTaskConfig = AttentionTaskConfig()):
        super().__init__(config)
        self.frames_multiple = config.model.r  # whole decoder steps

    def build_model(self) -> AttentionModel:
        return AttentionModel(self.config.model)

    def decoder_input(self, model: AttentionModel, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
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

    def loss(self, model: AttentionModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        out = model(batch["ids"], batch["id_lengths"], batch["mel"], batch["mel_lengths"],
                    decoder_input=self.decoder_input(model, batch))
        losses = model.loss(out, batch["mel"], batch["mel_lengths"], batch["id_lengths"], self.config.guided_weight)
        return losses["total"], {k: v.detach() for k, v in losses.items() if k != "total"}

    @torch.no_grad()
    def evaluate(self, model: AttentionModel, batches: Iterable[dict[str, torch.Tensor]], writer, step: int
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
            if writer is not None and pyplot() is not None:
                target = batch["mel"][0, :n_frames].cpu()
                writer.add_figure("eval/teacher_forced", figure(
                    out["alignment"][0, :steps, :n_ids].cpu(), out["mel_after"][0, :n_frames].cpu(), target,
                    "teacher-forced"), step)
                writer.add_figure("eval/generated", figure(
                    gen.alignment[0, :n_gen // model.config.r].cpu(), gen.mel[0, :n_gen].cpu(), target,
                    "generated"), step)
        return metrics
