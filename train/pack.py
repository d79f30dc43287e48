"""A feature pack: one file that carries a corpus's training features to a machine that has
neither the corpus nor the teacher that read it.

    python -m tts.train.pack build --data CORPUS --out PACK.npz [--max-mb 38] [--trim-db 40|none]
    python -m tts.train.pack unpack PACK.npz --to DIR

``build`` reads the corpus's feature cache (building it first where it is missing) and packs
as many clips as fit under --max-mb (1 MB = 10^6 bytes), in the corpus's metadata order: that
order is a uniform shuffle (train/corpus.py), so the packed prefix is a uniform sample.
``unpack`` writes an LJ Speech-layout folder, ``metadata.csv`` and ``wavs/<id>.wav``, together
with its feature cache already built, so that ``python -m tts.train parallel --data DIR`` (or
``vocoder``, ``acoustic``) starts training without computing a feature. A pack made with another
symbol table or audio config than this engine's is refused.

The pack is a numpy ``.npz`` (read with ``allow_pickle=False``); the clips' arrays are
concatenated, clip after clip:

    meta       (bytes,) uint8            UTF-8 JSON: format, audio config, trim_db, symbol
                                         table, and per clip its id, text, normalized text
    n_ids      (clips,) int32            phoneme ids per clip
    ids        (sum n_ids,) int16
    frames     (clips,) int32            mel frames per clip
    flac       (sum flac_bytes,) uint8   each clip's cached (trimmed, peak-normalized) waveform
                                         as 16-bit FLAC, losslessly compressed
    flac_bytes (clips,) int64
    mel_basis  (n_mels, n_fft/2+1) f32   the mel filterbank the mels are made with

The mels are not packed: ``unpack`` makes them from the audio (torch's STFT and the packed
filterbank, so neither librosa nor a GPU is needed; within 1.5e-3 of the mels of the float
waveform, far below what the models resolve). FLAC takes about 18 kB per second of speech,
where version 1's 8-bit mu-law audio and float16 mels took 23 (BENCHMARKS.md), so a pack of
38 MB (the default, what fits beside the repository on a GPU machine) holds about 0.57 h, and
the audio is 16-bit rather than 8-bit mu-law. Version 1 packs still unpack.

Errors a user can cause end in one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from tts.train.data import Clip, DatasetError, FeatureCache, cache_key, metadata_digest, read_metadata
from tts.audio import (DEFAULT_AUDIO, AudioFileError, mel_basis, mel_spectrogram_torch, mu_law_decode,
                       write_audio)
from tts.command import EXIT_OK, OneLineParser, run_command
from tts.files import FILE_MODE
from tts.text.symbols import SYMBOLS

PACK_FORMAT = "tts-feature-pack"
PACK_VERSION = 2
READS = (1, 2)  # the versions unpack reads
MB = 1_000_000
# The working tree that travels to a GPU machine holds 64 MiB (67.1 MB) in all: the
# repository's own ~24 MB and the carried wheels' ~3 MB (kernels/gpu_wheels.sh) leave ~40.
DEFAULT_MAX_MB = 38.0
ARRAYS = {1: ("meta", "n_ids", "ids", "frames", "mel", "wave"),
          2: ("meta", "n_ids", "ids", "frames", "flac", "flac_bytes", "mel_basis")}
META_KEYS = {"format", "version", "audio", "trim_db", "symbols", "clips"}
# What the .npz adds to its arrays' deflated bytes: per array a zip entry and an .npy header.
CONTAINER_BYTES = 4096


class PackError(ValueError):
    """A pack that cannot be built or unpacked as asked."""


def _parse_trim_db(value: str) -> float | None:
    if value.lower() == "none":
        return None
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected decibels or none, got {value!r}") from None


def _deflated(a: np.ndarray) -> int:
    """Bytes of ``a`` once deflated as the .npz writer does (zlib's default level)."""
    return len(zlib.compress(np.ascontiguousarray(a).tobytes()))


def _write_part(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """The pack written beside ``path`` under a temporary name, renamed into place by the caller
    once it is known to fit, so that the pack is complete or absent."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:  # a file object: np.savez would add ".npz" to a name
            np.savez_compressed(f, **arrays)
        os.chmod(tmp, FILE_MODE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def to_flac(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """A float waveform as the bytes of a 16-bit FLAC file, (n,) uint8."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wave, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


def from_flac(data: np.ndarray) -> np.ndarray:
    """`to_flac`'s bytes -> the float32 waveform."""
    wave, _ = sf.read(io.BytesIO(data.tobytes()), dtype="float32")
    return wave


def _packed_clip(cache: FeatureCache, i: int, texts: dict[str, Clip]) -> tuple[dict[str, np.ndarray], dict, int]:
    """(arrays, record, estimated bytes in the pack) of the cache's clip ``i``."""
    feats, audio = cache[i], cache.audio
    clip = {"ids": feats["ids"].astype(np.int16), "frames": len(feats["mel"]),
            "flac": to_flac(feats["wave"], audio.sample_rate)}
    text = texts[cache.entries[i]["id"]]
    record = {"id": text.id, "text": text.text, "normalized": text.normalized}
    return clip, record, _deflated(clip["ids"]) + len(clip["flac"]) + len(json.dumps(record).encode()) + 16


def _pack_arrays(meta: dict, clips: list[dict[str, np.ndarray]], basis: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "meta": np.frombuffer(json.dumps(meta, ensure_ascii=False).encode(), dtype=np.uint8),
        "n_ids": np.array([len(c["ids"]) for c in clips], dtype=np.int32),
        "ids": np.concatenate([c["ids"] for c in clips]),
        "frames": np.array([c["frames"] for c in clips], dtype=np.int32),
        "flac": np.concatenate([c["flac"] for c in clips]),
        "flac_bytes": np.array([len(c["flac"]) for c in clips], dtype=np.int64),
        "mel_basis": basis,
    }


def build(data: str | os.PathLike, out: str | os.PathLike, max_mb: float = DEFAULT_MAX_MB,
          trim_db: float | None = 40.0, progress: bool = True) -> dict:
    """Pack the first clips of a corpus that fit under ``max_mb``; a summary of the pack."""
    data, out = Path(data), Path(out)
    if not data.is_dir():
        raise PackError(f"corpus folder not found: {data}")
    if not (data / "metadata.csv").is_file():
        raise PackError(f"{data} has no metadata.csv (expected the LJ Speech layout)")
    if not out.parent.is_dir():
        raise PackError(f"output folder does not exist: {out.parent}")
    if out.is_dir():
        raise PackError(f"{out} is a folder; --out names the pack file to write")
    if max_mb <= 0:
        raise PackError(f"--max-mb must be positive, got {max_mb:g}")
    audio = DEFAULT_AUDIO
    cache = FeatureCache(data, audio=audio, trim_db=trim_db)
    if not cache.built:
        cache.build(workers=min(8, os.cpu_count() or 1), progress=progress)
    texts = {c.id: c for c in read_metadata(data)}
    limit = int(max_mb * MB)
    meta = {"format": PACK_FORMAT, "version": PACK_VERSION, "audio": audio.to_dict(), "trim_db": trim_db,
            "symbols": list(SYMBOLS), "clips": []}
    clips: list[dict[str, np.ndarray]] = []
    sizes: list[int] = []  # each clip's estimated share of the pack
    basis = mel_basis(audio).astype(np.float32)
    used = CONTAINER_BYTES + len(json.dumps(meta).encode()) + _deflated(basis)
    first = _packed_clip(cache, 0, texts)[2]
    if used + first > limit:
        raise PackError(f"--max-mb {max_mb:g} is too small for even the corpus's first clip "
                        f"({(used + first) / MB:.3f} MB)")
    with tqdm(total=limit, desc="packing", unit="B", unit_scale=True, disable=not progress) as bar:
        for i in range(len(cache)):
            clip, record, size = _packed_clip(cache, i, texts)
            if used + size > limit:
                break
            used += size
            clips.append(clip)
            sizes.append(size)
            meta["clips"].append(record)
            bar.update(size)
    # The estimate deflates clip by clip; should the whole come out larger, drop clips and write again.
    while True:
        part = _write_part(out, _pack_arrays(meta, clips, basis))
        nbytes = part.stat().st_size
        if nbytes <= limit or len(clips) == 1:
            break
        part.unlink()
        excess = nbytes - limit
        while excess > 0 and len(clips) > 1:
            excess -= sizes.pop()
            clips.pop()
            meta["clips"].pop()
    if nbytes > limit:
        part.unlink()
        raise PackError(f"--max-mb {max_mb:g} is too small for even the corpus's first clip ({nbytes / MB:.3f} MB)")
    os.replace(part, out)
    frames = sum(c["frames"] for c in clips)
    return {"clips": len(clips), "of": len(cache), "hours": frames * audio.hop_length / audio.sample_rate / 3600,
            "bytes": nbytes, "path": out}


# --- Reading and unpacking ---------------------------------------------------------------

def read_pack(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a pack, checked for consistency; a PackError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise PackError(f"pack not found: {path}")
    not_a_pack = PackError(f"{path} is not a feature pack (python -m tts.train.pack build makes one)")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise not_a_pack
        with loaded:
            files = set(loaded.files)
            version = next((v for v, names in ARRAYS.items() if files == set(names)), None)
            if version is None:
                raise not_a_pack
            arrays = {k: loaded[k] for k in ARRAYS[version]}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, UnicodeDecodeError):
        raise not_a_pack from None  # the one line a user needs, whatever the reader tripped on
    if not isinstance(meta, dict) or meta.get("format") != PACK_FORMAT or not META_KEYS <= meta.keys():
        raise not_a_pack
    if meta.get("version") not in READS or meta["version"] != version:
        raise PackError(f"{path} is a version {meta.get('version')} pack; this engine reads versions "
                        f"{', '.join(map(str, READS))}")
    n_ids, frames = arrays["n_ids"].astype(np.int64), arrays["frames"].astype(np.int64)
    hop = meta["audio"]["hop_length"]
    names_ok = all(c["id"] and c["id"] == Path(c["id"]).name and c["id"] not in (".", "..") for c in meta["clips"])
    if version == 1:
        audio_ok = frames.sum() == len(arrays["mel"]) and frames.sum() * hop == len(arrays["wave"])
    else:
        audio_ok = len(arrays["flac_bytes"]) == len(frames) and arrays["flac_bytes"].sum() == len(arrays["flac"])
    if not (names_ok and len(meta["clips"]) == len(n_ids) == len(frames) and n_ids.sum() == len(arrays["ids"])
            and audio_ok):
        raise PackError(f"{path} is damaged: its arrays do not add up to its clips")
    return meta, arrays


def check_compatible(meta: dict, path: Path, arrays: dict | None = None) -> None:
    """Features made with another symbol table or audio config would train a model this
    engine cannot speak with."""
    if meta["symbols"] != list(SYMBOLS):
        raise PackError(f"{path} was made with another symbol table than this engine's; rebuild it here")
    if meta["audio"] != DEFAULT_AUDIO.to_dict():
        raise PackError(f"{path} was made with another audio config than this engine's; rebuild it here")
    if arrays is not None and "mel_basis" in arrays and arrays["mel_basis"].shape != (DEFAULT_AUDIO.n_mels, DEFAULT_AUDIO.n_fft // 2 + 1):
        raise PackError(f"{path} is damaged: its mel filterbank has shape {arrays['mel_basis'].shape}")


def unpack(path: str | os.PathLike, to: str | os.PathLike, progress: bool = True) -> dict:
    """Write the pack's corpus, with its feature cache built, into the new folder ``to``."""
    path, to = Path(path), Path(to)
    meta, arrays = read_pack(path)
    check_compatible(meta, path, arrays)
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise PackError(f"{to} already exists and is not empty")
    to.parent.mkdir(parents=True, exist_ok=True)
    audio, trim_db = DEFAULT_AUDIO, meta["trim_db"]
    # Everything goes into a folder beside the target, renamed into place when complete.
    staging = Path(tempfile.mkdtemp(prefix=f".{to.name}.", suffix=".part", dir=to.parent))
    try:
        os.chmod(staging, 0o755)
        (staging / "wavs").mkdir()
        cache_dir = staging / ".cache" / cache_key(audio, trim_db)
        cache_dir.mkdir(parents=True)
        (staging / "metadata.csv").write_text(
            "".join(f"{c['id']}|{c['text']}|{c['normalized']}\n" for c in meta["clips"]), encoding="utf-8")
        ids_at = np.concatenate([[0], np.cumsum(arrays["n_ids"], dtype=np.int64)])
        entries = []
        for i, (clip, (wave, mel)) in enumerate(zip(tqdm(meta["clips"], desc="unpacking", unit="clip",
                                                         disable=not progress), _clips_audio(meta, arrays))):
            write_audio(staging / "wavs" / f"{clip['id']}.wav", wave, audio.sample_rate)
            ids = arrays["ids"][ids_at[i]:ids_at[i + 1]]
            np.savez(cache_dir / f"{clip['id']}.npz", ids=ids, mel=mel, wave=wave)
            entries.append({"id": clip["id"], "n_ids": len(ids), "frames": len(mel)})
        manifest = {"audio": audio.to_dict(), "trim_db": trim_db, "clips": entries, "skipped": [],
                    "metadata": metadata_digest(staging)}
        (cache_dir / "manifest.json").write_text(json.dumps(manifest))
        if to.is_dir():
            to.rmdir()
        os.replace(staging, to)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    frames = int(arrays["frames"].sum())
    return {"clips": len(entries), "hours": frames * audio.hop_length / audio.sample_rate / 3600,
            "trim_db": trim_db, "path": to}


def _clips_audio(meta: dict, arrays: dict[str, np.ndarray]):
    """Each clip's (waveform (frames * hop,) float32, mel (frames, n_mels) float32)."""
    audio = DEFAULT_AUDIO
    frames_at = np.concatenate([[0], np.cumsum(arrays["frames"], dtype=np.int64)])
    if "mel" in arrays:  # version 1: 8-bit mu-law audio and float16 mels
        for i in range(len(arrays["frames"])):
            a, b = frames_at[i], frames_at[i + 1]
            wave = mu_law_decode(arrays["wave"][a * audio.hop_length:b * audio.hop_length], audio.mu_law_classes)
            yield wave, arrays["mel"][a:b].astype(np.float32)
        return
    bytes_at = np.concatenate([[0], np.cumsum(arrays["flac_bytes"])])
    basis = np.ascontiguousarray(arrays["mel_basis"], dtype=np.float32)
    for i, frames in enumerate(arrays["frames"]):
        wave = from_flac(arrays["flac"][bytes_at[i]:bytes_at[i + 1]])
        wave = np.pad(wave, (0, max(0, frames * audio.hop_length - len(wave))))[:frames * audio.hop_length]
        with torch.no_grad():
            mel = mel_spectrogram_torch(torch.from_numpy(wave), audio, basis).numpy()[:frames]
        if len(mel) != frames:
            raise PackError(f"clip {meta['clips'][i]['id']} makes {len(mel)} mel frames, the pack says {frames}")
        yield wave, np.ascontiguousarray(mel, dtype=np.float32)


# --- Command line ------------------------------------------------------------------------

def _build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m tts.train.pack build", description="Pack a corpus's training features into one file.")
    p.add_argument("--data", required=True, type=Path, help="corpus folder (LJ Speech layout)")
    p.add_argument("--out", required=True, type=Path, help="pack file to write (.npz)")
    p.add_argument("--max-mb", type=float, default=DEFAULT_MAX_MB,
                   help=f"largest pack, in MB of 10^6 bytes (default {DEFAULT_MAX_MB:g})")
    p.add_argument("--trim-db", type=_parse_trim_db, default=40.0,
                   help="the feature cache's silence trimming, as the tasks' trim_db (default 40; none: untrimmed)")
    return p


def _unpack_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m tts.train.pack unpack", description="Write a pack's corpus and feature cache.")
    p.add_argument("pack", type=Path)
    p.add_argument("--to", required=True, type=Path, help="corpus folder to create (absent or empty)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    def body() -> int:
        if argv and argv[0] in ("-h", "--help"):
            print(__doc__.strip())
            return EXIT_OK
        if not argv or argv[0] not in ("build", "unpack"):
            raise PackError("expected build or unpack (-h for help)")
        if argv[0] == "build":
            args = _build_parser().parse_args(argv[1:])
            s = build(args.data, args.out, args.max_mb, args.trim_db)
            print(f"packed {s['clips']} of {s['of']} clips, {s['hours']:.2f} h of audio, "
                  f"{s['bytes'] / MB:.1f} MB: {s['path']}")
        else:
            args = _unpack_parser().parse_args(argv[1:])
            s = unpack(args.pack, args.to)
            trim = "none" if s["trim_db"] is None else f"{s['trim_db']:g}"
            print(f"unpacked {s['clips']} clips, {s['hours']:.2f} h of audio, trim_db {trim}: {s['path']}")
        return EXIT_OK

    return run_command("pack", body, usage=(PackError, DatasetError, AudioFileError))


if __name__ == "__main__":
    sys.exit(main())
