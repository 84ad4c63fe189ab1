"""Several processes, one run: torch.distributed with DistributedDataParallel, started by torchrun.

Every process (rank) builds the same data, model and shuffled order from the same seeds and trains
on its own slice of every global batch (`data.batch_size` is the global batch, a micro-batch with
`trainer.accumulate`); DDP averages the gradients, once per optimizer step (`no_sync` around a
group's leading micro-batches); evaluation statistics are summed over ranks, so metrics cover the whole split. Rank 0
alone prints and writes the run folder. A run of one process never touches torch.distributed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

import torch

from trainctl.errors import EXIT_INTERRUPTED, UserError
from trainctl.ranks import Ranks

if TYPE_CHECKING:
    from torch.nn.parallel import DistributedDataParallel

# A rank blocked in a collective whose peer is stuck gives up after this long instead of hanging.
COLLECTIVE_TIMEOUT = timedelta(minutes=5)
RUN_ID_PREFIX = "trainctl-"  # the launcher's run id: how a worker knows `--nproc` started it


def start(ranks: Ranks, device: torch.device, threads: int | None) -> torch.device:
    """Join the process group: nccl on CUDA, gloo on CPU. Returns the device this rank trains on."""
    if not ranks.distributed:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
        # Processes on one machine share its cores: one thread each unless the config says otherwise.
        torch.set_num_threads(threads or 1)
    else:
        raise UserError(f"trainer.device: {device.type} cannot train in several processes; use cpu or cuda")
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(
            backend, timeout=COLLECTIVE_TIMEOUT, device_id=device if device.type == "cuda" else None
        )
    return device


@contextlib.contextmanager
def peer_errors(ranks: Ranks) -> Iterator[None]:
    """When another process of the run dies, the collectives here fail with a transport error:
    say so in one line (the launcher names the process that failed first)."""
    try:
        yield
    except RuntimeError as error:
        text = str(error)
        if not ranks.distributed or not (
            isinstance(error, torch.distributed.DistError) or "gloo" in text or "NCCL" in text or "Connection" in text
        ):
            raise
        raise PeerLost(f"rank {ranks.rank}: another process of this run stopped, so this one stops too") from None


@contextlib.contextmanager
def running(ranks: Ranks) -> Iterator[None]:
    """Around all a process does in a run: a peer's death becomes one line, and the process leaves
    the group, waiting for the others when it finished well (a failing one must not wait: the
    others may be blocked in a different collective)."""
    try:
        with peer_errors(ranks):
            yield
    except BaseException:
        stop(together=False)
        raise
    stop(together=True)


class PeerLost(UserError):
    """A collective failed because another rank is gone.

    The transport's own message (gloo's source file, line and socket) says nothing a user can act
    on, so it is left out. Under `--nproc` the launcher names the process that failed first, and
    that one line is the whole story: the ranks that stopped because of it stay silent.
    """

    def lines(self) -> list[str]:
        return [] if os.environ.get("TORCHELASTIC_RUN_ID", "").startswith(RUN_ID_PREFIX) else super().lines()


def stop(together: bool = True) -> None:
    """Leave the process group. `together`: first wait for every rank, since rank 0 may still be
    testing and writing the summary, and a rank that tears its connections down while another
    still uses the group can abort."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    try:
        if together:
            torch.distributed.barrier()
    except RuntimeError:  # a peer is gone (the run is failing anyway): just let go
        pass
    finally:
        torch.distributed.destroy_process_group()


class ModelWithLoss(torch.nn.Module):
    """The model and the loss as one module, so DDP also averages the gradients of learned loss
    parameters (adaptive α and c, uncertainty weights), not only the model's."""

    def __init__(self, model: torch.nn.Module, loss_fn: torch.nn.Module):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.model(inputs), targets)


def wrap(model: torch.nn.Module, loss_fn: torch.nn.Module, device: torch.device) -> DistributedDataParallel:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        ModelWithLoss(model, loss_fn), device_ids=[device] if device.type == "cuda" else None
    )


def run_worker(main: Callable[[], Any]) -> NoReturn:
    """Run the command line in one process of a run in several processes, and end the process
    without the interpreter's teardown.

    DDP keeps the gloo process group alive after destroy_process_group, so gloo's worker threads
    outlive the run. One of them may still be releasing its last finished collective, whose tensors
    belong to Python objects, when the interpreter finalises: it then needs the GIL, Python ends
    the thread with pthread_exit in the middle of a C++ destructor, and the process aborts with
    `terminate called without an active exception` (SIGABRT) after a complete run, which the
    launcher reports as a failure. By the time main returns, the run has written and closed its
    files and printed its lines, so the process ends with os._exit once the streams are flushed.
    """
    import sys
    import traceback

    try:
        main()
        code = 0
    except SystemExit as done:
        code = _exit_status(done.code)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except Exception:  # a bug: show it as the interpreter would, then end the same way
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _exit_status(code: object) -> int:
    """The exit status sys.exit(code) gives: None is 0, an int itself, anything else is printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    import sys

    print(code, file=sys.stderr)
    return 1


def launch(arguments: list[str], nproc: int) -> int:
    """Run `trainctl ARGUMENTS` (the user's command line, without --nproc) in `nproc` processes on this
    machine through torch.distributed's elastic launcher, as `torchrun --standalone --nproc_per_node N`
    would. Returns the exit code.

    Each worker prints its own one-line error; this adds which rank failed first, instead of the
    launcher's traceback.
    """
    import logging
    import sys
    import tempfile
    import uuid

    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    # The launcher keeps each rank's error file in a log folder; left to itself it makes a
    # /tmp/torchelastic_* folder per run and never removes it.
    with tempfile.TemporaryDirectory(prefix="trainctl-nproc-") as logs:
        config = LaunchConfig(
            min_nodes=1,
            max_nodes=1,
            nproc_per_node=nproc,
            run_id=f"{RUN_ID_PREFIX}{uuid.uuid4().hex[:8]}",
            rdzv_backend="c10d",
            rdzv_endpoint="localhost:0",
            max_restarts=0,
            monitor_interval=0.1,
            logs_specs=DefaultLogsSpecs(log_dir=logs),
        )
        try:
            elastic_launch(config, sys.executable)("-m", "trainctl", *arguments)
        except ChildFailedError as error:
            # A rank killed by a signal is the cause even when a peer's exit was noticed first: the
            # peers stop silently (PeerLost), so the signal is the one line there is to print.
            killed = sorted((rank, failure) for rank, failure in error.failures.items() if failure.exitcode < 0)
            if killed:
                rank, failure = killed[0]
                raise UserError(
                    f"--nproc {nproc}: the process of rank {rank} was killed ({failure.signal_name()})"
                ) from None
            return error.get_first_failure()[1].exitcode
    return 0
