"""`python -m trainctl`: also how torchrun and `--nproc` start each process of a run in several."""

from trainctl.cli import main


def _run() -> None:
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # checked here so other commands need not import torch
        from trainctl.training.distributed import run_worker

        run_worker(main)
    main()


_run()
