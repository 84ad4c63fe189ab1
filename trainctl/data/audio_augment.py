"""Augmentations of audio clips, named in `data.transforms.train` (registered in
`trainctl.components.transforms`). Each acts at one stage of the audio pipeline: where the clip is
cut from its recording (`crop`), on the waveform (`waveform`), or on the standardised features
(`features`), and draws its random values from torch's global generator, which the streaming
reader seeds per sample and epoch: the same clip gets the same augmentation in every process and
after a resume."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

Stage = Literal["crop", "waveform", "features"]
STAGES: tuple[Stage, ...] = ("crop", "waveform", "features")  # the order the pipeline applies them in


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


@dataclass(frozen=True)
class RandomTimeCrop:
    """Where the clip's window sits in its recording (or the recording in the padding), at random;
    evaluation takes the centre."""

    stage: ClassVar[Stage] = "crop"

    def position(self) -> float:
        return float(torch.rand(()))


@dataclass(frozen=True)
class Gain:
    """The whole clip louder or quieter by a random number of decibels."""

    min_db: float
    max_db: float
    stage: ClassVar[Stage] = "waveform"

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        return wave * 10 ** (_uniform(self.min_db, self.max_db) / 20)


@dataclass(frozen=True)
class Noise:
    """White Gaussian noise at a random signal-to-noise ratio (in dB of the clip's own power)."""

    min_snr_db: float
    max_snr_db: float
    stage: ClassVar[Stage] = "waveform"

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        snr = _uniform(self.min_snr_db, self.max_snr_db)
        noise = torch.randn(wave.shape, dtype=wave.dtype)
        rms = wave.square().mean().sqrt()  # a silent clip gets no noise: it has no level to be relative to
        return wave + noise * (rms / 10 ** (snr / 20))


def _mask(features: torch.Tensor, axis: int, widest: int, count: int) -> torch.Tensor:
    """`count` bands of a random width up to `widest` (and a random start) along `axis`, set to 0:
    the mean of standardised features (SpecAugment, Park et al. 2019)."""
    features = features.clone()
    size = features.shape[axis]
    for _ in range(count):
        width = int(torch.randint(0, min(widest, size) + 1, ()))
        start = int(torch.randint(0, size - width + 1, ()))
        features.narrow(axis, start, width).zero_()
    return features


@dataclass(frozen=True)
class TimeMask:
    """SpecAugment's time masking: `count` runs of up to `max_frames` frames blanked."""

    max_frames: int
    count: int
    stage: ClassVar[Stage] = "features"

    def __call__(self, features: torch.Tensor) -> torch.Tensor:  # (1, frames, n_mels)
        return _mask(features, -2, self.max_frames, self.count)


@dataclass(frozen=True)
class FrequencyMask:
    """SpecAugment's frequency masking: `count` runs of up to `max_bands` mel bands blanked."""

    max_bands: int
    count: int
    stage: ClassVar[Stage] = "features"

    def __call__(self, features: torch.Tensor) -> torch.Tensor:  # (1, frames, n_mels)
        return _mask(features, -1, self.max_bands, self.count)
