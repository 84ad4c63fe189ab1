"""Writes examples/csv/fruit.csv: a small made-up table of fruit, with numeric and text columns.

The numbers are invented (no public fruit table ships with a package); the script is seeded, so
running it again writes the same file.

    python examples/make_fruit_csv.py
"""

import csv
from pathlib import Path

import numpy as np

FRUIT = {  # name: (mean weight g, mean diameter cm, usual colour)
    "apple": (150.0, 7.0, "red"),
    "pear": (170.0, 6.5, "green"),
    "banana": (120.0, 3.5, "yellow"),
    "orange": (200.0, 8.0, "orange"),
}
COLOURS = ["red", "green", "yellow", "orange"]
ORIGINS = ["spain", "chile", "peru", "italy"]


def main() -> None:
    rng = np.random.default_rng(0)
    path = Path(__file__).parent / "csv" / "fruit.csv"
    path.parent.mkdir(exist_ok=True)
    names = list(FRUIT)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["weight_g", "diameter_cm", "colour", "origin", "fruit"])
        for _ in range(400):
            name = names[rng.integers(len(names))]
            weight, diameter, colour = FRUIT[name]
            if rng.random() < 0.25:  # not every apple is red
                colour = COLOURS[rng.integers(len(COLOURS))]
            writer.writerow(
                [
                    round(float(rng.normal(weight, 25)), 1),
                    round(float(rng.normal(diameter, 0.8)), 2),
                    colour,
                    ORIGINS[rng.integers(len(ORIGINS))],
                    name,
                ]
            )


if __name__ == "__main__":
    main()
