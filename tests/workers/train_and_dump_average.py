"""Run under torchrun by test_weight_averaging: train a config with the trainer in this process's
rank and save the averaged weights it ends with, so the test can compare ranks."""

import sys

import torch

from trainctl.config.loading import load_config
from trainctl.ranks import ranks_from_environment
from trainctl.training import distributed
from trainctl.training.build import build_training
from trainctl.training.settings import fit_settings
from trainctl.training.trainer import Trainer

config_path, dump = sys.argv[1:3]
config = load_config(config_path)
ranks = ranks_from_environment()
with distributed.running(ranks):
    parts = build_training(config, ranks)
    trainer = Trainer(parts, fit_settings(config, parts, None))
    trainer.fit()
    torch.save(trainer.averaging.evaluated(parts.model).state_dict(), f"{dump}/rank{ranks.rank}.pt")
