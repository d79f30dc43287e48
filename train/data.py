"""Datasets in the LJ Speech layout, a feature cache, and length-bucketed distributed batching.

A dataset folder holds ``metadata.csv`` (``id|text|normalized text``, UTF-8, no header) and
``wavs/<id>.wav`` (or ``.flac``). Every corpus of the engine uses this layout.

Features are computed once per clip and cached under ``<cache>/<key>/``, where the key changes
with the audio config and the symbol table, so a cache is reused exactly while both are
unchanged. Per clip the cache holds the phoneme ids ``(N,)``, the mel ``(frames, n_mels)`` and
the trimmed 16 kHz waveform ``(frames * hop,)`` that the mel was computed from.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from tts.audio import DEFAULT_AUDIO, AudioConfig, load_audio, mel_spectrogram, normalize_peak, trim_silence
from tts.files import replacing
from tts.text import NothingToSpeakError, text_to_ids
from tts.text.symbols import PAD_ID, SYMBOLS
from tts.workers import WarmupProgress, worker_pool

CACHE_FORMAT = 1


class DatasetError(ValueError):
    """A dataset folder that does not follow the LJ Speech layout."""


@dataclass(frozen=True)
class Clip:
    id: str
    text: str
    normalized: str
    wav: Path


def read_metadata(root: str | os.PathLike) -> list[Clip]:
    """The clips of an LJ Speech-layout folder, in file order."""
    root = Path(root)
    meta = root / "metadata.csv"
    if not meta.is_file():
        raise DatasetError(f"{root} has no metadata.csv (expected the LJ Speech layout)")
    clips = []
    # LJ Speech quotes text freely, so the csv module (which treats '"' specially) is not used.
    for lineno, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 2:
            raise DatasetError(f"{meta}:{lineno}: expected 'id|text|normalized text'")
        clip_id, text = fields[0].strip(), fields[1].strip()
        normalized = fields[2].strip() if len(fields) > 2 and fields[2].strip() else text
        clips.append(Clip(clip_id, text, normalized, clip_audio_path(root, clip_id)))
    return clips


def clip_audio_path(root: Path, clip_id: str) -> Path:
    """``wavs/<id>.wav``, or ``wavs/<id>.flac`` where only that one is there."""
    wav = root / "wavs" / f"{clip_id}.wav"
    flac = wav.with_suffix(".flac")
    return flac if not wav.is_file() and flac.is_file() else wav


def metadata_digest(root: Path) -> str:
    meta = Path(root) / "metadata.csv"
    return hashlib.sha1(meta.read_bytes()).hexdigest() if meta.is_file() else ""


# --- Feature cache -----------------------------------------------------------------------

def cache_key(audio: AudioConfig, trim_db: float | None) -> str:
    blob = json.dumps({"format": CACHE_FORMAT, "audio": audio.to_dict(), "trim_db": trim_db,
                       "symbols": list(SYMBOLS)}, sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


def compute_features(clip: Clip, audio: AudioConfig = DEFAULT_AUDIO, trim_db: float | None = 40.0) -> dict:
    """One clip's cached features: ids (N,), mel (frames, n_mels), wave (frames * hop,)."""
    ids = np.asarray(text_to_ids(clip.text), dtype=np.int16)
    wave = load_audio(clip.wav, audio)
    if trim_db is not None:
        wave = trim_silence(wave, top_db=trim_db)
    mel, wave = aligned_features(normalize_peak(wave), audio)
    return {"ids": ids, "mel": mel, "wave": wave}


