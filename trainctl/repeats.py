"""`trainctl train CONFIG --repeats N` (or `--seeds 0,1,2`): one config trained once per seed, each
run an ordinary run folder in a group folder (`trainctl.reports.groups` describes its files), then
the group's summary of every test metric over the seeds.

Each run is trained as `trainctl train` trains it, `--jobs` at a time, in the shared run pool's
warm worker processes (`trainctl.sweeps.pool`: torch is imported once per job, not once per run).
A run that fails is recorded with its error line and the others go on. Running the same command
again continues the group: finished runs are kept, interrupted ones resumed from their last
checkpoint, failed ones tried again; seeds not in the group yet are added to it. A group is one
config: a different one is refused, naming the keys that differ.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainctl.config.loading import read_config, validate
from trainctl.errors import UserError
from trainctl.files import write_atomically
from trainctl.output import Output
from trainctl.reports.groups import (
    BASE_CONFIG,
    GROUP_FILE,
    SUMMARY_FILE,
    GroupRecord,
    GroupRun,
    is_group,
    read_group,
    run_folder_name,
    summarise,
    write_json,
)
from trainctl.runs import RunFolder, holds_earlier_output
from trainctl.yaml_source import dump_yaml

MAX_SEEDS = 1000  # a group of more runs than this is a typo, not an experiment


def parse_seeds(text: str) -> list[int]:
    """`--seeds 0,1,2`: distinct non-negative integers, in the order given."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise UserError(f"--seeds {text}: {part!r} is not a seed; give non-negative integers, e.g. --seeds 0,1,2")
        if int(part) in seeds:
            raise UserError(f"--seeds {text}: seed {part} is given twice")
        seeds.append(int(part))
    return seeds


def choose_seeds(first: int, repeats: int | None, seeds: str | None) -> list[int]:
    """The seeds of --repeats N (first..first+N−1, first being the config's seed) or --seeds."""
    if repeats is not None and seeds is not None:
        raise UserError("give either --repeats N or --seeds LIST, not both")
    chosen = parse_seeds(seeds) if seeds is not None else list(range(first, first + (repeats or 0)))
    if not chosen:
        raise UserError("--repeats: give at least one run")
    if len(chosen) > MAX_SEEDS:
        raise UserError(f"--repeats {len(chosen)}: at most {MAX_SEEDS} runs in a group")
    return chosen


@dataclass
class RepeatSetup:
    """A checked group, ready to run: nothing has been written yet."""

    name: str
    folder: Path
    base: dict[str, Any]  # the config every run trains, as plain YAML data, without its seed
    seeds: list[int]
    monitor: str
    jobs: int = 1
    plugin_arguments: list[str] = field(default_factory=list)  # --plugin/--no-plugins, given to every run
    strict: bool = False  # each new run stops on the checks' warnings too


def prepare_repeats(
    config_path: str | Path,
    overrides: list[str],
    *,
    repeats: int | None,
    seeds: str | None,
    out: str | Path | None = None,
    jobs: int = 1,
    plugin_arguments: list[str] | None = None,
    strict: bool = False,
) -> RepeatSetup:
    """Read and check the config and the seeds, and that the folder can hold this group."""
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: must be at least 1")
    data, source = read_config(config_path, overrides)
    config = validate(copy.deepcopy(data), source)
    chosen = choose_seeds(config.seed, repeats, seeds)
    data.pop("seed", None)  # each run sets its own
    folder = Path(out) if out is not None else Path(config.output_dir) / f"{config.name}-repeats"
    setup = RepeatSetup(
        config.name, folder, data, chosen, config.trainer.monitor, jobs, list(plugin_arguments or []), strict
    )
    check_folder(setup)
    return setup


def check_folder(setup: RepeatSetup) -> GroupRecord | None:
    """The folder's group record when it holds this group already (None when new or empty);
    anything else there is refused before anything is written."""
    folder = setup.folder
    if not holds_earlier_output(folder, is_group, "a trainctl group", "group"):
        return None
    record = read_group(folder)
    if record.config != setup.base:
        from trainctl.config.identity import differing_keys

        raise UserError(
            f"{folder}: this group was started with a different config; these keys differ: "
            f"{', '.join(differing_keys(record.config, setup.base))}. Run it with the same config, "
            "or choose another --out"
        )
    return record


