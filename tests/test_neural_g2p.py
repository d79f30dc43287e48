import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tts.train.data import DatasetError
from tts.train.tasks.g2p import (
    DICT_FILE,
    G2PDataset,
    G2PTask,
    G2PTaskConfig,
    edit_distance,
    is_eval_word,
    parse_cmudict,
)
from tts.text import default_g2p, to_phonemes
from tts.text.g2p import neural_or_rules
from tts.text.neural_g2p import (
    BOS_ID,
    DEFAULT_DIR,
    N_OUTPUTS,
    G2PConfig,
    G2PModel,
    phonemes_to_ids,
)
from tts.text.g2p import load_default
from tts.text.symbols import PHONEMES
from tts.voice import load_model, read_config

TINY = G2PConfig(embed_dim=16, encoder_dim=32, encoder_layers=1, decoder_dim=32, dropout=0.0)
PHONEME_SET = set(PHONEMES)
SHIPPED = (DEFAULT_DIR / "config.json").is_file()
WORDS = {
    "cat": "K AE1 T", "dog": "D AO1 G", "fish": "F IH1 SH", "bird": "B ER1 D",
    "phone": "F OW1 N", "knight": "N AY1 T", "cheese": "CH IY1 Z", "wrong": "R AO1 NG",
}


def tiny_task(**kwargs) -> G2PTask:
    return G2PTask(G2PTaskConfig(model=TINY, label_smoothing=0.0, **kwargs))


def batch_of(task, words=WORDS):
    ds = G2PDataset([(w, p.split()) for w, p in words.items()], task.config.model)
    return task.collate([ds[i] for i in range(len(ds))])


# --- model ----------------------------------------------------------------------------------


def test_config_round_trips_and_checks_its_fields():
    assert G2PConfig.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
    with pytest.raises(ValueError, match="unknown G2PConfig fields: bogus"):
        G2PConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="encoder_dim must be even"):
        G2PConfig(encoder_dim=33)
    with pytest.raises(ValueError, match="letters"):
        G2PConfig(letters="aa")


def test_forward_and_loss_shapes():
    torch.manual_seed(0)
    task = tiny_task()
    model = task.build_model()
    batch = batch_of(task)
    b, t = batch["target"].shape
    assert batch["letters"].shape == (b, 6) and batch["prev"].shape == (b, t)
    assert (batch["prev"][:, 0] == BOS_ID).all()
    logits, attention = model(batch["letters"], batch["lengths"], batch["prev"], return_attention=True)
    assert logits.shape == (b, t, N_OUTPUTS)
    assert attention.shape == (b, t, 6)
    # Each query spreads its attention over the word's own letters only.
    torch.testing.assert_close(attention.sum(-1), torch.ones(b, t))
    for i, n in enumerate(batch["lengths"].tolist()):
        assert (attention[i, :, n:] == 0).all()
    loss, scalars = task.loss(model, batch)
    assert loss.shape == () and torch.isfinite(loss)
    assert 0.0 <= float(scalars["phoneme_accuracy"]) <= 1.0


def test_step_computes_what_forward_computes():
    torch.manual_seed(0)
    model = G2PModel(TINY).eval()
    letters, lengths = model.encode_words(["hello", "a", "abracadabra"])
    prev = torch.randint(3, N_OUTPUTS, (3, 7))
    prev[:, 0] = BOS_ID
    with torch.no_grad():
        full = model(letters, lengths, prev)  # (B, T, V)
        state = model.init_state(letters, lengths)
        steps = []
        for t in range(prev.shape[1]):
            state, logits = model.step(state, prev[:, t])
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_a_word_is_decoded_the_same_alone_or_padded_in_a_batch():
    torch.manual_seed(0)
    model = G2PModel(TINY)
    alone = [model.predict([w])[0] for w in ("a", "cat", "hippopotamus")]
    assert model.predict(["a", "cat", "hippopotamus", "x" * 40]) [:3] == alone


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=25), min_size=1, max_size=5))
def test_predict_never_fails_and_says_only_phonemes(words):
    torch.manual_seed(0)
    model = G2PModel(TINY)
    out = model.predict(words)
    assert len(out) == len(words)
    for word, phonemes in zip(words, out):
        assert set(phonemes) <= PHONEME_SET
        letters = [ch for ch in word.lower() if ch in TINY.letters]
        assert len(phonemes) <= min(TINY.max_phonemes, 3 * len(letters) + 8)
        if not letters:
            assert phonemes == []


