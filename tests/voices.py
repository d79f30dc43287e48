"""Tiny random-weight voices for end-to-end tests of the pipeline, CLI, API and demo.

The models are untrained, so the audio is noise, but every part of the engine runs for real
on them. The acoustic model's done head is switched off, which makes the length exact:
a sentence of N symbols (EOS included) always lasts N * max_steps_per_symbol decoder steps,
i.e. N * TINY_SAMPLES_PER_SYMBOL samples at rate 1.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tts.model import AcousticConfig, AcousticModel
from tts.voice import save_model
from vocoder.wavenet import WaveNet, WaveNetConfig

TINY_ACOUSTIC = AcousticConfig(
    embed_dim=16, encoder_channels=16, encoder_layers=1, prenet_dim=16, decoder_channels=16,
    attention_dim=16, decoder_dilations=(1,), converter_dilations=(1,), postnet_channels=16,
    postnet_layers=1, r=2, max_steps_per_symbol=2,
)
TINY_VOCODER = WaveNetConfig(
    n_layers=2, residual_channels=8, skip_channels=8, output_channels=8, max_dilation=2,
    cond_channels=8,
)
TINY_SAMPLES_PER_SYMBOL = TINY_ACOUSTIC.max_steps_per_symbol * TINY_ACOUSTIC.r * TINY_VOCODER.hop_length


def make_tiny_voice(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny random-weight voice folder at ``path`` and return it. The same seed gives
    the same weights; the global torch random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        acoustic = AcousticModel(TINY_ACOUSTIC).eval()
        vocoder = WaveNet(TINY_VOCODER).eval()
    with torch.no_grad():
        # Never "done": every sentence runs to its hard stop, so lengths are known in advance.
        acoustic.done_out.weight.zero_()
        acoustic.done_out.bias.fill_(-30.0)
    save_model(path, "acoustic", acoustic)
    save_model(path, "vocoder", vocoder)
    return Path(path)
