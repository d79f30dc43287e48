"""Voice folders: the weights-only format every model of the engine is shipped and loaded in.

A voice is a folder::

    config.json            format version, audio config, symbol table, one entry per model
    acoustic.safetensors   the acoustic model's weights
    vocoder.safetensors    the WaveNet's weights
    voicing.safetensors    optional: how voiced each mel frame is, for the WaveNet's sampling

``config.json`` reads ``{"format": 1, "audio": {...}, "symbols": [...], "models": {"acoustic":
{"kind": "parallel", "config": {...}, "weights": "acoustic.safetensors", "sha256": "..."}, ...}}``
(``kind``: which acoustic model, attention when absent; which vocoder network, the WaveNet
when absent; ``default_vocoder`` at the top: what "auto" speaks with; ``wavenet_weights``: the
precision its WaveNet runs in where a kernel takes it, "fp32" when absent). Loading rebuilds
each model from the folder alone with strict key matching; nothing is unpickled. A folder may
hold only some models (a trainer exports one at a time); ``load_voice`` says which it needs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError

from tts.audio import DEFAULT_AUDIO, AudioConfig
from tts.files import replacing
from tts.vocoder.choice import VOCODERS, WAVENET, WEIGHT_FORMATS
from tts.text.symbols import SYMBOLS

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
BUNDLED_VOICE = Path(__file__).parent / "voices" / "default"
DEFAULT_VOCODERS = tuple(VOCODERS)


class VoiceError(ValueError):
    """A voice folder that is missing, incomplete, damaged or from another format version."""


def _config_class(name: str, kind: str | None = None) -> type:
    """The config class of a model name (and its kind). Those inference runs without
    PyTorch (the parallel acoustic model, the WaveNet, its voicing detector, the neural G2P)
    import none."""
    if name == "acoustic" and kind == "parallel":
        from tts.inference import ParallelConfig

        return ParallelConfig
    if name == "vocoder":
        if kind not in (None, WAVENET):  # absent: the WaveNet, the one kind of network vocoder
            raise VoiceError(f"unknown vocoder kind {kind!r} (expected {WAVENET})")
        from tts.vocoder.inference import WaveNetConfig

        return WaveNetConfig
    if name == "voicing":
        from tts.vocoder.inference import VoicingConfig

        return VoicingConfig
    if name == "g2p":
        from tts.text.g2p_inference import G2PConfig

        return G2PConfig
    return _model_classes(name, kind)[1]


def _model_classes(name: str, kind: str | None = None) -> tuple[type, type]:
    """(torch model class, config class) for a model name (and its kind); imported late to
    keep imports light."""
    if name == "acoustic":
        from tts.acoustic import KINDS, model_classes

        if kind is not None and kind not in KINDS:
            raise VoiceError(f"unknown acoustic model kind {kind!r} (expected {' or '.join(KINDS)})")
        return model_classes(kind)
    if name == "vocoder":
        from tts.vocoder.wavenet import WaveNet

        return WaveNet, _config_class(name, kind)
    if name == "g2p":
        from tts.text.neural_g2p import G2PModel

        return G2PModel, _config_class(name, kind)
    if name == "voicing":
        from tts.vocoder.voicing import VoicingDetector

        return VoicingDetector, _config_class(name, kind)
    raise VoiceError(f"unknown model {name!r} (expected acoustic, vocoder, voicing or g2p)")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_config(voice_dir: str | os.PathLike) -> dict[str, Any]:
    """The parsed and checked ``config.json`` of a voice folder."""
    voice_dir = Path(voice_dir)
    if not voice_dir.is_dir():
        raise VoiceError(f"voice folder not found: {voice_dir}")
    path = voice_dir / CONFIG_FILE
    if not path.is_file():
        raise VoiceError(f"voice folder {voice_dir} has no {CONFIG_FILE}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VoiceError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT_VERSION:
        found = config.get("format") if isinstance(config, dict) else None
        raise VoiceError(f"{path} has voice format {found!r}; this engine reads format {FORMAT_VERSION}")
    if config.get("symbols") != list(SYMBOLS):
        raise VoiceError(f"{path} was made with another symbol table than this engine's")
    return config


def save_model(voice_dir: str | os.PathLike, name: str, model, audio: AudioConfig = DEFAULT_AUDIO) -> Path:
    """Add (or replace) one model in a voice folder, creating the folder if needed.

    The weights are written first, then config.json, each atomically, so a crash leaves the
    previous voice intact.
    """
    from safetensors.torch import save_file

    kind = getattr(unwrap(model), "kind", None)
    _model_classes(name, kind)
    voice_dir = Path(voice_dir)
    voice_dir.mkdir(parents=True, exist_ok=True)
    if (voice_dir / CONFIG_FILE).is_file():
        config = read_config(voice_dir)
        if AudioConfig.from_dict(config["audio"]) != audio:
            raise VoiceError(f"{voice_dir} holds models made for another audio config")
    else:
        config = {"format": FORMAT_VERSION, "audio": audio.to_dict(), "symbols": list(SYMBOLS), "models": {}}
    weights = voice_dir / f"{name}.safetensors"
    # Contiguous CPU copies, without DDP's "module." or torch.compile's "_orig_mod." prefixes.
    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    with replacing(weights) as tmp:
        save_file(state, str(tmp), metadata={"model": name})
    config["models"][name] = {"config": unwrap(model).config.to_dict(), "weights": weights.name,
                              "sha256": _sha256(weights)}
    if kind is not None:
        config["models"][name]["kind"] = kind
    _write_config(voice_dir, config)
    return voice_dir


def _write_config(voice_dir: Path, config: dict[str, Any]) -> None:
    with replacing(voice_dir / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def unwrap(model):
    """The plain model inside DistributedDataParallel and/or torch.compile wrappers."""
    import torch

    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def read_weights(voice_dir: str | os.PathLike, name: str, config: dict | None = None
                 ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One model of a voice folder as it is stored: (its entry in config.json, its weights as
    numpy arrays under their parameter names), the file checked against its checksum."""
    from safetensors.numpy import load_file

    voice_dir = Path(voice_dir)
    config = config if config is not None else read_config(voice_dir)
    entry = config.get("models", {}).get(name)
    if entry is None:
        raise VoiceError(f"voice {voice_dir} has no {name} model")
    weights = voice_dir / entry["weights"]
    if not weights.is_file():
        raise VoiceError(f"voice {voice_dir} is missing {entry['weights']}")
    if entry.get("sha256") and _sha256(weights) != entry["sha256"]:
        raise VoiceError(f"{weights} is damaged or was changed (checksum mismatch)")
    try:
        arrays = load_file(weights)
    except (SafetensorError, OSError, TypeError, ValueError) as e:
        raise VoiceError(f"cannot read {weights}: {e}") from None
    # Weights may be stored in half precision (the shipped G2P, half the size); every model
    # computes in float32, as a torch module loading them into its parameters does.
    return entry, {k: a.astype(np.float32) if a.dtype.kind == "f" and a.dtype != np.float32 else a
                   for k, a in arrays.items()}


