"""Voicing-dependent sampling: how periodic each mel frame is, and how much more sharply the
WaveNet samples there.

LPCNet (Valin & Skoglund, 2019) raises its output distribution to the power
1 + max(0, 1.5 g - 0.5), g the frame's pitch correlation: voiced frames are drawn sharply, so
their periods repeat cleanly, while unvoiced frames keep the spread that makes a fricative
noise. One temperature everywhere has to trade the two against each other. Here g comes from
the mel alone, so synthesis needs nothing else: `VoicingDetector` is a logistic regression
from one mel frame to the frame's pitch correlation (`pitch_correlation`), fitted on a
corpus's audio (`fit_voicing`; `tts.train.tasks.vocoder.fit_voicing_on_corpus`). Its `sharpness` multiplies each sample's logits before
sampling (the kernels' ``sharpness`` input), on top of the WaveNet's temperature.

Layout: mel (frames, n_mels), as everywhere in the engine; frame i covers samples
[i * hop, (i + 1) * hop), the vocoder's convention.
"""

from __future__ import annotations


import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tts.vocoder.inference import VoicingConfig, frame_sharpness

# Pitch range searched for the correlation: below 60 Hz no voice, above 400 Hz none of a
# speaking voice's fundamentals.
F0_MIN, F0_MAX = 60.0, 400.0


def pitch_correlation(audio: np.ndarray, hop_length: int, sample_rate: int,
                      window: int | None = None) -> np.ndarray:
    """Each frame's pitch correlation g in [0, 1]: the largest normalized correlation of the
    frame's window with itself one period later, over periods of F0_MIN to F0_MAX.

    audio (N,) -> (N // hop_length + 1,) float32; frame i's window (``window`` samples,
    default 2 * hop_length) is centred on sample i * hop_length, as the mel's frames are.
    """
    window = 2 * hop_length if window is None else window
    lo, hi = int(sample_rate / F0_MAX), int(np.ceil(sample_rate / F0_MIN))
    frames = len(audio) // hop_length + 1
    padded = np.pad(np.asarray(audio, np.float64), (window // 2, window // 2 + hi + hop_length))
    index = np.arange(frames)[:, None] * hop_length + np.arange(window)[None]  # (frames, window)
    x = padded[index]
    energy = (x * x).sum(1)
    best = np.zeros(frames)
    for lag in range(lo, hi + 1):
        y = padded[index + lag]
        r = (x * y).sum(1) / np.sqrt(energy * (y * y).sum(1) + 1e-12)
        np.maximum(best, r, out=best)
    return best.astype(np.float32)


class VoicingDetector(nn.Module):
    """Estimates how voiced each mel frame is, and so how sharply the WaveNet samples it."""

    def __init__(self, config: VoicingConfig = VoicingConfig()):
        super().__init__()
        self.config = config
        self.linear = nn.Linear(config.n_mels, 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (..., frames, n_mels) -> estimated pitch correlation (..., frames) in (0, 1)."""
        return torch.sigmoid(self.linear(mel)[..., 0])

    @torch.no_grad()
    def sharpness(self, mel) -> np.ndarray:
        """mel (frames, n_mels), array or tensor -> each frame's logit scale (frames,) float32,
        in [1, 1 + strength] (`tts.vocoder.inference.frame_sharpness`)."""
        weights = {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()}
        return frame_sharpness(self.config, weights, np.asarray(torch.as_tensor(mel).cpu()))


def fit_voicing(mels: list[np.ndarray], correlations: list[np.ndarray],
                config: VoicingConfig = VoicingConfig()) -> VoicingDetector:
    """Fit a detector to frames of mel (frames, n_mels) and their pitch correlations (frames,)
    by logistic regression (cross-entropy against g as a soft target), to convergence."""
    x = torch.from_numpy(np.concatenate(mels).astype(np.float32))  # (N, n_mels)
    g = torch.from_numpy(np.concatenate(correlations).astype(np.float32)).clamp(0.0, 1.0)  # (N,)
    if x.shape[0] != g.shape[0] or x.shape[1] != config.n_mels:
        raise ValueError(f"expected mels (frames, {config.n_mels}) and one correlation per "
                         f"frame, got {tuple(x.shape)} and {tuple(g.shape)}")
    detector = VoicingDetector(config)
    nn.init.zeros_(detector.linear.weight)
    nn.init.zeros_(detector.linear.bias)
    optimizer = torch.optim.LBFGS(detector.linear.parameters(), max_iter=500,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(detector.linear(x)[:, 0], g)
        loss.backward()
        return loss

    optimizer.step(closure)
    return detector.eval()

