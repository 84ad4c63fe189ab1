"""Audio datasets from files to model inputs: decoded once, then features.

Every file is decoded, mixed down and resampled once, into memory. A clip is then fitted to
`data.duration` (evaluation: the centre), turned into features (log-mel or the waveform) and
standardised with per-band statistics of the training split. Deterministic splits are computed
once, in batches on the training device, and kept as tensors (the fast path); a training split
under random transforms (crops, gain, noise, SpecAugment) is computed per sample and epoch from the
decoded clips, through the same streaming reader as augmented images.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trainctl.data.audio import read_clip
from trainctl.data.audio_augment import STAGES
from trainctl.data.audio_features import Features, LogMel, features_of, fit_length
from trainctl.data.image_pipeline import ImageInputs, ImageOptions, TransformBuilder
from trainctl.data.raw import AudioSource
from trainctl.data.streaming import StreamedInputs
from trainctl.errors import UserError
from trainctl.limits import require_memory

CHUNK = 256  # clips turned into features (or decoded between two memory checks) at a time


@dataclass
class DecodedClips:
    """Decoded clips held in memory, one 1-D float32 tensor per dataset row (the rows a split
    reads; None for the others)."""

    clips: list[torch.Tensor | None]

    def read(self, row: int) -> torch.Tensor:
        clip = self.clips[row]
        if clip is None:
            raise IndexError(f"row {row} was not decoded")
        return clip


@dataclass
class AudioPipeline:
    """One clip (or a batch of clips) to standardised features, through a phase's transforms."""

    length: int  # samples per clip
    features: Features
    mean: torch.Tensor  # per band (log-mel) or one value (waveform)
    std: torch.Tensor
    steps: list[Any]  # the phase's transforms, in the order of their stages (`staged_steps`)

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        """One clip's features; random transforms draw from torch's generator (seeded per clip and epoch)."""
        crops = [step for step in self.steps if step.stage == "crop"]
        wave = fit_length(clip, self.length, crops[-1].position() if crops else 0.5)
        for step in self.steps:
            if step.stage == "waveform":
                wave = step(wave)
        features = self.standardise(self.features(wave.unsqueeze(0)))[0]
        for step in self.steps:
            if step.stage == "features":
                features = step(features)
        return features

    def standardise(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean.to(features.device)) / self.std.to(features.device)

    def batch(self, waves: torch.Tensor) -> torch.Tensor:
        """Features of fitted waves (batch, length) on their device, through deterministic transforms:
        the whole batch at once when there are none (the usual case), else clip by clip."""
        if self.steps:
            return torch.stack([self(wave) for wave in waves])
        return self.standardise(self.features(waves))


def staged_steps(specs: list[dict[str, Any]], where: str, builder: TransformBuilder, features: Features) -> list[Any]:
    """A phase's transforms, built, each acting at a stage of the pipeline (crop, waveform, features),
    listed in that order so that the list reads as what happens to a clip."""
    steps = builder.steps(specs, where)
    for index, (spec, step) in enumerate(zip(specs, steps)):
        stage = getattr(step, "stage", None)
        if stage not in STAGES:
            raise UserError(
                f"{where}.{index}: {spec['name']} is registered for audio, but what it builds has no stage "
                f"({', '.join(STAGES)}) to say where in the pipeline it acts"
            )
        if stage == "features" and not isinstance(features, LogMel):
            raise UserError(f"{where}.{index}: {spec['name']} acts on log-mel features; data.features is waveform")
        if index and STAGES.index(stage) < STAGES.index(steps[index - 1].stage):
            raise UserError(
                f"{where}.{index}: {spec['name']} acts on the {stage}, which comes before the "
                f"{steps[index - 1].stage} that {specs[index - 1]['name']} acts on; list them in the order "
                "crop (time_crop), waveform (gain, noise), features (time_mask, frequency_mask)"
            )
    return steps


def decode(source: AudioSource, rows: np.ndarray, keep_whole: bool) -> DecodedClips:
    """The clips of `rows`, decoded at the source's rate: whole when a training crop may take any part
    of them, else only their centre `length` samples (the part evaluation reads)."""
    clips: list[torch.Tensor | None] = [None] * len(source.files)
    total = 0
    for count, row in enumerate(rows.tolist(), 1):
        clip = read_clip(source.files[row], source.sample_rate)
        clip = clip if keep_whole else fit_length(clip, source.length).clone()  # a view would keep the whole
        clips[row] = clip
        total += clip.numel()
        if count % CHUNK == 0 or count == len(rows):
            require_memory(
                total * 4, f"data: {count:,} audio files decoded at data.sample_rate {source.sample_rate} Hz"
            )
    return DecodedClips(clips)


