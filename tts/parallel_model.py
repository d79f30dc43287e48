"""The parallel acoustic model: symbol ids in, the whole mel out in one pass.

Where the attention model (tts/attention_model.py) makes a sentence step by step and reads back its own
frames, this one predicts how many frames each symbol lasts and then makes every frame at
once (the FastSpeech 2 / FastPitch layout): nothing is fed back, so nothing it made can lead it
astray, and a sentence costs one pass of convolutions.

Layout: every public tensor is (B, T, C): text ids (B, N), mel (B, T, n_mels), durations (B, N),
alignment (B, T, N) (frames x symbols).

    encoder:    ids -> embedding -> residual GLU convs (non-causal) -> (B, N, C)
    durations:  convs over the encoding -> log(1 + frames) per symbol
    regulate:   alignment (B, T, N) @ encoding: each symbol's encoding repeated over its frames,
                plus where the frame sits inside its symbol
    decoder:    residual GLU convs (dilated, non-causal) -> mel (sigmoid, in [0, 1])
    aligner:    training only: text and mel convs whose distances give log P(symbol | frame);
                the forward-sum loss teaches it, and its most likely monotonic path gives the
                durations the decoder is trained on and the duration predictor learns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from tts.align import (beta_binomial_prior, durations_to_alignment, forward_sum_loss,
                       monotonic_alignment_search)
from tts.acoustic import AcousticModel, Speech
from tts.config import JsonConfig
from tts.layers import ConvGLU, checked_text, length_mask
from tts.text.symbols import CONSONANTS, PAD_ID, SYMBOLS

# How much of a faster rate each symbol takes: fast speech shortens pauses and vowels most and
# consonants least, whose closures and bursts are what a listener needs to tell words apart.
# Symbol i's duration is divided by rate ** (k * ELASTICITY[i]), k chosen per utterance so that
# the whole is divided by the rate.
CONSONANT_ELASTICITY = 0.4
ELASTICITY = torch.tensor([CONSONANT_ELASTICITY if s in CONSONANTS else 1.0 for s in SYMBOLS])


def faster(frames: torch.Tensor, text_ids: torch.Tensor, rate: float) -> torch.Tensor:
    """Durations (B, N) float spoken ``rate`` > 1 times faster, unevenly (`ELASTICITY`): each
    utterance's total is divided by the rate, its consonants less than the rest."""
    elastic = ELASTICITY.to(frames.device)[text_ids.clamp(0, len(SYMBOLS) - 1)]  # (B, N)
    target = frames.sum(-1, keepdim=True) / rate  # (B, 1)
    lo = torch.zeros_like(target)
    hi = torch.full_like(target, 1.0 / CONSONANT_ELASTICITY)  # every symbol at least the rate
    for _ in range(40):  # the total falls as k grows: bisect for the k that hits the target
        k = (lo + hi) / 2
        total = (frames * rate ** (-k * elastic)).sum(-1, keepdim=True)
        lo, hi = torch.where(total > target, k, lo), torch.where(total > target, hi, k)
    return frames * rate ** (-(lo + hi) / 2 * elastic)


