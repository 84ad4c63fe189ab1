"""Run under torchrun by test_distributed: train a config in this process's rank and save the
parameters it ends with, so the test can compare ranks."""

import os
import sys

import torch

from trainctl.output import Output
from trainctl.workflows import train

config, out, dump = sys.argv[1:4]
result = train(config, out=out, output=Output(quiet=True))
torch.save(result.model.state_dict(), f"{dump}/rank{os.environ['RANK']}.pt")