def _fitted_waves(clips: DecodedClips, rows: np.ndarray, length: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(rows), CHUNK):
        yield torch.stack([fit_length(clips.read(int(row)), length) for row in rows[start : start + CHUNK]])


def _statistics(
    clips: DecodedClips, rows: np.ndarray, length: int, features: Features, device: torch.device, normalize: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation per band (over clips and frames) of the training clips' features,
    centre-fitted as evaluation reads them; one value for waveforms."""
    width = features.shape(length)[-1] if len(features.shape(length)) == 3 else 1
    if not normalize:
        return torch.zeros(width), torch.ones(width)
    total = torch.zeros(width, dtype=torch.float64, device=device)
    squares = torch.zeros(width, dtype=torch.float64, device=device)
    count = 0
    for waves in _fitted_waves(clips, rows, length):
        values = features(waves.to(device)).double().reshape(-1, width)
        total += values.sum(dim=0)
        squares += values.square().sum(dim=0)
        count += len(values)
    mean = total / count
    std = (squares / count - mean.square()).clamp(min=0).sqrt()
    std[std == 0] = 1.0  # a band constant in every training clip stays at zero
    # float32 values, which data.json keeps exactly: predict standardises as evaluation does
    return mean.float().cpu(), std.float().cpu()


def _cached(clips: DecodedClips, rows: np.ndarray, pipeline: AudioPipeline, device: torch.device) -> torch.Tensor:
    """A deterministic split's features, computed once in batches on the device."""
    shape = pipeline.features.shape(pipeline.length)
    require_memory(len(rows) * int(np.prod(shape)) * 4, f"data: the features of {len(rows):,} audio clips")
    if len(rows) == 0:
        return torch.zeros((0, *shape), device=device)
    return torch.cat([pipeline.batch(waves.to(device)) for waves in _fitted_waves(clips, rows, pipeline.length)])


def prepare_audio(
    source: AudioSource,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    options: ImageOptions,
    device: torch.device,
) -> ImageInputs:
    builder = options.builder
    features = features_of(source.features, source.sample_rate, source.length)
    settings = options.transforms or {}
    specs = {phase: [dict(spec) for spec in (settings.get(phase) or [])] for phase in ("train", "eval")}
    steps = {phase: staged_steps(specs[phase], f"data.transforms.{phase}", builder, features) for phase in specs}
    crops = any(step.stage == "crop" for step in steps["train"])
    clips = decode(source, np.concatenate(rows), keep_whole=crops)
    statistics = _statistics(clips, rows[0], source.length, features, device, source.features.get("normalize", True))
    pipelines = {phase: AudioPipeline(source.length, features, *statistics, steps[phase]) for phase in steps}

    def inputs(split_rows: np.ndarray, phase: str) -> torch.Tensor | StreamedInputs:
        if phase == "train" and builder.is_random(specs["train"]):
            return StreamedInputs(clips, split_rows, pipelines[phase], True, options.seed, device, options.loader)
        return _cached(clips, split_rows, pipelines[phase], device)  # eval lists are never random (the config)

    encoding = {
        "audio": {
            "sample_rate": source.sample_rate,
            "length": source.length,
            "features": _resolved_features(source.features, features),
            "mean": statistics[0].tolist(),
            "std": statistics[1].tolist(),
            "transforms": specs["eval"],
        }
    }
    return ImageInputs(
        inputs(rows[0], "train"),
        inputs(rows[1], "eval"),
        inputs(rows[2], "eval"),
        features.shape(source.length),
        encoding,
    )


def _resolved_features(settings: dict[str, Any], features: Features) -> dict[str, Any]:
    """data.features with what defaulted to something else filled in (f_max: half the sample rate)."""
    resolved = dict(settings)
    if isinstance(features, LogMel):
        resolved["f_max"] = features.f_max
    return resolved


def features_of_file(path: Any, encoding: dict[str, Any], builder: TransformBuilder) -> torch.Tensor:
    """One audio file as the model saw the evaluation clips (predict): decoded, resampled, its centre
    `length` samples, features standardised with the training split's statistics, through the eval
    transforms; (1, *shape)."""
    sample_rate, length = encoding["sample_rate"], encoding["length"]
    features = features_of(encoding["features"], sample_rate, length)
    steps = staged_steps(encoding["transforms"], "data.transforms.eval", builder, features)
    pipeline = AudioPipeline(length, features, torch.tensor(encoding["mean"]), torch.tensor(encoding["std"]), steps)
    return pipeline.batch(fit_length(read_clip(path, sample_rate), length).unsqueeze(0))
