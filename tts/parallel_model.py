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

import torch
import torch.nn as nn

from tts.align import (beta_binomial_prior, durations_to_alignment, forward_sum_loss,
                       monotonic_alignment_search)
from tts.acoustic import AcousticModel, Speech
from tts.layers import ConvGLU, checked_text, length_mask
from tts.inference import ParallelConfig, durations_from_log
from tts.text.symbols import PAD_ID

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

    def durations(self, log_durations: torch.Tensor, text_lengths: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        """Whole frames per symbol (B, N) from predicted log durations (`durations_from_log`),
        0 past each utterance."""
        mask = length_mask(text_lengths, log_durations.shape[1])
        frames = durations_from_log(log_durations.float().cpu().numpy(), rate, self.config.max_steps_per_symbol)
        return torch.from_numpy(frames).to(log_durations.device) * mask

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
        (frames x symbols). ``rate`` speaks faster (> 1) or slower: every predicted
        duration, pauses too, is divided by it, so the pitch is untouched. ``max_steps`` caps
        the frames. Call `eval()` first: dropout stays on in training mode."""
        _, encoding, text_lengths = self.encode(text_ids, text_lengths)
        durations = self.durations(self.log_durations(encoding, text_lengths), text_lengths, rate)
        lengths = durations.sum(dim=-1)
        if max_steps is not None:
            if max_steps < 1:
                raise ValueError(f"max_steps must be >= 1, got {max_steps}")
            lengths = lengths.clamp(max=max_steps)
        alignment = durations_to_alignment(durations, int(lengths.max()))
        return Speech(self.decode(encoding, alignment, lengths), lengths, alignment)

    def speak(self, text_ids, text_lengths=None, rate: float = 1.0) -> Speech:
        return self.generate(text_ids, text_lengths, rate=rate)

