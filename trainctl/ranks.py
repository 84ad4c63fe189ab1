"""This process's place in a run of one or more processes: its rank, the number of ranks, and the
collectives every stage needs (shard a batch, sum statistics, agree on a decision).

It sits at the bottom of the package because data (sharding a split) and training (summing
statistics) both need it; launching and wrapping models for several processes is in
`trainctl.training.distributed`. Outside a distributed run every method is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported by the methods that run collectives: finding the ranks needs none
    import torch


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: rank, how many processes, and its rank on this machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch (sizes differ by at most one)."""
        return items.tensor_split(self.world_size)[self.rank] if self.distributed else items

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over all ranks, in place."""
        if self.distributed:
            import torch.distributed

            torch.distributed.all_reduce(tensor)
        return tensor

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when it is true on one: decisions that must not diverge (stop, skip)."""
        if not self.distributed:
            return flag
        import torch.distributed

        value = torch.tensor([float(flag)], device=device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item())

    def broadcast(self, value: Any) -> Any:
        """Rank 0's value, on every rank (e.g. the run folder rank 0 created)."""
        if not self.distributed:
            return value
        import torch.distributed

        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


SINGLE = Ranks()


def ranks_from_environment() -> Ranks:
    """The ranks torchrun describes in the environment; one process when it did not start us."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    return Ranks(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
