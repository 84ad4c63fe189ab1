"""How long a Tab takes: the installed `trainctl` answering a completion as bash asks for it (the
COMP_WORDS, COMP_CWORD and _TRAINCTL_COMPLETE variables of its completion script), a fresh process
each time. Prints each case's median over N runs in seconds, after one run that fills the index
cache (the first completion after trainctl's files change builds it), and that cold run's time.
Wall time is what the user waits; the process's CPU time (user + system) beside it is what the
machine's other load changes less. For scale, the same for `trainctl --version` (the command line's
own start: Python, typer, its pydantic coercion) and for a Python that does nothing.

    python bench/completion.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAINCTL = str(Path(sys.executable).parent / "trainctl")
CONFIG = Path(__file__).resolve().parent.parent / "configs" / "digits_mlp.yaml"
CASES = {
    "a command (trainctl tr)": "trainctl tr",
    "a config key (--set optimizer.l)": f"trainctl train {CONFIG} --set optimizer.l",
    "a registered name (list-losses fo)": "trainctl list-losses fo",
    "a run folder (eval runs/)": "trainctl eval runs/",
}
RUNS = ("runs/digits_mlp-20260101-120000", "runs/fruit-20260101-120000", "runs/digits_mlp-sweep/trial-000")


def complete(line: str, folder: str) -> tuple[float, float, str]:
    """Wall and CPU seconds of one completion in `folder` (its index cache there too), and its answer."""
    words = line.split(" ")
    env = {**os.environ, "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
    env.update(_TRAINCTL_COMPLETE="complete_bash", XDG_CACHE_HOME=os.path.join(folder, "cache"))
    return timed([TRAINCTL], env, folder)


def timed(command: list[str], env: dict[str, str], folder: str | None = None) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    answer = subprocess.run(command, env=env, cwd=folder, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as folder:
        for run in RUNS:  # run folders to complete
            Path(folder, run).mkdir(parents=True)
            Path(folder, run, "config.yaml").write_text("name: x\n")
        wall, cpu, _ = complete(CASES["a config key (--set optimizer.l)"], folder)
        print(f"{'first completion (builds the index cache)':42} {wall:.3f} s wall, {cpu:.3f} s CPU")
        for name, line in CASES.items():
            measured = [complete(line, folder) for _ in range(runs)]
            wall = statistics.median(m[0] for m in measured)
            cpu = statistics.median(m[1] for m in measured)
            shown = " ".join(measured[0][2].split()[:2])
            print(f"{name:42} {wall:.3f} s wall, {cpu:.3f} s CPU (medians of {runs}; answers: {shown} ...)")
    for name, command in (
        ("trainctl --version", [TRAINCTL, "--version"]),
        ("python -c pass", [sys.executable, "-c", "pass"]),
    ):
        measured = [timed(command, dict(os.environ)) for _ in range(runs)]
        wall = statistics.median(m[0] for m in measured)
        cpu = statistics.median(m[1] for m in measured)
        print(f"{name:42} {wall:.3f} s wall, {cpu:.3f} s CPU (for scale)")


if __name__ == "__main__":
    main()