def model_config(voice_dir: str | os.PathLike, name: str, entry: dict[str, Any]):
    """A model's config dataclass from its entry in config.json (VoiceError naming what is wrong)."""
    try:
        return _config_class(name, entry.get("kind")).from_dict(entry["config"])
    except (TypeError, ValueError, KeyError) as e:
        if isinstance(e, VoiceError):
            raise
        raise VoiceError(f"{voice_dir}/{CONFIG_FILE}: bad {name} config: {e}") from None


def load_model(voice_dir: str | os.PathLike, name: str, device="cpu", config: dict | None = None,
               arrays: tuple[dict[str, Any], dict[str, np.ndarray]] | None = None):
    """Rebuild one model of a voice folder as its torch module, in eval mode, on ``device``.
    ``arrays``: what `read_weights` returned for it, where it has been read already."""
    import torch

    voice_dir = Path(voice_dir)
    entry, state = arrays if arrays is not None else read_weights(voice_dir, name, config)
    model_cls, _ = _model_classes(name, entry.get("kind"))
    model = model_cls(model_config(voice_dir, name, entry))
    weights = voice_dir / entry["weights"]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise VoiceError(f"{weights} does not match its config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for key, array in state.items():
        if array.shape != tuple(expected[key].shape):
            raise VoiceError(f"{weights}: {key} has shape {tuple(array.shape)}, "
                             f"the config expects {tuple(expected[key].shape)}")
    model.load_state_dict({key: torch.from_numpy(array) for key, array in state.items()}, strict=True)
    return model.to(device).eval()


@dataclass
class Voice:
    """The models of a voice folder, each read when first asked for, with the audio config
    they were made for: as stored (`arrays`, numpy, what inference without PyTorch runs) or
    as torch modules (`model`)."""

    path: Path
    audio: AudioConfig
    config: dict[str, Any] = field(repr=False)
    device: Any = "cpu"
    models: dict[str, Any] = field(default_factory=dict, repr=False)  # torch modules built so far
    stored: dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]] = field(default_factory=dict, repr=False)
    # What `auto` speaks with: "wavenet" (the voice's own, through the fastest kernel) or
    # "griffin-lim", while the voice's WaveNet has not yet beaten it in evaluation.
    default_vocoder: str = WAVENET
    # The precision the WaveNet's weights stream in where the kernel takes it (`weights="auto"`):
    # "bf16" for a network wide enough that the float32 weight stream would not keep up.
    wavenet_weights: str = "fp32"

    def has(self, name: str) -> bool:
        """Whether the folder holds model ``name``."""
        return name in self.config.get("models", {})

    def arrays(self, name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """One model as stored: (its entry in config.json, its weights as numpy arrays), read
        on first use (VoiceError if the folder lacks it or it is damaged)."""
        if name not in self.stored:
            self.stored[name] = read_weights(self.path, name, self.config)
        return self.stored[name]

    def settings(self, name: str):
        """One model's config dataclass, from config.json (VoiceError if absent or bad)."""
        return model_config(self.path, name, self.arrays(name)[0])

    def model(self, name: str):
        """One model of the folder as its torch module, built on first use (VoiceError if the
        folder lacks it)."""
        if name not in self.models:
            self.models[name] = load_model(self.path, name, self.device, self.config, self.arrays(name))
        return self.models[name]

    @property
    def acoustic(self):
        return self.model("acoustic")

    @property
    def wavenet(self):
        """The voice's WaveNet (the network; `tts.vocoder.runtime` builds the vocoder around it)."""
        return self.model("vocoder")

    @property
    def voicing(self):
        """The WaveNet's voicing detector (voicing-dependent sampling), or None: the folder
        has none, and the WaveNet samples at its temperature everywhere."""
        return self.model("voicing") if self.has("voicing") else None


def load_voice(voice_dir: str | os.PathLike = BUNDLED_VOICE, device="cpu",
               require: tuple[str, ...] = ("acoustic", "vocoder")) -> Voice:
    """Open a voice folder and read the models named in ``require`` (each must be present and
    whole); the others are read when first asked for, and each becomes a torch module only
    when asked for as one."""
    voice_dir = Path(voice_dir)
    config = read_config(voice_dir)
    where = f"{voice_dir}/{CONFIG_FILE}"
    voice = Voice(voice_dir, AudioConfig.from_dict(config["audio"]), config, device,
                  default_vocoder=_setting(config, "default_vocoder", where),
                  wavenet_weights=_setting(config, "wavenet_weights", where))
    for name in require:
        voice.settings(name)  # its weights read and its config checked
    return voice


def set_temperature(voice_dir: str | os.PathLike, temperature: float) -> Path:
    """Set the sampling temperature the voice's WaveNet draws its samples at (see
    `WaveNetConfig.temperature`): a setting of generation, so the weights stay as they are."""
    return _set_model_setting(voice_dir, "vocoder", "temperature", float(temperature))


def set_voicing_strength(voice_dir: str | os.PathLike, strength: float) -> Path:
    """Set how much more sharply the voice's WaveNet samples voiced frames than unvoiced ones
    (see `VoicingConfig.strength`): a setting of generation, the detector stays as it is."""
    return _set_model_setting(voice_dir, "voicing", "strength", float(strength))


def _set_model_setting(voice_dir: str | os.PathLike, name: str, key: str, value) -> Path:
    """One field of model ``name``'s config, checked by its config class before it is written."""
    voice_dir = Path(voice_dir)
    config = read_config(voice_dir)
    entry = config.get("models", {}).get(name)
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        raise VoiceError(f"voice folder {voice_dir} has no {name} model to set a {key} for")
    settings = {**entry["config"], key: value}
    try:
        _config_class(name, entry.get("kind")).from_dict(settings)
    except (TypeError, ValueError) as e:
        raise VoiceError(str(e)) from None
    entry["config"] = settings
    _write_config(voice_dir, config)
    return voice_dir


def set_wavenet_weights(voice_dir: str | os.PathLike, weight_format: str) -> Path:
    """Record the precision ``weights="auto"`` runs the voice's WaveNet in (see
    `Voice.wavenet_weights`)."""
    return set_setting(voice_dir, "wavenet_weights", weight_format)


def set_default_vocoder(voice_dir: str | os.PathLike, name: str) -> Path:
    """Record what ``vocoder="auto"`` speaks this voice with (see `Voice.default_vocoder`)."""
    return set_setting(voice_dir, "default_vocoder", name)


# The voice's settings at the top of config.json: each one's choices, the first the default.
SETTINGS = {"default_vocoder": DEFAULT_VOCODERS, "wavenet_weights": WEIGHT_FORMATS}


def _setting(config: dict, key: str, where) -> str:
    value = config.get(key, SETTINGS[key][0])
    if value not in SETTINGS[key]:
        raise VoiceError(f"{where}: unknown {key} {value!r} (expected {' or '.join(SETTINGS[key])})")
    return value


def set_setting(voice_dir: str | os.PathLike, key: str, value: str) -> Path:
    """Record one of the voice's `SETTINGS` (VoiceError for an unknown value)."""
    voice_dir = Path(voice_dir)
    config = read_config(voice_dir)
    config[key] = _setting({key: value}, key, voice_dir)
    _write_config(voice_dir, config)
    return voice_dir
