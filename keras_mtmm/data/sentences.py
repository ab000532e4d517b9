"""Generated sentences with named entities (BIO tags) and a sentiment: the `sentences` source.

Each sentence is built from a few clauses, in random order:

- a person (`B-PER`, with a surname `I-PER` in a third of them) who *met*, *called* or *thanked* another
  person or an organisation (`B-ORG I-ORG`: a name and `corp`, `labs` or `group`);
- a place (`B-LOC`, with a second word `I-LOC` for the two-word places), after *in*, *from* or *to*;
- an opinion: `it was` + a positive or a negative word, sometimes after `not` (which turns it round).

Some names are both a person's and a place's (`jordan`, `georgia`, `paris`, `chelsea`): their tag follows
from the word before them (*in jordan* is a place, *jordan met* a person), so a tagger must read the
context. The columns: `text`, `tags` (one BIO tag per word, joined by spaces) and `sentiment`
(`positive` / `negative`: the opinion word, turned round by `not`). Deterministic in the seed.
"""

from __future__ import annotations

import numpy as np

PEOPLE = ("anna", "omar", "li", "sofia", "ravi", "maria", "ken", "ines", "tom", "yara")
SURNAMES = ("smith", "khan", "chen", "rossi", "patel", "silva")
PLACES = ("berlin", "lagos", "lima", "osaka", "quito", "oslo", "delhi", "cairo")
TWO_WORD_PLACES = (("new", "york"), ("san", "jose"), ("hong", "kong"), ("cape", "town"))
AMBIGUOUS = ("jordan", "georgia", "paris", "chelsea")  # people's names and places
ORGANISATIONS = ("acme", "globex", "initech", "umbrella", "hooli", "vandelay")
ORG_SUFFIXES = ("corp", "labs", "group")
VERBS = ("met", "called", "thanked", "visited")
PREPOSITIONS = ("in", "from", "to")
POSITIVE = ("great", "wonderful", "lovely", "excellent")
NEGATIVE = ("awful", "terrible", "boring", "dreadful")


def _person(rng) -> list[tuple[str, str]]:
    first = str(rng.choice(PEOPLE + AMBIGUOUS))
    words = [(first, "B-PER")]
    if rng.random() < 1 / 3:
        words.append((str(rng.choice(SURNAMES)), "I-PER"))
    return words


def _place(rng) -> list[tuple[str, str]]:
    pick = rng.random()
    if pick < 0.25:
        first, second = TWO_WORD_PLACES[int(rng.integers(len(TWO_WORD_PLACES)))]
        return [(first, "B-LOC"), (second, "I-LOC")]
    return [(str(rng.choice(PLACES + AMBIGUOUS if pick < 0.6 else PLACES)), "B-LOC")]


def _organisation(rng) -> list[tuple[str, str]]:
    return [(str(rng.choice(ORGANISATIONS)), "B-ORG"), (str(rng.choice(ORG_SUFFIXES)), "I-ORG")]


def sentence(rng) -> tuple[list[tuple[str, str]], str]:
    """One sentence's `(word, tag)` pairs and its sentiment."""
    meeting = _person(rng) + [(str(rng.choice(VERBS)), "O")]
    meeting += _person(rng) if rng.random() < 0.5 else _organisation(rng)
    place = [(str(rng.choice(PREPOSITIONS)), "O"), *_place(rng)]
    positive = bool(rng.random() < 0.5)
    negated = bool(rng.random() < 0.25)
    word = str(rng.choice(POSITIVE if positive else NEGATIVE))
    opinion = [("it", "O"), ("was", "O"), *([("not", "O")] if negated else []), (word, "O")]
    clauses = [meeting + place, opinion] if rng.random() < 0.6 else [opinion, [("and", "O")] + meeting + place]
    words = [pair for clause in clauses for pair in clause]
    return words, "positive" if positive != negated else "negative"


def generate_sentences(num_examples: int, seed: int) -> dict[str, np.ndarray]:
    """The `sentences` table: `text`, `tags` (BIO, one per word) and `sentiment`."""
    rng = np.random.default_rng(seed)
    table: dict[str, list[str]] = {"text": [], "tags": [], "sentiment": []}
    for _ in range(num_examples):
        words, sentiment = sentence(rng)
        table["text"].append(" ".join(word for word, _ in words))
        table["tags"].append(" ".join(tag for _, tag in words))
        table["sentiment"].append(sentiment)
    return {column: np.asarray(values, dtype=object) for column, values in table.items()}
