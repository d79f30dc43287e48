"""The WaveNet without PyTorch: its config, the weights every kernel takes, its conditioning
and its voicing detector in numpy, and what its samples stand for.

The network itself (training forward, the reference generator) is `tts.vocoder.wavenet`;
everything here is numpy, so that speaking through the numba kernel never imports torch
(`tts.inference` says why). Layout: one utterance, mel (frames, n_mels), conditioning
(samples, L, 2R).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from tts.audio import de_emphasis, mu_law_encode, pre_emphasis
from tts.config import JsonConfig
from tts.inference import Conv1d, check_shapes, sigmoid
from tts.vocoder.lpc import lpc_from_mel, lpc_residual, lpc_synthesis

# The previous sample before the first one: silence, mu_law_encode(0.0) == 128.
START_CLASS = int(mu_law_encode(np.zeros(1))[0])


@dataclass(frozen=True)
class WaveNetConfig(JsonConfig):
    """Model dimensions; stored as JSON next to the weights, enough to rebuild the model."""

    n_layers: int = 12  # L
    residual_channels: int = 32  # R
    skip_channels: int = 128  # S
    output_channels: int = 128  # A
    max_dilation: int = 32  # dilations 1, 2, 4, ..., max_dilation, repeated over the layers
    n_mels: int = 80
    hop_length: int = 200  # audio samples per mel frame
    n_classes: int = 256  # 8-bit mu-law
    # Upsampling mel frames to samples: a kernel-3 conv over frames (n_mels -> cond_channels,
    # so each frame sees its neighbours), then per scale: repeat each step `scale` times and
    # smooth with a learned depthwise conv of width 2*scale+1 (starts as a moving average, so
    # the features start as a piecewise-linear interpolation instead of a staircase).
    cond_channels: int = 128
    upsample_scales: tuple[int, ...] = (10, 20)
    # The frame-rate network (as LPCNet's): residual blocks over the frames after the frame
    # conv, each conv(k3) -> leaky ReLU -> conv(k3) added to its input, so the features each
    # sample is conditioned on are a deeper, wider-context function of the mel (every block
    # sees two more frames on each side). They run once per frame, not per sample: generation
    # costs the same. Each block's second conv starts at zero, so a network grown from one
    # with fewer blocks starts by saying exactly what it said.
    cond_blocks: int = 0
    # The network models pre-emphasized audio (x[t] - c x[t-1]); its output is de-emphasized
    # after sampling, which shapes the mu-law noise like the speech spectrum. 0: none.
    pre_emphasis: float = 0.0
    # >0: the network models the excitation of a linear predictor of this order whose
    # coefficients come from the mel (vocoder/lpc.py), and the synthesis filter makes speech
    # of its samples. 0: the network models the audio itself.
    lpc_order: int = 0
    # LPCNet's inputs (Valin & Skoglund 2019): besides the previous excitation class, the
    # network sees the classes of the previous signal sample s[t-1] and of the prediction
    # p[t] = sum_k a_k s[t-k], each through an embedding of its own added to the first
    # layer's input, so it sees the drift that its own errors cause. The synthesis filter then
    # runs inside every kernel's sample loop (p[t] must exist before sample t is drawn). The
    # new embeddings start at zero, so a network without them warm-starts unchanged.
    lpc_inputs: bool = False
    # Sampling temperature: generation samples from softmax(logits / temperature). Below 1 it
    # draws fewer unlikely classes, which an undertrained network hears as noise. Folded into
    # the output layer of the weights every kernel takes (`export_weights`), so each backend
    # still equals the reference; training never sees it.
    temperature: float = 1.0

    def __post_init__(self):
        # JSON has no tuples; accept a list so that from_dict(to_dict()) round-trips.
        object.__setattr__(self, "upsample_scales", tuple(int(s) for s in self.upsample_scales))
        for name in ("n_layers", "residual_channels", "skip_channels", "output_channels",
                     "max_dilation", "n_mels", "hop_length", "cond_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"WaveNetConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_dilation & (self.max_dilation - 1):
            raise ValueError(f"WaveNetConfig.max_dilation must be a power of 2, "
                             f"got {self.max_dilation}")
        if self.n_classes != 256:
            raise ValueError(f"WaveNetConfig.n_classes must be 256 (8-bit mu-law), got {self.n_classes}")
        if not 0.0 <= self.pre_emphasis < 1.0:
            raise ValueError(f"WaveNetConfig.pre_emphasis must be in [0, 1), got {self.pre_emphasis}")
        if not 0.0 < self.temperature <= 10.0:
            raise ValueError(f"WaveNetConfig.temperature must be in (0, 10], got {self.temperature}")
        if self.lpc_order < 0:
            raise ValueError(f"WaveNetConfig.lpc_order must be >= 0, got {self.lpc_order}")
        if not 0 <= self.cond_blocks <= 16:
            raise ValueError(f"WaveNetConfig.cond_blocks must be in [0, 16], got {self.cond_blocks}")
        if self.lpc_inputs and not self.lpc_order:
            raise ValueError("WaveNetConfig.lpc_inputs needs a predictor (lpc_order > 0)")
        if self.lpc_order and self.pre_emphasis:
            raise ValueError("WaveNetConfig: lpc_order and pre_emphasis exclude each other "
                             "(the predictor already shapes the noise like the speech)")
        if not self.upsample_scales or min(self.upsample_scales) < 1:
            raise ValueError(f"WaveNetConfig.upsample_scales must be positive, got {self.upsample_scales}")
        if math.prod(self.upsample_scales) != self.hop_length:
            raise ValueError(f"WaveNetConfig.upsample_scales {self.upsample_scales} multiply to "
                             f"{math.prod(self.upsample_scales)}, expected hop_length {self.hop_length}")

    @classmethod
    def medium(cls) -> WaveNetConfig:
        """A larger voice for GPU inference."""
        return cls(n_layers=20, residual_channels=64, skip_channels=256, output_channels=256,
                   max_dilation=512)

    @property
    def dilations(self) -> tuple[int, ...]:
        cycle = int(math.log2(self.max_dilation)) + 1
        return tuple(2 ** (i % cycle) for i in range(self.n_layers))

    @property
    def receptive_field(self) -> int:
        """How many past input classes one output sees (the input itself plus sum(dilations))."""
        return 1 + sum(self.dilations)

    @property
    def upsample_context(self) -> int:
        """Mel frames on each side that one frame's upsampled features depend on."""
        context, rate = 1 + 2 * self.cond_blocks, 1  # the frame conv and blocks: kernel 3 each
        for scale in self.upsample_scales:
            rate *= scale
            context += math.ceil(scale / rate)  # a (2 * scale + 1)-tap smoothing at this rate
        return context

    @property
    def signal_order(self) -> int:
        """How many past signal samples generation carries: the predictor's order with
        lpc_inputs (the filter runs in the loop), else 0 (it runs after)."""
        return self.lpc_order if self.lpc_inputs else 0