def aligned_features(wave: np.ndarray, audio: AudioConfig = DEFAULT_AUDIO) -> tuple[np.ndarray, np.ndarray]:
    """(mel (frames, n_mels), wave (frames * hop,)), float32: the audio padded to whole frames
    so that the mel and the waveform align exactly (frame i <-> samples [i * hop, (i + 1) *
    hop)), which the vocoder's conditioning relies on."""
    frames = max(1, len(wave) // audio.hop_length)
    wave = np.pad(wave, (0, max(0, frames * audio.hop_length - len(wave))))[: frames * audio.hop_length]
    mel = mel_spectrogram(wave, audio)[:frames]
    return mel.astype(np.float32), wave.astype(np.float32)


def _build_one(job: tuple[Clip, Path, AudioConfig, float | None]) -> tuple[str, dict | None, dict | None]:
    """(clip id, its manifest entry, its features to write): the entry None where the clip has
    nothing to speak, the features None where the cache holds them already. Writes nothing:
    the building process does, so that a worker ended mid-clip leaves no file behind."""
    clip, path, audio, trim_db = job
    if path.is_file():  # a corpus that grew keeps the features it had
        with np.load(path, allow_pickle=False) as f:
            return clip.id, {"n_ids": len(f["ids"]), "frames": len(f["mel"])}, None
    try:
        feats = compute_features(clip, audio, trim_db)
    except (NothingToSpeakError, ValueError):
        return clip.id, None, None
    return clip.id, {"n_ids": len(feats["ids"]), "frames": len(feats["mel"])}, feats


def _write_features(path: Path, feats: dict[str, np.ndarray]) -> None:
    # A name of its own: two runs on one corpus may build the same clip's features at once.
    with replacing(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would add ".npz"
        np.savez(f, **feats)


def _init_feature_worker() -> None:
    # The pool is the parallelism: torch threads inside each worker would only contend.
    torch.set_num_threads(1)


class FeatureCache:
    """Cached features of one dataset folder; ``build()`` once, then index like a list."""

    def __init__(self, root: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                 audio: AudioConfig = DEFAULT_AUDIO, trim_db: float | None = 40.0):
        self.root = Path(root)
        self.audio = audio
        self.trim_db = trim_db
        base = Path(cache_dir) if cache_dir is not None else self.root / ".cache"
        self.dir = base / cache_key(audio, trim_db)
        self.manifest_path = self.dir / "manifest.json"
        self.entries: list[dict] = []
        self.digest = ""
        if self.manifest_path.is_file():
            manifest = json.loads(self.manifest_path.read_text())
            self.entries, self.digest = manifest["clips"], manifest.get("metadata", "")

    @property
    def built(self) -> bool:
        """Built, and for the metadata as it is now (a corpus that grows is cached anew)."""
        return self.manifest_path.is_file() and self.digest == metadata_digest(self.root)

    def build(self, workers: int = 1, progress: bool = True) -> "FeatureCache":
        """Compute missing features with a progress bar; clips with nothing to speak are skipped."""
        if self.built:
            return self
        clips = read_metadata(self.root)
        self.dir.mkdir(parents=True, exist_ok=True)
        jobs = [(c, self.dir / f"{c.id}.npz", self.audio, self.trim_db) for c in clips]
        results: dict[str, dict] = {}
        skipped: list[str] = []
        with worker_pool(workers, _init_feature_worker) if workers > 1 else nullcontext() as pool:
            outcomes = pool.map(_build_one, jobs, chunksize=8) if pool else map(_build_one, jobs)
            with WarmupProgress(total=len(jobs), desc="features", unit="clip", disable=not progress) as bar:
                for (_, path, _, _), (clip_id, entry, feats) in zip(jobs, outcomes):
                    if entry is None:
                        skipped.append(clip_id)
                    else:
                        if feats is not None:
                            _write_features(path, feats)
                        results[clip_id] = entry
                    bar.update()
        self.entries = [{"id": c.id, **results[c.id]} for c in clips if c.id in results]
        if not self.entries:
            raise DatasetError(f"no usable clip in {self.root}")
        self.digest = metadata_digest(self.root)
        manifest = {"audio": self.audio.to_dict(), "trim_db": self.trim_db, "clips": self.entries,
                    "skipped": skipped, "metadata": self.digest}
        with replacing(self.manifest_path) as tmp:
            tmp.write_text(json.dumps(manifest))
        return self

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        with np.load(self.dir / f"{self.entries[i]['id']}.npz", allow_pickle=False) as f:
            return {k: f[k] for k in f.files}

    def lengths(self, key: str = "frames") -> list[int]:
        return [e[key] for e in self.entries]


# --- Batching ----------------------------------------------------------------------------

class BucketBatchSampler(torch.utils.data.Sampler):
    """Length-bucketed batches, sharded across ranks like ``DistributedSampler``.

    Each epoch the indices are shuffled (seeded by ``seed + epoch``, identical on every rank),
    cut into pools of ``bucket_batches`` global batches, and each pool sorted by length, so a
    batch holds clips of similar length and padding stays small. A global batch of
    ``global_batch_size`` clips is dealt to the ranks round-robin: rank ``r`` takes its positions
    ``r, r + world, ...``. The union over ranks is the same whatever the world size, so N
    processes see the same global batches as one. The last partial global batch is dropped
    (``drop_last``) or filled with clips from the epoch's start.
    """

    def __init__(self, lengths: Sequence[int], global_batch_size: int, num_replicas: int = 1, rank: int = 0,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False, bucket_batches: int = 32):
        if global_batch_size % num_replicas:
            raise ValueError(f"global batch size {global_batch_size} is not divisible by {num_replicas} ranks")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, {num_replicas})")
        if len(lengths) == 0:
            raise ValueError("cannot batch an empty dataset")
        self.lengths = np.asarray(lengths)
        self.global_batch_size = global_batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.bucket_batches = bucket_batches
        self.epoch = 0
        self.start = 0  # batches of this epoch already consumed (for exact resume)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        n = len(self.lengths) / self.global_batch_size
        return math.floor(n) if self.drop_last else math.ceil(n)

    def global_batches(self) -> list[np.ndarray]:
        """This epoch's global batches (indices), the same on every rank."""
        n = len(self.lengths)
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            order = np.arange(n)
        total = len(self) * self.global_batch_size
        if total > n:  # fill the last batch from the start (wrapping for tiny datasets)
            order = np.concatenate([order, np.resize(order, total - n)])
        order = order[:total]
        pool = self.global_batch_size * self.bucket_batches
        batches = []
        for p in range(0, total, pool):
            chunk = order[p:p + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[b:b + self.global_batch_size] for b in range(0, len(chunk), self.global_batch_size)]
        if self.shuffle:  # sorted pools would otherwise run short-to-long within an epoch
            perm = np.random.default_rng(self.seed + self.epoch + 1_000_003).permutation(len(batches))
            batches = [batches[i] for i in perm]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches()[self.start:]:
            yield batch[self.rank::self.num_replicas].tolist()


class EpochBatches(torch.utils.data.Sampler):
    """A bucket sampler's batches, epoch after epoch from ``(epoch, start)`` on, each item keyed
    ``(epoch, index)`` for :class:`EpochItems`.

    One DataLoader then reads the whole run: its workers keep loading across an epoch's end
    instead of starting again, which matters most where an epoch is a batch or two (a few
    minutes of a speaker's recordings)."""

    def __init__(self, sampler: BucketBatchSampler, epoch: int = 0, start: int = 0):
        if len(sampler) == 0:
            raise ValueError("an epoch holds no batch: fewer clips than a batch, and drop_last")
        self.sampler, self.epoch, self.start = sampler, epoch, start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, start = self.epoch, self.start
        while True:
            self.sampler.set_epoch(epoch, start)
            for batch in self.sampler:
                yield [(epoch, i) for i in batch]
            epoch, start = epoch + 1, 0


class EpochItems(torch.utils.data.Dataset):
    """A dataset read by ``(epoch, index)`` keys: one that draws from its epoch (``set_epoch``,
    e.g. the vocoder's crops) is set to each item's own epoch, in whichever worker makes it."""

    def __init__(self, dataset: torch.utils.data.Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch, self.seed)
        return self.dataset[index]


def pad_stack(arrays: Sequence[np.ndarray], value: float = 0.0, dtype=torch.float32) -> torch.Tensor:
    """Pad along the first axis and stack: [(T_i, ...)] -> (B, max T, ...)."""
    t = max(len(a) for a in arrays)
    out = torch.full((len(arrays), t, *arrays[0].shape[1:]), value, dtype=dtype)
    for i, a in enumerate(arrays):
        out[i, :len(a)] = torch.as_tensor(a, dtype=dtype)
    return out


def collate_text_mel(items: Sequence[dict], multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """Batch (ids, mel) pairs: ids (B, N) padded with PAD, mel (B, T, n_mels) padded with silence (0),
    T rounded up to ``multiple_of`` (the acoustic model's reduction factor)."""
    ids = pad_stack([it["ids"].astype(np.int64) for it in items], PAD_ID, torch.long)
    mel = pad_stack([it["mel"] for it in items], 0.0)
    t = mel.shape[1]
    if t % multiple_of:
        mel = torch.nn.functional.pad(mel, (0, 0, 0, multiple_of - t % multiple_of))
    return {
        "ids": ids,
        "id_lengths": torch.tensor([len(it["ids"]) for it in items]),
        "mel": mel,
        "mel_lengths": torch.tensor([len(it["mel"]) for it in items]),
    }
