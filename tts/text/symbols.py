"""The symbol table: every symbol the acoustic model can read, with stable ids.

Checkpoints store the table (``SYMBOLS``) and refuse to load if it differs, so the order
here is part of the voice format: append new symbols at the end, never reorder.
"""

PAD = "<pad>"
EOS = "<eos>"
WORD = " "  # word boundary

# Pauses and boundaries, from short to long. Other punctuation is folded onto these.
PUNCTUATION = (",", ".", "?", "!")

CONSONANTS = (
    "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R",
    "S", "SH", "T", "TH", "V", "W", "Y", "Z", "ZH",
)
VOWELS = (
    "AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW",
)
# ARPAbet with lexical stress: 0 unstressed, 1 primary, 2 secondary.
PHONEMES = CONSONANTS + tuple(v + s for v in VOWELS for s in "012")

SYMBOLS: tuple[str, ...] = (PAD, EOS, WORD) + PUNCTUATION + PHONEMES
SYMBOL_TO_ID: dict[str, int] = {s: i for i, s in enumerate(SYMBOLS)}
PAD_ID = SYMBOL_TO_ID[PAD]
EOS_ID = SYMBOL_TO_ID[EOS]


def symbols_to_ids(symbols: list[str], add_eos: bool = True) -> list[int]:
    """Map symbols to ids; an unknown symbol is a ``KeyError`` naming it."""
    try:
        ids = [SYMBOL_TO_ID[s] for s in symbols]
    except KeyError as e:
        raise KeyError(f"symbol {e.args[0]!r} is not in the symbol table") from None
    return ids + [EOS_ID] if add_eos else ids


def ids_to_symbols(ids) -> list[str]:
    return [SYMBOLS[int(i)] for i in ids]
