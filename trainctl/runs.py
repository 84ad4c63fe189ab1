"""The run folder: everything a run leaves behind, and nothing an earlier run had is overwritten.

    config.yaml          the resolved config: exactly what ran, defaults filled in
    metrics.jsonl        one JSON object per epoch
    checkpoints/last.pt  after every epoch
    checkpoints/best.pt  the best epoch by trainer.monitor
    summary.json         test metrics of the best checkpoint, best epoch, timings
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from trainctl.errors import UserError
from trainctl.yaml_source import dump_yaml

CHECKPOINTS = ("best", "last")


class RunFolder:
    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def create(cls, output_dir: str | Path, name: str, out: str | Path | None = None) -> RunFolder:
        """A new, empty run folder: `out` exactly, or `output_dir/name-YYYYmmdd-HHMMSS[-N]`."""
        if out is not None:
            path = Path(out)
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise UserError(f"{path}: already exists and is not empty; choose another --out")
            path.mkdir(parents=True, exist_ok=True)
            return cls(path)
        base = Path(output_dir) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        base.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1000):
            path = base if attempt == 0 else base.with_name(f"{base.name}-{attempt}")
            try:
                path.mkdir()  # fails if taken: two runs in the same second get different folders
                return cls(path)
            except FileExistsError:
                continue
        raise UserError(f"{base}: could not find a free run folder name")

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"{path}: run folder not found")
        if not (path / "config.yaml").is_file():
            raise UserError(f"{path}: not a run folder (no config.yaml in it)")
        return cls(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    def checkpoint_path(self, which: str) -> Path:
        """`best` or `last` within the run, or any other path as given."""
        if which in CHECKPOINTS:
            return self.path / "checkpoints" / f"{which}.pt"
        return Path(which)

    def read_config(self) -> dict[str, Any]:
        from trainctl.run_contents import read_run_config

        return read_run_config(self.config_path)

    def write_config(self, config: dict[str, Any]) -> None:
        header = "# Resolved config written by trainctl: exactly what ran, defaults filled in.\n"
        self.config_path.write_text(header + dump_yaml(config, sort_keys=False), encoding="utf-8")

    def append_metrics(self, row: dict[str, Any]) -> None:
        with self.metrics_path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(row) + "\n")

    def keep_metrics_through(self, epoch: int) -> None:
        """Drop rows after `epoch`: after a crash, epochs past the last checkpoint are trained again."""
        rows = [row for row in self.read_metrics() if row["epoch"] <= epoch]
        text = "".join(json.dumps(row) + "\n" for row in rows)
        tmp = self.metrics_path.with_name(".metrics.jsonl.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.metrics_path)

    def read_metrics(self) -> list[dict[str, Any]]:
        """Each epoch's row; a line torn by a kill mid-write is left out (that epoch is trained again)."""
        from trainctl.run_contents import read_metrics_rows

        return read_metrics_rows(self.metrics_path)

    def write_json(self, name: str, data: dict[str, Any]) -> Path:
        path = self.path / name
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return path
