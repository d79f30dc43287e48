"""The neural grapheme-to-phoneme model at inference, in numpy: what the frontend asks for a
word the pronouncing dictionary lacks, without importing PyTorch (`tts.inference` says why).

The model, its training and its torch decoding are `tts.text.neural_g2p`, whose docstring
draws the layers; `NeuralG2P.pronounce` decodes greedily as its ``predict`` does, one word at
a time, and the tests hold the two to the same phonemes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tts.config import JsonConfig

from .symbols import PHONEMES

LETTERS = "abcdefghijklmnopqrstuvwxyz'"
# Output vocabulary: three control ids, then the phonemes in symbol-table order. The order
# is fixed by ``symbols.PHONEMES``, which voice folders check on load.
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
OUTPUTS: tuple[str, ...] = ("<pad>", "<s>", "</s>") + PHONEMES
N_OUTPUTS = len(OUTPUTS)
PHONEME_TO_ID = {p: i for i, p in enumerate(OUTPUTS) if i > EOS_ID}

DEFAULT_DIR = Path(__file__).parent / "data"  # the shipped model, a voice folder holding only it


@dataclass(frozen=True)
class G2PConfig(JsonConfig):
    """The neural G2P's dimensions; stored as JSON next to the weights, enough to rebuild the model."""

    letters: str = LETTERS  # input alphabet; id 0 is padding, letter i has id i + 1
    embed_dim: int = 64
    encoder_dim: int = 256  # both directions together
    encoder_layers: int = 2
    decoder_dim: int = 256
    dropout: float = 0.1
    # Decoding stops after min(max_phonemes, 3 letters + 8) phonemes at the latest. CMUdict
    # has at most 28 phonemes per word, and initialisms reach 5 per letter ("fyi", 15).
    max_phonemes: int = 64

    def __post_init__(self):
        if not self.letters or len(set(self.letters)) != len(self.letters):
            raise ValueError(f"G2PConfig.letters must be distinct characters, got {self.letters!r}")
        for name in ("embed_dim", "encoder_layers", "decoder_dim", "max_phonemes"):
            if getattr(self, name) < 1:
                raise ValueError(f"G2PConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.encoder_dim < 2 or self.encoder_dim % 2:
            raise ValueError(f"G2PConfig.encoder_dim must be even (two directions), got {self.encoder_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"G2PConfig.dropout must be in [0, 1), got {self.dropout}")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * x)  # no overflow, where 1 / (1 + exp(-x)) overflows


class _GRU:
    """One direction of one layer of torch.nn.GRU: gates r, z, n in its weights' row order."""

    def __init__(self, weights: dict[str, np.ndarray], prefix: str, suffix: str = ""):
        self.w_ih = np.ascontiguousarray(weights[f"{prefix}.weight_ih{suffix}"].T)  # (in, 3H)
        self.w_hh = np.ascontiguousarray(weights[f"{prefix}.weight_hh{suffix}"].T)  # (H, 3H)
        self.b_ih, self.b_hh = weights[f"{prefix}.bias_ih{suffix}"], weights[f"{prefix}.bias_hh{suffix}"]
        self.size = self.w_hh.shape[0]

    def step(self, projected: np.ndarray, h: np.ndarray) -> np.ndarray:
        """One step from the input's projection (x @ w_ih + b_ih, (3H,)) and the state (H,)."""
        H = self.size
        g = h @ self.w_hh + self.b_hh
        r = _sigmoid(projected[:H] + g[:H])
        z = _sigmoid(projected[H:2 * H] + g[H:2 * H])
        n = np.tanh(projected[2 * H:] + r * g[2 * H:])
        return (1.0 - z) * n + z * h

    def run(self, x: np.ndarray, reverse: bool = False) -> np.ndarray:
        """A whole sequence (T, in) from a zero state -> outputs (T, H)."""
        projected = x @ self.w_ih + self.b_ih  # (T, 3H): every step's input at once
        h, out = np.zeros(self.size, x.dtype), np.empty((len(x), self.size), x.dtype)
        for t in (range(len(x) - 1, -1, -1) if reverse else range(len(x))):
            h = out[t] = self.step(projected[t], h)
        return out


class NeuralG2P:
    """The neural G2P's greedy decoding in numpy: a word in, its phonemes with stress out."""

    def __init__(self, config: G2PConfig, weights: dict[str, np.ndarray]):
        self.config = c = config
        self.letter_to_id = {ch: i + 1 for i, ch in enumerate(c.letters)}
        self.letter_embed, self.phoneme_embed = weights["letter_embed.weight"], weights["phoneme_embed.weight"]
        self.encoder = [(_GRU(weights, "encoder", f"_l{k}"), _GRU(weights, "encoder", f"_l{k}_reverse"))
                        for k in range(c.encoder_layers)]
        self.memory = (np.ascontiguousarray(weights["memory.weight"].T), weights["memory.bias"])
        self.init_states = (np.ascontiguousarray(weights["init_states.weight"].T), weights["init_states.bias"])
        self.decoder1, self.decoder2 = _GRU(weights, "decoder1", "_l0"), _GRU(weights, "decoder2", "_l0")
        self.query = np.ascontiguousarray(weights["query.weight"].T)
        self.out = (np.ascontiguousarray(weights["out.weight"].T), weights["out.bias"])

    def pronounce(self, word: str) -> list[str]:
        """One word's phonemes (``[]`` for a word with no letter of the alphabet); uppercase
        is folded, other characters dropped. The ``G2P.fallback`` signature."""
        ids = [self.letter_to_id[ch] for ch in word.lower() if ch in self.letter_to_id]
        if not ids:
            return []
        x = self.letter_embed[ids]  # (N, E)
        for forward, backward in self.encoder:
            x = np.concatenate([forward.run(x), backward.run(x, reverse=True)], axis=-1)  # (N, encoder_dim)
        memory = x @ self.memory[0] + self.memory[1]  # (N, D)
        # The top layer's last states of both directions summarize the whole word.
        summary = np.concatenate([x[-1, :x.shape[1] // 2], x[0, x.shape[1] // 2:]])
        h1, h2 = np.split(np.tanh(summary @ self.init_states[0] + self.init_states[1]), 2)
        scale, prev, phonemes = 1.0 / math.sqrt(memory.shape[1]), BOS_ID, []
        for _ in range(min(3 * len(ids) + 8, self.config.max_phonemes)):
            h1 = self.decoder1.step(self.phoneme_embed[prev] @ self.decoder1.w_ih + self.decoder1.b_ih, h1)
            scores = memory @ (h1 @ self.query) * scale  # (N,)
            weights = np.exp(scores - scores.max())
            context = (weights / weights.sum()) @ memory  # (D,)
            both = np.concatenate([h1, context])
            h2 = self.decoder2.step(both @ self.decoder2.w_ih + self.decoder2.b_ih, h2)
            logits = np.concatenate([h2, context]) @ self.out[0] + self.out[1]
            logits[[PAD_ID, BOS_ID]] = -np.inf
            prev = int(np.argmax(logits))
            if prev == EOS_ID:
                break
            phonemes.append(OUTPUTS[prev])
        return phonemes