@dataclass
class RepeatOutcome:
    record: GroupRecord
    summary: dict[str, Any]
    ran: int  # runs trained (or resumed) by this invocation
    interrupted: bool

    @property
    def failed(self) -> list[GroupRun]:
        return [run for run in self.record.runs if run.status == "failed"]


def run_repeats(setup: RepeatSetup, output: Output) -> RepeatOutcome:
    """Train the group's runs that are not finished, then write summary.json.

    The first Ctrl-C lets running runs save their state (they get the terminal's signal; a
    SIGTERM is passed on to them) and starts no new ones; a second one stops them at once.
    """
    setup.folder.mkdir(parents=True, exist_ok=True)
    lock = RunFolder(setup.folder)
    lock.claim()  # a second process on the same group is refused, naming the first
    try:
        record = _start_record(setup)
        with _mlflow_parent(setup, output) as parent:
            ran, interrupted = _run_waiting(setup, record, output)
            summary = summarise(setup.folder, record)
            write_json(setup.folder / SUMMARY_FILE, summary)
            parent.finish_group(summary, interrupted, [SUMMARY_FILE, GROUP_FILE])
        return RepeatOutcome(record, summary, ran, interrupted)
    finally:
        lock.release()


def _mlflow_parent(setup: RepeatSetup, output: Output) -> contextlib.AbstractContextManager[Any]:
    """With logging.mlflow, the group's parent MLflow run, under which each run nests."""
    from trainctl.training.mlflow_tracker import group_tracking

    varied = {"seed": ", ".join(map(str, setup.seeds))}
    return group_tracking(setup.base, setup.folder, setup.name, "repeats", varied, output)


def _start_record(setup: RepeatSetup) -> GroupRecord:
    """group.json as this invocation starts: the earlier record's runs (with this invocation's new
    seeds added), each marked done when its run finished and waiting otherwise."""
    earlier = check_folder(setup)  # again, now that the lock is held
    seeds = (earlier.seeds if earlier else []) + [s for s in setup.seeds if earlier is None or s not in earlier.seeds]
    runs = []
    for seed in seeds:
        folder = run_folder_name(seed)
        finished = (setup.folder / folder / "summary.json").is_file()
        kept = next((run for run in earlier.runs if run.seed == seed), None) if earlier else None
        runs.append(GroupRun(seed, folder, "done" if finished else "waiting", seconds=kept.seconds if kept else None))
    record = GroupRecord(setup.name, setup.base, runs)
    base = setup.folder / BASE_CONFIG
    if not base.is_file():
        write_atomically(dump_yaml(setup.base, sort_keys=False).encode("utf-8"), base)
    write_json(setup.folder / GROUP_FILE, record.to_dict())
    return record


def _run_waiting(setup: RepeatSetup, record: GroupRecord, output: Output) -> tuple[int, bool]:
    """Train the runs not finished yet through the shared run pool (`trainctl.sweeps.pool`),
    recording each in group.json as it ends; how many ran, and whether they were interrupted."""
    from trainctl.sweeps.pool import PlannedRun, RunEnd, RunPool, end_line, notice_of_first_signal, run_planned
    from trainctl.training.mlflow_store import child_settings

    waiting = [run for run in record.runs if run.status == "waiting"]
    done = len(record.runs) - len(waiting)
    jobs = min(setup.jobs, len(waiting))
    output.message(
        f"group folder: {setup.folder}  ({len(record.runs)} runs, seeds "
        f"{_seed_list(record.seeds)}; {done} finished before, {len(waiting)} to run"
        + (f", {jobs} at a time)" if waiting else ")")
    )
    base = setup.folder / BASE_CONFIG
    parent = child_settings(setup.folder)  # nest each new run under the group's MLflow run, when it has one
    planned = [PlannedRun(setup.folder / run.folder, base, (f"seed={run.seed}", *parent)) for run in waiting]
    pool = RunPool(setup.jobs, setup.plugin_arguments, strict=setup.strict)

    def on_end(end: RunEnd) -> None:
        run = waiting[end.index]
        run.seconds, run.status, run.error = end.seconds, end.status, end.error
        write_json(setup.folder / GROUP_FILE, record.to_dict())
        output.markup(end_line(setup.folder / run.folder, run.folder, end, setup.monitor))

    interrupted = run_planned(pool, planned, on_end, notice_of_first_signal(output.notice, "runs"))
    return pool.ran, interrupted


def _seed_list(seeds: list[int]) -> str:
    """0-4 for a run of consecutive seeds, else the seeds one by one."""
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))
