"""Neural grapheme-to-phoneme: a spelling in, ARPAbet with lexical stress out.

The frontend asks it for words the pronouncing dictionary lacks. It is trained on CMUdict by
the engine's trainer (``python -m tts.train g2p``, see ``train/tasks/g2p.py``) and shipped in
``tts/text/data/`` as a voice folder holding only a ``g2p`` model.

Layout: (B, T, C) throughout. Letters are ids (B, N), phonemes ids (B, T).

    encoder:  letters -> embedding -> bidirectional GRU (packed, so the backward direction
              starts at each word's last letter) -> memory (B, N, D)
    decoder:  previous phoneme -> embedding -> GRU 1 -> query
              -> attention: softmax(Wq query . memory / sqrt(D)) over the letters -> context
              -> GRU 2 over [GRU 1 output, context] -> Linear([GRU 2 output, context]) -> logits

The second GRU sees every earlier context, so it knows where the attention has been (what
"input feeding" gives a one-GRU decoder), while both GRUs still run over a whole
teacher-forced sequence in one call: training has no Python loop over time.

Three ways to run it, on the same weights (the third without PyTorch):
- ``forward``: teacher-forced and parallel, for the training loss.
- ``encode``, ``init_state``, ``step``: one phoneme at a time, every recurrent state in a
  ``DecoderState``; ``generate`` loops ``step`` greedily and ``predict`` wraps it for words.
  Fed the true previous phonemes, ``step`` computes exactly what ``forward`` computes.
- ``tts.text.g2p_inference.NeuralG2P``: ``predict``'s greedy decoding in numpy, what the
  frontend pronounces with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .g2p_inference import (BOS_ID, DEFAULT_DIR, EOS_ID, LETTERS, N_OUTPUTS, OUTPUTS, PAD_ID, PHONEME_TO_ID,
                            G2PConfig)

__all__ = ["BOS_ID", "DEFAULT_DIR", "EOS_ID", "LETTERS", "N_OUTPUTS", "OUTPUTS", "PAD_ID", "PHONEME_TO_ID",
           "DecoderState", "G2PConfig", "G2PModel", "phonemes_to_ids"]


@dataclass(frozen=True)
class DecoderState:
    """Everything one decoding step needs; ``step`` returns a new one."""

    memory: torch.Tensor  # (B, N, D) encoded letters
    mask: torch.Tensor  # (B, N) True at real letters
    h1: torch.Tensor  # (1, B, D) GRU 1 state
    h2: torch.Tensor  # (1, B, D) GRU 2 state


class G2PModel(nn.Module):
    """Letters -> phonemes with stress; see the module docstring for the layers."""

    def __init__(self, config: G2PConfig = G2PConfig()):
        super().__init__()
        self.config = config
        c = config
        self.letter_to_id = {ch: i + 1 for i, ch in enumerate(c.letters)}
        self.letter_embed = nn.Embedding(len(c.letters) + 1, c.embed_dim, padding_idx=0)
        self.encoder = nn.GRU(c.embed_dim, c.encoder_dim // 2, num_layers=c.encoder_layers,
                              batch_first=True, bidirectional=True,
                              dropout=c.dropout if c.encoder_layers > 1 else 0.0)
        self.memory = nn.Linear(c.encoder_dim, c.decoder_dim)
        self.init_states = nn.Linear(c.encoder_dim, 2 * c.decoder_dim)
        self.phoneme_embed = nn.Embedding(N_OUTPUTS, c.embed_dim, padding_idx=PAD_ID)
        self.decoder1 = nn.GRU(c.embed_dim, c.decoder_dim, batch_first=True)
        self.query = nn.Linear(c.decoder_dim, c.decoder_dim, bias=False)
        self.decoder2 = nn.GRU(2 * c.decoder_dim, c.decoder_dim, batch_first=True)
        self.out = nn.Linear(2 * c.decoder_dim, N_OUTPUTS)
        self.dropout = nn.Dropout(c.dropout)

    # --- text <-> ids ---------------------------------------------------------------------

    def encode_words(self, words: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Words -> letter ids (B, N) padded with 0, and lengths (B,). Characters outside
        the alphabet are dropped; a word left empty has length 0."""
        ids = [[self.letter_to_id[ch] for ch in w.lower() if ch in self.letter_to_id] for w in words]
        lengths = torch.tensor([len(x) for x in ids], dtype=torch.long)
        letters = torch.zeros(len(ids), max([1, *lengths.tolist()]), dtype=torch.long)
        for i, x in enumerate(ids):
            letters[i, :len(x)] = torch.tensor(x, dtype=torch.long)
        return letters, lengths

    # --- training -------------------------------------------------------------------------

    def encode(self, letters: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Letter ids (B, N) with lengths (B,), each >= 1 -> (memory (B, N, D), mask (B, N),
        initial decoder states (2, 1, B, D))."""
        if letters.numel() == 0 or int(lengths.min()) < 1:
            raise ValueError("every word needs at least one letter")
        n = letters.shape[1]
        x = self.dropout(self.letter_embed(letters))  # (B, N, E)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h_n = self.encoder(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=n)  # (B, N, encoder_dim)
        memory = self.memory(out)  # (B, N, D)
        mask = torch.arange(n, device=letters.device)[None, :] < lengths.to(letters.device)[:, None]  # (B, N)
        # The top layer's last states of both directions summarize the whole word.
        summary = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # (B, encoder_dim)
        h0 = torch.tanh(self.init_states(summary))  # (B, 2D)
        h0 = h0.view(h0.shape[0], 2, -1).transpose(0, 1).unsqueeze(1).contiguous()  # (2, 1, B, D)
        return memory, mask, h0

    def _attend(self, d1: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries (B, T, D) -> (context (B, T, D), weights (B, T, N))."""
        scores = self.query(d1) @ memory.transpose(1, 2) / math.sqrt(memory.shape[-1])  # (B, T, N)
        weights = scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(dim=-1)
        return weights @ memory, weights

    def _decode(self, prev: torch.Tensor, memory, mask, h1, h2):
        """Previous phoneme ids (B, T) -> (logits (B, T, V), attention (B, T, N), h1, h2)."""
        d1, h1 = self.decoder1(self.dropout(self.phoneme_embed(prev)), h1)  # (B, T, D)
        context, weights = self._attend(d1, memory, mask)  # (B, T, D), (B, T, N)
        d2, h2 = self.decoder2(torch.cat([d1, context], dim=-1), h2)  # (B, T, D)
        logits = self.out(self.dropout(torch.cat([d2, context], dim=-1)))  # (B, T, V)
        return logits, weights, h1, h2

    def forward(self, letters: torch.Tensor, lengths: torch.Tensor, prev: torch.Tensor,
                return_attention: bool = False):
        """Teacher forcing: letters (B, N), lengths (B,), previous phonemes (B, T) starting
        with BOS -> logits (B, T, V) over ``OUTPUTS`` (and attention (B, T, N) if asked)."""
        memory, mask, h0 = self.encode(letters, lengths)
        logits, weights, _, _ = self._decode(prev, memory, mask, h0[0], h0[1])
        return (logits, weights) if return_attention else logits

    # --- generation -----------------------------------------------------------------------

    def init_state(self, letters: torch.Tensor, lengths: torch.Tensor) -> DecoderState:
        memory, mask, h0 = self.encode(letters, lengths)
        return DecoderState(memory=memory, mask=mask, h1=h0[0], h2=h0[1])

    def step(self, state: DecoderState, prev: torch.Tensor) -> tuple[DecoderState, torch.Tensor]:
        """One phoneme: previous ids (B,) -> (next state, logits (B, V))."""
        logits, _, h1, h2 = self._decode(prev[:, None], state.memory, state.mask, state.h1, state.h2)
        return replace(state, h1=h1, h2=h2), logits[:, 0]

    @torch.no_grad()
    def generate(self, letters: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Greedy decoding: letters (B, N), lengths (B,) >= 1 -> phoneme ids per word (no
        BOS/EOS). Only phoneme ids can be chosen, and EOS."""
        b = letters.shape[0]
        limits = torch.clamp(3 * lengths + 8, max=self.config.max_phonemes).to(letters.device)  # (B,)
        state = self.init_state(letters, lengths)
        prev = torch.full((b,), BOS_ID, dtype=torch.long, device=letters.device)
        done = torch.zeros(b, dtype=torch.bool, device=letters.device)
        out = []
        for t in range(int(limits.max())):
            state, logits = self.step(state, prev)  # (B, V)
            logits[:, [PAD_ID, BOS_ID]] = float("-inf")
            prev = logits.argmax(dim=-1).masked_fill(done, EOS_ID)  # (B,)
            out.append(prev)
            done |= (prev == EOS_ID) | (t + 1 >= limits)
            if bool(done.all()):
                break
        ids = torch.stack(out, dim=1).tolist() if out else [[] for _ in range(b)]  # (B, T)
        return [[i for i in row if i > EOS_ID] for row in ids]

    @torch.no_grad()
    def predict(self, words: list[str], batch_size: int = 256) -> list[list[str]]:
        """Pronounce words: one phoneme list per word (``[]`` for a word with no letter of
        the alphabet). Any string is accepted; uppercase is folded, other characters dropped."""
        was_training = self.training
        self.eval()
        try:
            letters, lengths = self.encode_words(words)
            results: list[list[str]] = [[] for _ in words]
            # Similar lengths together, so that few steps are spent on padding.
            order = [i for i in sorted(range(len(words)), key=lambda i: int(lengths[i])) if lengths[i] > 0]
            device = next(self.parameters()).device
            for start in range(0, len(order), batch_size):
                idx = torch.tensor(order[start:start + batch_size])
                n = int(lengths[idx].max())
                ids = self.generate(letters[idx, :n].to(device), lengths[idx].to(device))
                for i, row in zip(idx.tolist(), ids):
                    results[i] = [OUTPUTS[j] for j in row]
            return results
        finally:
            self.train(was_training)

    def pronounce(self, word: str) -> list[str]:
        """One word's phonemes; the ``G2P.fallback`` signature."""
        return self.predict([word])[0]


def phonemes_to_ids(phonemes: list[str]) -> list[int]:
    """Phonemes -> output ids (no BOS/EOS); an unknown phoneme is a ``KeyError`` naming it."""
    try:
        return [PHONEME_TO_ID[p] for p in phonemes]
    except KeyError as e:
        raise KeyError(f"{e.args[0]!r} is not a phoneme of the symbol table") from None