@dataclass(frozen=True)
class VoicingConfig(JsonConfig):
    n_mels: int = 80
    # The extra exponent's scale: frame sharpness is 1 + strength * max(0, 1.5 g - 0.5)
    # (LPCNet: 1), so fully voiced frames sample at temperature / (1 + strength).
    strength: float = 1.0

    def __post_init__(self):
        if self.n_mels < 1:
            raise ValueError(f"VoicingConfig.n_mels must be >= 1, got {self.n_mels}")
        if not 0.0 < self.strength <= 10.0:
            raise ValueError(f"VoicingConfig.strength must be in (0, 10], got {self.strength}")


def _leaky_relu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.float32(0.2) * x)


def polyphase_gather(scale: int) -> np.ndarray:
    """(scale, 2 * scale + 1, 3) float32, one-hot: which of the input steps t - 1, t, t + 1
    tap k of output phase p lands on, for a depthwise (2 * scale + 1)-tap filter run over
    steps repeated `scale` times: input step t - 1 + (p + k) // scale."""
    which = (np.arange(scale)[:, None] + np.arange(2 * scale + 1)[None, :]) // scale  # (scale, taps): 0, 1 or 2
    return (which[..., None] == np.arange(3)).astype(np.float32)


def polyphase(weight: np.ndarray, scale: int) -> np.ndarray:
    """The filter's weights (C, 2 * scale + 1) -> its (C, scale, 3) equivalent on the steps
    before the repeat (`polyphase_gather`): output phase p of step t takes input steps t - 1,
    t, t + 1 with weights [c, p, 0..2]."""
    return np.einsum("ck,pkq->cpq", weight, polyphase_gather(scale).astype(weight.dtype))


