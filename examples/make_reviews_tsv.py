"""Writes examples/text/reviews.tsv: short made-up product reviews labelled positive or negative.

Invented sentences (no labelled text ships with a package); the script is seeded, so running it
again writes the same file.

    python examples/make_reviews_tsv.py
"""

import csv
from pathlib import Path

import numpy as np

THINGS = ["kettle", "lamp", "chair", "backpack", "phone case", "blender", "jacket", "keyboard"]
GOOD = ["great", "sturdy", "lovely", "works perfectly", "excellent value", "very comfortable", "well made"]
BAD = [
    "broke after a week",
    "flimsy",
    "disappointing",
    "stopped working",
    "poor quality",
    "uncomfortable",
    "a waste of money",
]
NEUTRAL = ["arrived on tuesday", "came in a box", "is blue", "was a gift", "looks as pictured"]


def review(rng: np.random.Generator, positive: bool) -> str:
    words = GOOD if positive else BAD
    parts = [f"the {THINGS[rng.integers(len(THINGS))]} {words[rng.integers(len(words))]}"]
    if rng.random() < 0.6:
        parts.append(NEUTRAL[rng.integers(len(NEUTRAL))])
    if rng.random() < 0.15:  # mixed feelings: a word from the other side too
        other = BAD if positive else GOOD
        parts.append(f"though {other[rng.integers(len(other))]}")
    rng.shuffle(parts[1:])
    return ", ".join(parts) + "."


def main() -> None:
    rng = np.random.default_rng(0)
    path = Path(__file__).parent / "text" / "reviews.tsv"
    path.parent.mkdir(exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["text", "label"])
        for _ in range(600):
            positive = bool(rng.random() < 0.5)
            writer.writerow([review(rng, positive), "positive" if positive else "negative"])


if __name__ == "__main__":
    main()