def test_a_tiny_model_learns_a_handful_of_words():
    torch.manual_seed(0)
    task = tiny_task()
    model = task.build_model()
    batch = batch_of(task)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss, _ = task.loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.predict(list(WORDS)) == [p.split() for p in WORDS.values()]
    metrics = task.evaluate(model.eval(), [batch], None, 0)
    assert metrics["per"] == 0.0 and metrics["wer"] == 0.0


def test_phonemes_to_ids_names_an_unknown_phoneme():
    assert len(phonemes_to_ids(["K", "AE1", "T"])) == 3
    with pytest.raises(KeyError, match="'AE' is not a phoneme"):
        phonemes_to_ids(["K", "AE", "T"])


# --- the task -------------------------------------------------------------------------------

CMUDICT_TEXT = """\
;;; a comment line
cat K AE1 T
cat(2) K AA1 T
co-op K OW1 AA0 P
a. EY1
d'artagnan D AH0 R T AE1 NG Y AH0 N # foreign french
Dog D AO1 G
bogus B OW1 G AX0 S
"""


def test_parse_cmudict_keeps_first_pronunciations_of_plain_words():
    assert parse_cmudict(CMUDICT_TEXT) == [
        ("cat", ["K", "AE1", "T"]),
        ("d'artagnan", "D AH0 R T AE1 NG Y AH0 N".split()),
        ("dog", ["D", "AO1", "G"]),
    ]


def test_held_out_words_are_a_fixed_hash_split():
    words = [f"word{i}" for i in range(5000)]
    held = [w for w in words if is_eval_word(w, 0.02)]
    assert 50 <= len(held) <= 150
    assert held == [w for w in words if is_eval_word(w, 0.02)]
    assert set(held) <= {w for w in words if is_eval_word(w, 0.1)}


def test_edit_distance():
    assert edit_distance([], []) == 0
    assert edit_distance(["K", "AE1", "T"], ["K", "AE1", "T"]) == 0
    assert edit_distance(["K", "AE1", "T"], ["B", "AE1", "T", "S"]) == 2
    assert edit_distance([], ["A", "B"]) == 2


def test_datasets_split_a_dictionary_folder(tmp_path):
    letters = "abcdefghijklmnopqrstuvwxyz"
    made_up = [f"w{letters[i // 26]}{letters[i % 26]}" for i in range(500)]
    lines = [f"{w} {p}" for w, p in WORDS.items()] + [f"{w} W ER1 D" for w in made_up] + ["word0 W ER1 D"]
    (tmp_path / DICT_FILE).write_text("\n".join(lines) + "\n")
    task = tiny_task(eval_fraction=0.1)
    train, held = task.datasets(tmp_path)
    assert len(train) + len(held) == 508 and 20 < len(held) < 90  # not "word0"
    assert not {w for w, _ in train.entries} & {w for w, _ in held.entries}
    assert task.lengths(train)[0] == len(train.entries[0][1]) + 1  # with EOS


def test_a_folder_without_a_dictionary_is_a_clear_error(tmp_path):
    (tmp_path / "metadata.csv").write_text("x|y\n")
    tiny_task().prepare(tmp_path)  # a folder with other data is left alone
    with pytest.raises(DatasetError, match="has no cmudict.dict"):
        tiny_task().datasets(tmp_path)


def test_prepare_writes_the_bundled_dictionary_into_an_empty_folder(tmp_path):
    tiny_task().prepare(tmp_path)
    assert (tmp_path / DICT_FILE).is_file()
    assert "cmudict" in (tmp_path / "SOURCE").read_text()
    words = dict(parse_cmudict((tmp_path / DICT_FILE).read_text()))
    assert len(words) > 100_000 and words["cat"] == ["K", "AE1", "T"]


def test_evaluate_writes_examples_and_export_round_trips(tmp_path):
    class Writer:
        def __init__(self):
            self.texts = {}

        def add_text(self, tag, text, step):
            self.texts[tag] = text

    torch.manual_seed(0)
    task = tiny_task()
    model = task.build_model().eval()
    writer = Writer()
    metrics = task.evaluate(model, [batch_of(task)], writer, 7)
    assert set(metrics) == {"per", "wer", "loss"} and 0 <= metrics["wer"] <= 1
    assert "| cat | K AE1 T |" in writer.texts["eval/examples"]
    task.export(model, tmp_path / "voice")
    assert set(read_config(tmp_path / "voice")["models"]) == {"g2p"}
    loaded = load_model(tmp_path / "voice", "g2p")
    assert loaded.config == TINY
    # Shipped in float16: the loaded model is the float16 rounding of the trained one.
    rounded = G2PModel(TINY)
    rounded.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    words = list(WORDS) + ["blorptastic"]
    assert loaded.predict(words) == rounded.predict(words)


