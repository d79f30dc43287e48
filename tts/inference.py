"""Speaking without PyTorch: the parallel acoustic model's config and its inference in numpy.

PyTorch takes two seconds to import, longer than a short sentence takes to say, and a voice
only needs a few convolutions to speak. `ParallelSpeaker` runs a voice's parallel acoustic
model on its weights as numpy arrays (what `tts.voice.Voice.arrays` reads from the folder);
`tts.vocoder.inference` does the same for the WaveNet's conditioning. The torch models
(`tts.parallel_model`, `tts.vocoder.wavenet`) stay what trains and what runs on a GPU, and the
tests hold the two to the same numbers.

Layout: one utterance, (T, C): symbol ids (N,), encoding (N, C), mel (frames, n_mels),
alignment (frames, N).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tts.config import JsonConfig
from tts.text.symbols import SYMBOLS

SQRT_HALF = np.float32(math.sqrt(0.5))  # `tts.layers.ConvGLU`'s residual scale


# ---- layers --------------------------------------------------------------------------------

def sigmoid(x: np.ndarray) -> np.ndarray:
    """As float32 as its input; 1 / (1 + exp(-x)) would overflow far below zero."""
    return 0.5 + 0.5 * np.tanh(0.5 * x)


def check_shapes(weights: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]]) -> None:
    """ValueError naming the first weight that is missing or not of the shape its config gives."""
    for name, shape in expected.items():
        if name not in weights or weights[name].shape != shape:
            found = weights[name].shape if name in weights else "nothing"
            raise ValueError(f"{name} has shape {found}, the config expects {shape}")


class Conv1d:
    """torch.nn.Conv1d's weights (C_out, C_in, K) and bias on (T, C_in) -> (T_out, C_out):
    one matrix product per tap, over the input padded by ``left`` and ``right`` zeros."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None, dilation: int = 1, left: int = 0,
                 right: int = 0):
        self.taps = [np.ascontiguousarray(weight[:, :, k].T) for k in range(weight.shape[2])]  # K x (C_in, C_out)
        self.bias = None if bias is None else np.asarray(bias, np.float32)
        self.dilation, self.left, self.right = dilation, left, right

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.left or self.right:
            x = np.pad(x, ((self.left, self.right), (0, 0)))
        n = x.shape[0] - self.dilation * (len(self.taps) - 1)
        out = x[:n] @ self.taps[0]
        for k, tap in enumerate(self.taps[1:], 1):
            out += x[k * self.dilation:k * self.dilation + n] @ tap
        return out if self.bias is None else out + self.bias


class ConvGLU:
    """`tts.layers.ConvGLU` at inference, centred: (x + GLU(conv(x))) * sqrt(.5) on (T, C)."""

    def __init__(self, weights: dict[str, np.ndarray], prefix: str, dilation: int):
        weight = weights[f"{prefix}.conv.weight"]
        context = (weight.shape[2] - 1) * dilation
        self.conv = Conv1d(weight, weights[f"{prefix}.conv.bias"], dilation, context // 2, context - context // 2)
        self.channels = weight.shape[1]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = self.conv(x)  # (T, 2C)
        return (x + h[:, :self.channels] * sigmoid(h[:, self.channels:])) * SQRT_HALF


# ---- the parallel acoustic model -----------------------------------------------------------

@dataclass(frozen=True)
class ParallelConfig(JsonConfig):
    """The parallel acoustic model's dimensions (`tts.parallel_model`); stored as JSON next to
    the weights, enough to rebuild the model."""

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


def durations_from_log(log_durations: np.ndarray, rate: float, max_frames: int) -> np.ndarray:
    """Predicted log(1 + frames) per symbol (..., N) -> whole frames (..., N) int64 spoken at
    ``rate``: every duration, pauses too, divided by the rate and rounded, at least 1 (every
    symbol is said) and at most ``max_frames``."""
    frames = np.round(np.expm1(np.asarray(log_durations, np.float32)) / np.float32(rate))
    return np.clip(frames, 1, max_frames).astype(np.int64)


class ParallelSpeaker:
    """The parallel acoustic model at inference, in numpy: symbol ids in, mel and alignment out."""

    kind = "parallel"

    def __init__(self, config: ParallelConfig, weights: dict[str, np.ndarray]):
        self.config = c = config
        expected = {"embed.weight": (c.n_symbols, c.channels), "duration_out.weight": (1, c.channels),
                    "position.weight": (c.channels, 2), "mel_out.weight": (c.n_mels, c.channels)}
        check_shapes(weights, expected)
        self.embed = weights["embed.weight"]
        self.encoder = [ConvGLU(weights, f"encoder.{i}", 1) for i in range(c.encoder_layers)]
        self.duration_convs = [ConvGLU(weights, f"duration_convs.{i}", 1) for i in range(c.duration_layers)]
        self.duration_out = (weights["duration_out.weight"][0], weights["duration_out.bias"][0])
        self.position = (np.ascontiguousarray(weights["position.weight"].T), weights["position.bias"])
        self.decoder = [ConvGLU(weights, f"decoder.{i}", d) for i, d in enumerate(c.decoder_dilations)]
        self.mel_out = (np.ascontiguousarray(weights["mel_out.weight"].T), weights["mel_out.bias"])

    def speak_one(self, ids, rate: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Symbol ids (N,) -> (mel (frames, n_mels) float32 in [0, 1], alignment (frames, N)
        float32, one-hot: which symbol each frame says). ``rate``: `durations_from_log`."""
        ids = np.asarray(ids, np.int64)
        if ids.ndim != 1 or not len(ids):
            raise ValueError(f"ids must be a non-empty 1-d sequence, got shape {ids.shape}")
        if ids.min() < 0 or ids.max() >= self.config.n_symbols:
            raise ValueError(f"ids must be in [0, {self.config.n_symbols}), got [{ids.min()}, {ids.max()}]")
        x = self.embed[ids]  # (N, C)
        for conv in self.encoder:
            x = conv(x)
        encoding, h = x, x
        for conv in self.duration_convs:
            h = conv(h)
        weight, bias = self.duration_out
        durations = durations_from_log(h @ weight + bias, rate, self.config.max_steps_per_symbol)  # (N,)
        symbol = np.repeat(np.arange(len(ids)), durations)  # (frames,): the symbol each frame says
        starts = np.cumsum(durations) - durations
        length = durations.astype(np.float32)[symbol]
        fraction = (np.arange(len(symbol), dtype=np.float32) - starts[symbol].astype(np.float32) + 0.5) / length
        inside = np.stack([fraction, np.log1p(length)], axis=-1)  # (frames, 2)
        x = encoding[symbol] + inside @ self.position[0] + self.position[1]  # (frames, C)
        for conv in self.decoder:
            x = conv(x)
        mel = sigmoid(x @ self.mel_out[0] + self.mel_out[1])
        alignment = np.zeros((len(symbol), len(ids)), np.float32)
        alignment[np.arange(len(symbol)), symbol] = 1.0
        return mel, alignment
