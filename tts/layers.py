"""Layers and checks that both acoustic models are built from (tts/attention_model.py,
tts/parallel_model.py). Layout: (B, T, C) outside the convolutions."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

SQRT_HALF = math.sqrt(0.5)  # keeps the variance of a sum of two unit-variance terms at 1


def length_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """(B,) lengths -> (B, size) bool, True inside each sequence."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def checked_text(text_ids: torch.Tensor, text_lengths: torch.Tensor | None, n_symbols: int) -> torch.Tensor:
    """Check a batch of symbol ids (B, N) and their lengths (B,) (default: all N); returns the
    lengths as int64 on the ids' device. Raises ValueError naming what is wrong."""
    if text_ids.dim() != 2 or text_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"text_ids must be an integer tensor (B, N), got {text_ids.dtype} "
                         f"{tuple(text_ids.shape)}")
    B, N = text_ids.shape
    if N == 0:
        raise ValueError("text_ids is empty: nothing to say")
    if text_lengths is None:
        text_lengths = torch.full((B,), N, dtype=torch.long, device=text_ids.device)
    text_lengths = text_lengths.to(device=text_ids.device, dtype=torch.long)
    if text_lengths.shape != (B,) or text_lengths.min() < 1 or text_lengths.max() > N:
        raise ValueError(f"text_lengths must be (B,) = ({B},) with values in [1, {N}], "
                         f"got {text_lengths.tolist()}")
    if text_ids.min() < 0 or text_ids.max() >= n_symbols:
        raise ValueError(f"text_ids must be in [0, {n_symbols}), got values in "
                         f"[{int(text_ids.min())}, {int(text_ids.max())}]")
    return text_lengths


class ConvGLU(nn.Module):
    """Residual gated conv block: (x + GLU(conv(dropout(x)))) * sqrt(.5), on (B, T, C)."""

    def __init__(self, channels: int, kernel: int, dilation: int, causal: bool, dropout: float):
        super().__init__()
        self.causal, self.dropout = causal, dropout
        self.context = (kernel - 1) * dilation  # input frames one output sees besides its own
        self.conv = nn.Conv1d(channels, 2 * channels, kernel, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.dropout(x, self.dropout, self.training).transpose(1, 2)  # (B, C, T)
        left = self.context if self.causal else self.context // 2
        h = F.pad(h, (left, self.context - left))  # (B, C, T + context)
        h = F.glu(self.conv(h), dim=1).transpose(1, 2)  # (B, T, C)
        return (x + h) * SQRT_HALF

    def step(self, x: torch.Tensor, buffer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal only: x (B, 1, C), buffer (B, context, C) of the previous inputs."""
        window = torch.cat([buffer, F.dropout(x, self.dropout, self.training)], dim=1)  # (B, context+1, C)
        # One output frame is one matrix product over the kernel's taps; conv1d on the window
        # would take the slow dilated-convolution path, ten times the cost per step.
        taps = window[:, :: self.conv.dilation[0]].transpose(1, 2).flatten(1)  # (B, C * K)
        weight = self.conv.weight.flatten(1)  # (2C, C * K), a view: same (in, tap) order
        h = F.glu(F.linear(taps, weight, self.conv.bias), dim=-1)[:, None]  # (B, 1, C)
        return (x + h) * SQRT_HALF, window[:, 1:]
