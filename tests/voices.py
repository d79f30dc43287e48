"""Tiny random-weight voices for end-to-end tests of the pipeline, CLI, API and demo.

The models are untrained, so the audio is noise, but every part of the engine runs for real
on them. The acoustic model is the kind that ships (parallel) unless ``kind="attention"`` is
asked for. Either way its length is exact: the parallel model's durations are fixed at
TINY_FRAMES_PER_SYMBOL frames, and the attention model's done head is switched off, so that
it runs max_steps_per_symbol steps of r frames per symbol. A sentence of N symbols (EOS
included) always lasts N * TINY_SAMPLES_PER_SYMBOL samples at rate 1.
"""

from __future__ import annotations

from pathlib import Path

import torch

import math

from tts.attention_model import AttentionConfig, AttentionModel
from tts.parallel_model import ParallelConfig, ParallelModel
from tts.voice import save_model
from tts.vocoder.wavenet import WaveNet, WaveNetConfig

TINY_ACOUSTIC = AttentionConfig(
    embed_dim=16, encoder_channels=16, encoder_layers=1, prenet_dim=16, decoder_channels=16,
    attention_dim=16, decoder_dilations=(1,), converter_dilations=(1,), postnet_channels=16,
    postnet_layers=1, r=2, max_steps_per_symbol=2,
)
TINY_PARALLEL = ParallelConfig(channels=16, kernel=3, encoder_layers=1, decoder_dilations=(1,), duration_layers=1,
                               aligner_channels=8)
TINY_VOCODER = WaveNetConfig(
    n_layers=2, residual_channels=8, skip_channels=8, output_channels=8, max_dilation=2,
    cond_channels=8,
)
TINY_FRAMES_PER_SYMBOL = TINY_ACOUSTIC.max_steps_per_symbol * TINY_ACOUSTIC.r  # the same for both kinds
TINY_SAMPLES_PER_SYMBOL = TINY_FRAMES_PER_SYMBOL * TINY_VOCODER.hop_length


def make_tiny_voice(path: str | Path, seed: int = 0, kind: str = "parallel") -> Path:
    """Write a tiny random-weight voice folder at ``path`` and return it. The same seed gives
    the same weights; the global torch random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        acoustic = (ParallelModel(TINY_PARALLEL) if kind == "parallel" else AttentionModel(TINY_ACOUSTIC)).eval()
        vocoder = WaveNet(TINY_VOCODER).eval()
    with torch.no_grad():
        if kind == "parallel":  # every symbol lasts TINY_FRAMES_PER_SYMBOL frames
            acoustic.duration_out.weight.zero_()
            acoustic.duration_out.bias.fill_(math.log1p(TINY_FRAMES_PER_SYMBOL))
        else:  # never "done": every sentence runs to its hard stop
            acoustic.done_out.weight.zero_()
            acoustic.done_out.bias.fill_(-30.0)
    save_model(path, "acoustic", acoustic)
    save_model(path, "vocoder", vocoder)
    return Path(path)