@dataclass(frozen=True)
class ParallelConfig(JsonConfig):
    """Model dimensions; stored as JSON next to the weights, enough to rebuild the model."""

    n_symbols: int = len(SYMBOLS)
    n_mels: int = 80
    channels: int = 192
    kernel: int = 5
    encoder_layers: int = 4
    decoder_dilations: tuple[int, ...] = (1, 2, 4, 1, 2, 4)  # one layer each
    duration_layers: int = 2
    aligner_channels: int = 80
    # Scale of the aligner's negative squared distances: small, so that its first alignments
    # follow the diagonal prior and sharpen as it learns.
    aligner_temperature: float = 0.05
    dropout: float = 0.1  # on the input of every conv block
    # Hard limit on a predicted duration: 40 frames x 12.5 ms = 0.5 s per symbol.
    max_steps_per_symbol: int = 40

    def __post_init__(self):
        object.__setattr__(self, "decoder_dilations", tuple(int(d) for d in self.decoder_dilations))
        for name in ("n_symbols", "n_mels", "channels", "kernel", "aligner_channels", "max_steps_per_symbol"):
            if getattr(self, name) < 1:
                raise ValueError(f"ParallelConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("encoder_layers", "duration_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"ParallelConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.kernel % 2 == 0:
            raise ValueError(f"ParallelConfig.kernel must be odd (centred convs), got {self.kernel}")
        if not self.decoder_dilations or any(d < 1 for d in self.decoder_dilations):
            raise ValueError(f"ParallelConfig.decoder_dilations must be positive, got {self.decoder_dilations}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ParallelConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.aligner_temperature <= 0:
            raise ValueError(f"ParallelConfig.aligner_temperature must be > 0, got {self.aligner_temperature}")


class Aligner(nn.Module):
    """log P(symbol n | frame t) from the symbols' embeddings and the mel (RAD-TTS's aligner)."""

    def __init__(self, c: ParallelConfig):
        super().__init__()
        self.temperature = c.aligner_temperature
        A, M = c.aligner_channels, c.n_mels
        self.text = nn.Sequential(nn.Conv1d(c.channels, 2 * c.channels, 3, padding=1), nn.ReLU(),
                                  nn.Conv1d(2 * c.channels, A, 1))
        self.mel = nn.Sequential(nn.Conv1d(M, 2 * M, 3, padding=1), nn.ReLU(), nn.Conv1d(2 * M, M, 1), nn.ReLU(),
                                 nn.Conv1d(M, A, 1))

    def forward(self, emb: torch.Tensor, mel: torch.Tensor, text_lengths: torch.Tensor,
                mel_lengths: torch.Tensor) -> torch.Tensor:
        """emb (B, N, C), mel (B, T, n_mels) -> log P(symbol | frame) (B, T, N), prior included.
        In float32 whatever the autocast: the distance subtracts large, close numbers."""
        with torch.autocast(emb.device.type, enabled=False):
            keys = self.text(emb.float().transpose(1, 2)).transpose(1, 2)  # (B, N, A)
            queries = self.mel(mel.float().transpose(1, 2)).transpose(1, 2)  # (B, T, A)
            distance = ((queries ** 2).sum(-1, keepdim=True) - 2 * queries @ keys.transpose(1, 2)
                        + (keys ** 2).sum(-1)[:, None, :])  # (B, T, N) squared L2
            B, T, N = distance.shape
            scores = torch.log_softmax(-self.temperature * distance.masked_fill(
                ~length_mask(text_lengths, N)[:, None, :], float("inf")), dim=-1)
            return scores + beta_binomial_prior(text_lengths, mel_lengths, N, T)


class ParallelModel(AcousticModel):
    """Durations first, then every frame at once: nothing is fed back."""

    kind = "parallel"
    config_class = ParallelConfig

    def __init__(self, config: ParallelConfig = ParallelConfig()):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.n_symbols, c.channels, padding_idx=PAD_ID)
        self.encoder = nn.ModuleList(ConvGLU(c.channels, c.kernel, 1, False, c.dropout)
                                     for _ in range(c.encoder_layers))
        self.duration_convs = nn.ModuleList(ConvGLU(c.channels, 3, 1, False, c.dropout)
                                            for _ in range(c.duration_layers))
        self.duration_out = nn.Linear(c.channels, 1)
        # Where a frame sits inside its symbol: its fraction of the way through, and the
        # symbol's log length; without them a run of equal inputs has no inside.
        self.position = nn.Linear(2, c.channels)
        self.decoder = nn.ModuleList(ConvGLU(c.channels, c.kernel, d, False, c.dropout)
                                     for d in c.decoder_dilations)
        self.mel_out = nn.Linear(c.channels, c.n_mels)
        self.aligner = Aligner(c)

    # ---- pieces ---------------------------------------------------------------------------

    def encode(self, text_ids: torch.Tensor, text_lengths: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """text ids (B, N) -> embeddings (B, N, C), encoding (B, N, C), lengths (B,)."""
        text_lengths = checked_text(text_ids, text_lengths, self.config.n_symbols)
        mask = length_mask(text_lengths, text_ids.shape[1])[..., None].to(self.embed.weight.dtype)  # (B, N, 1)
        emb = self.embed(text_ids.long()) * mask
        x = emb
        for conv in self.encoder:
            x = conv(x) * mask
        return emb, x, text_lengths

    def log_durations(self, encoding: torch.Tensor, text_lengths: torch.Tensor) -> torch.Tensor:
        """Predicted log(1 + frames) per symbol, (B, N); zero past each utterance."""
        mask = length_mask(text_lengths, encoding.shape[1])[..., None].to(encoding.dtype)
        x = encoding
        for conv in self.duration_convs:
            x = conv(x) * mask
        return self.duration_out(x)[..., 0] * mask[..., 0]

    def decode(self, encoding: torch.Tensor, alignment: torch.Tensor, mel_lengths: torch.Tensor) -> torch.Tensor:
        """encoding (B, N, C), hard alignment (B, T, N) -> mel (B, T, n_mels), zero past each length."""
        alignment = alignment.to(encoding.dtype)
        durations = alignment.sum(dim=1)  # (B, N)
        starts = durations.cumsum(dim=-1) - durations
        t = torch.arange(alignment.shape[1], device=alignment.device, dtype=encoding.dtype)[None, :, None]
        fraction = (alignment * (t - starts[:, None, :] + 0.5) / durations.clamp(min=1)[:, None, :]).sum(-1)
        log_length = alignment @ torch.log1p(durations)[..., None]  # (B, T, 1)
        mask = length_mask(mel_lengths, alignment.shape[1])[..., None].to(encoding.dtype)  # (B, T, 1)
        x = (alignment @ encoding + self.position(torch.cat([fraction[..., None], log_length], -1))) * mask
        for conv in self.decoder:
            x = conv(x) * mask
        return torch.sigmoid(self.mel_out(x)) * mask

    def durations(self, log_durations: torch.Tensor, text_lengths: torch.Tensor, rate: float = 1.0,
                  text_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Whole frames per symbol (B, N) from predicted log durations: at least 1 inside each
        utterance (every symbol is said), at most max_steps_per_symbol, 0 past it. Slower than
        1, every symbol stretches alike; faster, with ``text_ids``, consonants shorten least
        (`faster`)."""
        frames = torch.expm1(log_durations.float()) * length_mask(text_lengths, log_durations.shape[1])
        if rate > 1.0 and text_ids is not None:
            # Rounded along the utterance, so that the whole keeps the rate: each symbol ends
            # on the frame nearest its exact end.
            ends = torch.round(torch.cumsum(faster(frames, text_ids, rate), dim=-1))
            frames = torch.diff(ends, dim=-1, prepend=torch.zeros_like(ends[..., :1]))
        else:
            frames = torch.round(frames / rate)
        frames = frames.clamp(1, self.config.max_steps_per_symbol).long()
        return frames * length_mask(text_lengths, log_durations.shape[1])

    # ---- training -------------------------------------------------------------------------

    def forward(self, text_ids: torch.Tensor, text_lengths: torch.Tensor, mel: torch.Tensor,
                mel_lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training pass: the aligner's alignment of the true mel, the decoder's mel on the
        hard alignment, the predicted log durations. Every utterance needs at least as many
        frames as symbols."""
        c = self.config
        if mel.dim() != 3 or mel.shape[-1] != c.n_mels:
            raise ValueError(f"mel must be (B, T, {c.n_mels}), got {tuple(mel.shape)}")
        emb, encoding, text_lengths = self.encode(text_ids, text_lengths)
        log_probs = self.aligner(emb, mel, text_lengths, mel_lengths)  # (B, T, N)
        hard = monotonic_alignment_search(log_probs, text_lengths, mel_lengths)
        return {
            "mel": self.decode(encoding, hard, mel_lengths),
            "log_durations": self.log_durations(encoding, text_lengths),
            "durations": hard.sum(dim=1),  # (B, N) frames per symbol, from the aligner
            "log_probs": log_probs,
            "alignment": hard,
        }

    def loss(self, outputs: dict[str, torch.Tensor], mel: torch.Tensor, mel_lengths: torch.Tensor,
             text_lengths: torch.Tensor, binarization_weight: float = 1.0) -> dict[str, torch.Tensor]:
        """L1 of the mel over real frames; squared error of the log durations over real
        symbols; the aligner's forward-sum loss; its binarization loss (-log of the soft
        alignment on the hard path, which pulls the two together); and their sum `total`."""
        B, T, M = mel.shape
        frames = length_mask(mel_lengths, T)[..., None].to(mel.dtype)
        symbols = length_mask(text_lengths, outputs["durations"].shape[1]).to(mel.dtype)
        hard, log_probs = outputs["alignment"], outputs["log_probs"]
        losses = {
            "mel": ((outputs["mel"].float() - mel).abs() * frames).sum() / (frames.sum() * M),
            "duration": (((outputs["log_durations"].float() - torch.log1p(outputs["durations"])) ** 2) * symbols
                         ).sum() / symbols.sum(),
            "align": forward_sum_loss(log_probs, text_lengths, mel_lengths),
            "binarization": -(hard * log_probs.clamp(min=-1e4)).sum() / hard.sum(),
        }
        losses["total"] = (losses["mel"] + losses["duration"] + losses["align"]
                           + binarization_weight * losses["binarization"])
        return losses

    # ---- generation -----------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, text_ids: torch.Tensor, text_lengths: torch.Tensor | None = None,
                 max_steps: int | None = None, rate: float = 1.0) -> Speech:
        """Text ids (B, N) -> mel (B, T, n_mels), frames per utterance, the alignment (B, T, N)
        (frames x symbols). ``rate`` speaks faster (> 1) or slower: the predicted durations,
        pauses too, are divided by it as a whole, faster ones unevenly (consonants least,
        `faster`), so the pitch is untouched. ``max_steps`` caps the frames. Call `eval()`
        first: dropout stays on in training mode."""
        _, encoding, text_lengths = self.encode(text_ids, text_lengths)
        durations = self.durations(self.log_durations(encoding, text_lengths), text_lengths, rate, text_ids)
        lengths = durations.sum(dim=-1)
        if max_steps is not None:
            if max_steps < 1:
                raise ValueError(f"max_steps must be >= 1, got {max_steps}")
            lengths = lengths.clamp(max=max_steps)
        alignment = durations_to_alignment(durations, int(lengths.max()))
        return Speech(self.decode(encoding, alignment, lengths), lengths, alignment)

    def speak(self, text_ids, text_lengths=None, rate: float = 1.0) -> Speech:
        return self.generate(text_ids, text_lengths, rate=rate)

