"""Writes data/spirals.jsonl: three interleaved spiral arms in the plane, the example dataset.

Seeded, so running it again writes the same file:

    python examples/plugin/make_spirals.py
"""

import json
import math
import random
from pathlib import Path

ARMS = 3
POINTS_PER_ARM = 60


def main() -> None:
    rng = random.Random(0)
    path = Path(__file__).parent / "data" / "spirals.jsonl"
    path.parent.mkdir(exist_ok=True)
    lines = []
    for arm in range(ARMS):
        for i in range(POINTS_PER_ARM):
            radius = 0.1 + 0.9 * i / POINTS_PER_ARM
            angle = 2 * math.pi * arm / ARMS + 5.0 * radius + rng.gauss(0, 0.2)
            point = [round(radius * math.cos(angle), 3), round(radius * math.sin(angle), 3)]
            lines.append(json.dumps({"features": point, "label": f"arm{arm}"}))
    rng.shuffle(lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
