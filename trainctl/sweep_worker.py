"""`python -m trainctl.sweep_worker [--plugin X]... [--no-plugins]`: a warm worker of `trainctl sweep`.

`trainctl.sweeps.worker` speaks the protocol and puts the process back in a fresh state before
each trial; this command module gives it what the commands own: the plugins, loaded once and put
back before each trial, and a trial run as `trainctl train --quiet` runs it (the plugins a resumed
run was trained with checked first, as `trainctl train --resume` checks them).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trainctl.errors import EXIT_USER_ERROR, UserError
from trainctl.output import Output
from trainctl.plugins import LoadingState, PluginOptions, check_run, load, loading_state, restore_loading_state
from trainctl.sweeps.worker import TrialRequest, serve, wait_quietly


def main(arguments: list[str]) -> int:
    # The protocol keeps the original stdout to itself; whatever else prints goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    wait_quietly()
    try:
        load(_plugin_options(arguments))
    except UserError as error:  # as any command reports it; every trial the sweep sends here fails with it
        for line in error.lines():
            Output().error(line)
        return EXIT_USER_ERROR
    _import_training()
    serve(functools.partial(run_trial, loading_state()), sys.stdin, replies)
    # The sweep closed stdin: nothing is running or open. Skip the interpreter's teardown of torch,
    # which takes a second and would keep the sweep waiting.
    sys.stderr.flush()
    os._exit(0)


def run_trial(
    plugins: LoadingState, request: TrialRequest, output: Output, epoch_end: Sequence[Callable[[Any], None]]
) -> None:
    from trainctl.workflows import resume, train

    restore_loading_state(plugins)
    if request.config is None:
        for warning in check_run(Path(request.run)):
            output.warn(warning)
        resume(request.run, output=output, epoch_end=epoch_end)
    else:
        train(request.config, list(request.overrides), out=request.run, output=output, epoch_end=epoch_end)


def _plugin_options(arguments: list[str]) -> PluginOptions:
    """The options `PluginOptions.arguments` wrote for the sweep's trials."""
    parser = argparse.ArgumentParser(prog="python -m trainctl.sweep_worker")
    parser.add_argument("--plugin", action="append", default=[])
    parser.add_argument("--no-plugins", action="store_true")
    parsed = parser.parse_args(arguments)
    return PluginOptions(tuple(parsed.plugin), entry_points=not parsed.no_plugins)


def _import_training() -> None:
    """What every trial imports, once, while the sweep is still opening its study: torch, the
    training stack and the optimizers' compiler hooks (torch._dynamo). Not matplotlib: trials draw
    no figures unless logging.figures asks for them."""
    import torch._dynamo  # noqa: F401

    import trainctl.reports.diagnosis
    import trainctl.reports.preflight
    import trainctl.training.build
    import trainctl.training.trainer
    import trainctl.workflows  # noqa: F401


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
