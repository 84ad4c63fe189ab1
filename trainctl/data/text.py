"""Text as model inputs: a tokenizer, a vocabulary built on the training split, token-id sequences.

Id 0 pads and id 1 stands for tokens the vocabulary lacks. Sequences are cut to `max_length`
tokens and padded on the right; each batch is then cut to its longest text (`trainctl.data.prepare`), so
padding is per batch. Models skip padding: the recurrent model packs the sequences by length and
the embedding bag leaves id 0 out. The fitted encoding is plain data, saved with the run, so
`predict` tokenizes new text exactly as training did.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

PAD, UNKNOWN = "<pad>", "<unk>"
WORD_PATTERN = r"\w+|[^\w\s]"  # a word-level token: a run of word characters, or one punctuation mark


def tokenize(text: str, level: str, lowercase: bool) -> list[str]:
    text = text.lower() if lowercase else text
    return re.findall(WORD_PATTERN, text) if level == "words" else list(text)


@dataclass
class TextEncoding:
    level: str  # words | chars
    lowercase: bool
    vocabulary: list[str]  # index = token id; 0 and 1 are <pad> and <unk>
    length: int  # every sequence is cut to this many tokens, and stored padded to it

    @classmethod
    def fit(
        cls, texts: list[str], level: str, lowercase: bool, min_freq: int, max_size: int | None, max_length: int
    ) -> TextEncoding:
        counts = Counter(token for text in texts for token in tokenize(text, level, lowercase))
        kept = sorted((token for token, count in counts.items() if count >= min_freq), key=lambda t: (-counts[t], t))
        vocabulary = [PAD, UNKNOWN, *kept[:max_size]]
        longest = max((len(tokenize(text, level, lowercase)) for text in texts), default=1)
        return cls(level, lowercase, vocabulary, max(1, min(max_length, longest)))

    def transform(self, texts: list[str]) -> np.ndarray:
        ids = {token: i for i, token in enumerate(self.vocabulary)}
        matrix = np.zeros((len(texts), self.length), dtype=np.float32)  # float32 holds ids exactly up to 2**24
        for row, text in enumerate(texts):
            tokens = [ids.get(token, 1) for token in tokenize(text, self.level, self.lowercase)][: self.length]
            matrix[row, : len(tokens)] = tokens
        return matrix

    @staticmethod
    def without_known_tokens(ids: np.ndarray) -> np.ndarray:
        """Which rows of `transform`'s output hold no token of the vocabulary: only <unk> and <pad>.
        A model can only guess from its biases there, however confident its output looks."""
        # An array per row of 2-D ids; np.asarray because numpy types `any` over an axis as maybe a scalar.
        return ~np.asarray((np.asarray(ids) > 1).any(axis=1))

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "lowercase": self.lowercase, "vocabulary": self.vocabulary, "length": self.length}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextEncoding:
        return cls(data["level"], data["lowercase"], data["vocabulary"], data["length"])