# --- the shipped model and the frontend -------------------------------------------------------

needs_weights = pytest.mark.skipif(not SHIPPED, reason="no neural G2P weights in tts/text/data")

# Ordinary words of CMUdict's held-out 2% (is_eval_word): the shipped model never saw them.
HELD_OUT = (
    "abysmal actresses admired alcove alkaline analysis angle antenna appetizer article artist "
    "aspects asset attacking attentive backlog banana bartender basil belgium bikini blasphemy "
    "boarded boil bottles bought bountiful boyfriend breathes buzzing cackle cardinal carpentry "
    "cheers childlike chronic classes clients closed cocaine combining contest corner creamy "
    "cuddle cyclists deaf dealing deciduous delicacy delirious desserts dining dioxide discarded "
    "dwelling emotion excavated exclusive execution face fate feathers fervent"
).split()


@needs_weights
def test_the_shipped_model_is_small_and_loads_from_the_package():
    config = read_config(DEFAULT_DIR)
    assert set(config["models"]) == {"g2p"}
    size = sum(p.stat().st_size for p in DEFAULT_DIR.iterdir())
    assert size < 5_000_000
    model = load_default()
    assert model is load_default() and not model.training


@needs_weights
def test_the_shipped_model_pronounces_held_out_words():
    lexicon = default_g2p().lexicon
    assert all(is_eval_word(w, G2PTaskConfig().eval_fraction) for w in HELD_OUT)
    refs = [lexicon[w][0] for w in HELD_OUT]
    hyps = load_default().predict(HELD_OUT)
    errors = sum(edit_distance(h, r) for h, r in zip(hyps, refs))
    per = errors / sum(len(r) for r in refs)
    wer = sum(h != r for h, r in zip(hyps, refs)) / len(refs)
    assert per < 0.1 and wer < 0.4, (per, wer)


@needs_weights
def test_the_frontend_asks_the_neural_model_for_unknown_words():
    g2p = default_g2p()
    assert g2p.fallback is neural_or_rules and g2p.lookup("blorptastic") is None
    expected = load_default().predict(["blorptastic"])[0]
    assert neural_or_rules("blorptastic") == expected
    assert to_phonemes("blorptastic") == expected
    assert " ".join(expected).endswith("T AE1 S T IH0 K")  # fan-TAS-tic


def test_the_rules_are_the_fallback_without_weights(monkeypatch, tmp_path):
    from tts.text import g2p as g2p_module

    assert load_default(tmp_path) is None  # a folder without weights
    monkeypatch.setattr(g2p_module, "_neural_model", lambda: None)
    assert neural_or_rules("blorptastic") == g2p_module.letter_to_sound("blorptastic")


def _random_words(n: int, seed: int) -> list[str]:
    import random
    import string

    rng = random.Random(seed)
    letters = string.ascii_lowercase + "'"
    return [''.join(rng.choice(letters) for _ in range(rng.randint(1, 16))) for _ in range(n)]


def test_the_numpy_decoder_says_what_the_torch_model_says():
    """`NeuralG2P` (numpy, what the frontend runs) decodes as `G2PModel.predict` does, on
    random weights in two layers, so no trained margin hides a difference."""
    from tts.text.g2p_inference import NeuralG2P

    config = G2PConfig(embed_dim=16, encoder_dim=32, encoder_layers=2, decoder_dim=32, dropout=0.0)
    torch.manual_seed(5)
    model = G2PModel(config).eval()
    numpy_model = NeuralG2P(config, {k: v.numpy() for k, v in model.state_dict().items()})
    words = _random_words(60, seed=1) + ["Hello", "x", "", "123"]
    expected = model.predict(words)
    assert len({tuple(p) for p in expected}) > 10  # the words differ: the comparison can fail
    assert [numpy_model.pronounce(w) for w in words] == expected


@needs_weights
def test_the_frontend_pronounces_with_the_shipped_model_in_numpy():
    from tts.text.g2p import _neural_model
    from tts.text.g2p_inference import NeuralG2P

    model = _neural_model()
    assert isinstance(model, NeuralG2P)
    words = HELD_OUT + _random_words(150, seed=2)
    assert [model.pronounce(w) for w in words] == load_default().predict(words)