class Conditioning:
    """The WaveNet's conditioning at inference, in numpy: mel frames -> every layer's gate
    input for each of their samples (`tts.vocoder.wavenet.WaveNet.conditioning`)."""

    def __init__(self, config: WaveNetConfig, weights: dict[str, np.ndarray]):
        self.config = c = config
        L, R, C = c.n_layers, c.residual_channels, c.cond_channels
        expected = {"frame_conv.weight": (C, c.n_mels, 3), **{f"cond_proj.{l}.weight": (2 * R, C, 1) for l in range(L)},
                    **{f"upsample_convs.{i}.weight": (C, 1, 2 * s + 1) for i, s in enumerate(c.upsample_scales)},
                    **{f"cond_blocks.{b}.{j}.weight": (C, C, 3) for b in range(c.cond_blocks) for j in range(2)}}
        check_shapes(weights, expected)
        self.frame_conv = Conv1d(weights["frame_conv.weight"], weights["frame_conv.bias"], left=1, right=1)
        self.blocks = [tuple(Conv1d(weights[f"cond_blocks.{b}.{j}.weight"], weights[f"cond_blocks.{b}.{j}.bias"],
                                    left=1, right=1) for j in range(2)) for b in range(c.cond_blocks)]
        # Each stage's three taps as (scale, C) planes: phase p of step t is the sum of
        # taps[q][p] * step t - 1 + q.
        self.stages = [[np.ascontiguousarray(taps.T) for taps in
                        polyphase(weights[f"upsample_convs.{i}.weight"][:, 0], s).transpose(2, 0, 1)]
                       for i, s in enumerate(c.upsample_scales)]
        self.projection = np.ascontiguousarray(np.concatenate(
            [weights[f"cond_proj.{l}.weight"][:, :, 0] for l in range(L)]).T)  # (C, L * 2R)

    def frame_features(self, mel: np.ndarray) -> np.ndarray:
        """mel (frames, n_mels) -> the frame-rate features (frames, C_cond)."""
        h = _leaky_relu(self.frame_conv(mel))
        for first, second in self.blocks:
            h = h + second(_leaky_relu(first(h)))
        return h

    def upsample(self, mel: np.ndarray) -> np.ndarray:
        """mel (frames, n_mels) -> features (frames * hop_length, C_cond): each stage repeats
        every step `scale` times and smooths it, as three taps per phase (`polyphase`)."""
        h = self.frame_features(mel)
        for taps in self.stages:
            padded = np.concatenate([h[:1], h, h[-1:]])  # (T + 2, C): replicated edges
            T = h.shape[0]
            out = padded[:T, None, :] * taps[0]  # (T, scale, C)
            term = np.empty_like(out)
            for q in (1, 2):
                out += np.multiply(padded[q:q + T, None, :], taps[q], out=term)
            h = out.reshape(-1, h.shape[1])
        return h

    def features(self, mel: np.ndarray, start: int, stop: int) -> np.ndarray:
        """The upsampled features (samples, C_cond) of frames [start, stop) of mel (frames,
        n_mels), from a window with `WaveNetConfig.upsample_context` frames of margin, so that
        they equal the whole utterance's to float rounding."""
        c = self.config
        context, hop = c.upsample_context, c.hop_length
        lo, hi = max(0, start - context), min(len(mel), stop + context)
        return self.upsample(np.asarray(mel[lo:hi], np.float32))[(start - lo) * hop:(stop - lo) * hop]

    def frames(self, mel: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Every layer's conditioning (samples, L, 2R) float32 of frames [start, stop): the
        features, projected by one matrix product."""
        up = self.features(mel, start, stop)
        return (up @ self.projection).reshape(len(up), self.config.n_layers, -1)


def frame_sharpness(config: VoicingConfig, weights: dict[str, np.ndarray], mel: np.ndarray) -> np.ndarray:
    """The voicing detector's (`tts.vocoder.voicing.VoicingDetector`) logit scale for each
    frame of mel (frames, n_mels): (frames,) float32 in [1, 1 + strength]."""
    g = sigmoid(np.asarray(mel, np.float32) @ weights["linear.weight"][0] + weights["linear.bias"][0])
    voiced = np.clip(np.float32(1.5) * g - np.float32(0.5), 0.0, 1.0)
    return (1.0 + np.float32(config.strength) * voiced).astype(np.float32)


def kernel_weights(config: WaveNetConfig, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A WaveNet's state dict (numpy arrays under its parameter names) -> the weights every
    kernel takes (`WaveNet.export_weights` documents the layout): float32 (dilations and
    lpc_order int32), C-contiguous."""
    L = config.n_layers

    def stacked(name: str, take) -> np.ndarray:
        return np.stack([take(state[f"{name}.{l}.weight"]) for l in range(L)])

    out = {
        "embedding": state["embedding.weight"],  # (n_classes, R)
        # conv weight (2R, R, tap) -> (tap, 2R, R), stacked: (L, 2, 2R, R)
        "dilated_w": stacked("dilated", lambda w: w.transpose(2, 0, 1)),
        "dilated_b": np.stack([state[f"dilated.{l}.bias"] for l in range(L)]),  # (L, 2R)
        "res_w": stacked("res", lambda w: w[:, :, 0]),  # (L, R, R)
        "res_b": np.stack([state[f"res.{l}.bias"] for l in range(L)]),  # (L, R)
        "skip_w": stacked("skip", lambda w: w[:, :, 0]),  # (L, S, R)
        "skip_b": np.stack([state[f"skip.{l}.bias"] for l in range(L)]),  # (L, S)
        "out1_w": state["out1.weight"][:, :, 0],  # (A, S)
        "out1_b": state["out1.bias"],  # (A,)
        # Divided by the sampling temperature: the logits come out already scaled.
        "out2_w": state["out2.weight"][:, :, 0] / np.float32(config.temperature),  # (n_classes, A)
        "out2_b": state["out2.bias"] / np.float32(config.temperature),  # (n_classes,)
        "dilations": np.array(config.dilations),  # (L,)
    }
    if config.lpc_inputs:
        out["embedding_signal"] = state["embedding_signal.weight"]  # (n_classes, R)
        out["embedding_prediction"] = state["embedding_prediction.weight"]  # (n_classes, R)
        out["lpc_order"] = np.array(config.lpc_order)  # ()
    return {name: np.array(a, dtype=np.int32 if name in ("dilations", "lpc_order") else np.float32, order="C")
            for name, a in out.items()}


class ExportedDims(NamedTuple):
    n_layers: int
    residual_channels: int
    skip_channels: int
    output_channels: int
    n_classes: int
    max_dilation: int
    lpc_order: int = 0  # > 0: LPCNet's inputs, the predictor of this order in the loop


# ---- what the network's samples stand for ---------------------------------------------------

def signal_to_model(config: WaveNetConfig, audio: np.ndarray, mel: np.ndarray, before: np.ndarray | None = None
                    ) -> np.ndarray:
    """Audio (frames * hop,) with its mel (frames, n_mels) -> the signal the network models:
    the audio, its pre-emphasis, or its linear-prediction excitation. ``before``: the audio's
    preceding samples (zeros where absent)."""
    audio = np.asarray(audio, np.float32)
    before = np.zeros(0, np.float32) if before is None else np.asarray(before, np.float32)
    if config.lpc_order:
        history = np.concatenate([np.zeros(config.lpc_order, np.float32), before])[-config.lpc_order:]
        return lpc_residual(audio, lpc_from_mel(mel, config.lpc_order), config.hop_length, history)
    if config.pre_emphasis:
        previous = before[-1] if len(before) else 0.0
        return pre_emphasis(np.concatenate([[previous], audio]).astype(np.float32), config.pre_emphasis)[1:]
    return audio


def model_to_signal(config: WaveNetConfig, samples: np.ndarray, mel: np.ndarray, carry=None,
                    coefficients: np.ndarray | None = None):
    """The network's decoded samples (frames * hop,) of mel frames (frames, n_mels) -> audio,
    resumable chunk by chunk: returns (audio, carry) and takes the previous chunk's carry.
    ``coefficients``: the frames' `lpc_from_mel`, where the caller has made them already."""
    if config.lpc_order:
        coefficients = lpc_from_mel(mel, config.lpc_order) if coefficients is None else coefficients
        return lpc_synthesis(samples, coefficients, config.hop_length, carry)
    if config.pre_emphasis:
        return de_emphasis(samples, config.pre_emphasis, 0.0 if carry is None else carry)
    return np.asarray(samples, np.float32), None


def validate_exported(weights: dict, cond: np.ndarray | None = None) -> ExportedDims:
    """Check `export_weights()` output (and optionally `export_conditioning()` output) for
    every key, dtype, contiguity and shape; raise ValueError naming the first bad tensor."""
    expected_keys = ("embedding", "dilated_w", "dilated_b", "res_w", "res_b", "skip_w", "skip_b",
                     "out1_w", "out1_b", "out2_w", "out2_b", "dilations")
    lpc_keys = ("embedding_signal", "embedding_prediction", "lpc_order")  # lpc_inputs: all three
    if any(k in weights for k in lpc_keys):
        expected_keys += lpc_keys
    missing = [k for k in expected_keys if k not in weights]
    if missing:
        raise ValueError(f"exported weights lack {', '.join(missing)}")
    unknown = sorted(set(weights) - set(expected_keys))
    if unknown:
        raise ValueError(f"exported weights have unknown keys {', '.join(unknown)}")
    for name in expected_keys:
        arr = weights[name]
        dtype = np.int32 if name in ("dilations", "lpc_order") else np.float32
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"{name} is a {type(arr).__name__}, expected a numpy array")
        if arr.dtype != dtype:
            raise ValueError(f"{name} has dtype {arr.dtype}, expected {np.dtype(dtype)}")
        if not arr.flags.c_contiguous:
            raise ValueError(f"{name} is not C-contiguous")
    # The dimensions are read off these four; every other shape is checked against them.
    for name, symbolic in (("embedding", "(n_classes, R)"), ("res_w", "(L, R, R)"),
                           ("skip_w", "(L, S, R)"), ("out1_w", "(A, S)")):
        if weights[name].ndim != symbolic.count(",") + 1:
            raise ValueError(f"{name} has shape {weights[name].shape}, expected {symbolic}")
    n_classes, R = weights["embedding"].shape
    L, S, A = weights["res_w"].shape[0], weights["skip_w"].shape[1], weights["out1_w"].shape[0]
    expected_shapes = {
        "embedding": ("(n_classes, R)", (n_classes, R)),
        "dilated_w": ("(L, 2, 2R, R)", (L, 2, 2 * R, R)),
        "dilated_b": ("(L, 2R)", (L, 2 * R)),
        "res_w": ("(L, R, R)", (L, R, R)),
        "res_b": ("(L, R)", (L, R)),
        "skip_w": ("(L, S, R)", (L, S, R)),
        "skip_b": ("(L, S)", (L, S)),
        "out1_w": ("(A, S)", (A, S)),
        "out1_b": ("(A,)", (A,)),
        "out2_w": ("(n_classes, A)", (n_classes, A)),
        "out2_b": ("(n_classes,)", (n_classes,)),
        "dilations": ("(L,)", (L,)),
        "embedding_signal": ("(n_classes, R)", (n_classes, R)),
        "embedding_prediction": ("(n_classes, R)", (n_classes, R)),
        "lpc_order": ("()", ()),
    }
    expected_shapes = {name: shape for name, shape in expected_shapes.items() if name in expected_keys}
    for name, (symbolic, shape) in expected_shapes.items():
        if weights[name].shape != shape:
            raise ValueError(f"{name} has shape {weights[name].shape}, expected {symbolic} = {shape}")
    dilations = weights["dilations"]
    if L < 1 or (dilations < 1).any():
        raise ValueError(f"dilations must be >= 1 for at least one layer, got {dilations.tolist()}")
    if cond is not None:
        if not isinstance(cond, np.ndarray) or cond.dtype != np.float32:
            got = getattr(cond, "dtype", type(cond).__name__)
            raise ValueError(f"cond must be a float32 numpy array, got {got}")
        if cond.ndim != 3 or cond.shape[1:] != (L, 2 * R):
            raise ValueError(f"cond has shape {cond.shape}, expected (T, L, 2R) = (T, {L}, {2 * R})")
        if not cond.flags.c_contiguous:
            raise ValueError("cond is not C-contiguous")
    lpc_order = int(weights["lpc_order"]) if "lpc_order" in weights else 0
    if "lpc_order" in weights and lpc_order < 1:
        raise ValueError(f"lpc_order must be >= 1, got {lpc_order}")
    return ExportedDims(L, R, S, A, n_classes, int(dilations.max()), lpc_order)
