"""The acoustic model of a voice: symbol ids and a speaking rate in, mel frames out, with
which symbol each frame says. Two kinds implement it:

    parallel   tts/parallel_model.py: predicts each symbol's duration, then every frame at
               once (the kind that ships)
    attention  tts/attention_model.py: Deep Voice 3's attention decoder, frame by frame

A voice folder names its model's kind (`tts.voice`); this registry builds it.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

import torch
import torch.nn as nn

# Kind -> "module:class"; a voice folder without a kind is from before the parallel model.
KINDS = {
    "parallel": "tts.parallel_model:ParallelModel",
    "attention": "tts.attention_model:AttentionModel",
}
LEGACY_KIND = "attention"


class Speech(NamedTuple):
    """What an acoustic model says for a batch of symbol ids."""

    mel: torch.Tensor  # (B, T, n_mels) in [0, 1], zero past each utterance's length
    lengths: torch.Tensor  # (B,) int64 frames per utterance
    alignment: torch.Tensor  # (B, T, N): which symbols frame t says (one-hot for durations), zero past the end


class AcousticModel(nn.Module):
    """Symbol ids in, mel out: the contract both kinds keep (`speak`); training is their own."""

    kind: str = ""  # its name in KINDS
    config = None  # its frozen config dataclass, stored next to the weights

    def speak(self, text_ids: torch.Tensor, text_lengths: torch.Tensor | None = None, rate: float = 1.0
              ) -> Speech:
        """Text ids (B, N) -> `Speech`. ``rate`` > 1 speaks faster: every symbol, pauses
        included, takes 1 / rate of its time, at the same pitch. Call `eval()` first."""
        raise NotImplementedError

    @torch.no_grad()
    def speak_one(self, ids, rate: float = 1.0):
        """One utterance's symbol ids (N,) -> (mel (frames, n_mels), alignment (frames, N)) as
        float32 numpy arrays: the interface the synthesizer speaks through, which
        `tts.inference.ParallelSpeaker` shares."""
        device = next(self.parameters()).device
        speech = self.speak(torch.as_tensor([list(ids)], dtype=torch.long, device=device), rate=rate)
        frames = int(speech.lengths[0])
        return (speech.mel[0, :frames].float().cpu().numpy(),
                speech.alignment[0, :frames].float().cpu().numpy())


def model_classes(kind: str | None) -> tuple[type[AcousticModel], type]:
    """(model class, config class) of an acoustic model kind (None: LEGACY_KIND). KeyError
    for an unknown kind."""
    module, _, name = KINDS[kind or LEGACY_KIND].partition(":")
    cls = getattr(importlib.import_module(module), name)
    return cls, cls.config_class
