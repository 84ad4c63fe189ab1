"""Transforms a config can name: for images, torchvision's transforms (v2), one registered builder
each; for audio, augmentations of clips and their features (`trainctl.data.audio_augment`).

Image transforms act on C×H×W float images in [0, 1]. `data.transforms.train` and `data.transforms.eval` are
lists of them; a list left out is the dataset's default, `[normalize]`. Transforms marked `random`
draw new parameters for every sample and epoch, so a training split that uses one is read sample
by sample through a DataLoader; every other list is applied once to a whole in-memory split.

Audio transforms apply to audio datasets only, in `data.transforms.train` (all of them are random);
the audio pipeline runs them in the order of their stages: crop, waveform, features.

torchvision is imported when a transform is built, never when the registry is listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from trainctl.errors import UserError
from trainctl.registry import Registry


def v2() -> Any:
    """torchvision.transforms.v2, loaded when a transform is built, not when the registry is listed."""
    from trainctl.data.images import v2 as torchvision_v2

    return torchvision_v2()


@dataclass(frozen=True, kw_only=True)
class TransformInfo:
    # Required, so that no transform is taken for a fixed one by omission: a random one is refused
    # in `eval` lists, and makes a training split be read sample by sample.
    random: bool  # draws new parameters for every sample and epoch
    applies_to: Literal["images", "audio"] = "images"  # the datasets whose inputs it transforms


TRANSFORMS = Registry("transform", TransformInfo)

Size = Annotated[int, Field(ge=1)] | Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=2, max_length=2)]
Probability = Annotated[float, Field(ge=0, le=1)]
PaddingMode = Literal["constant", "edge", "reflect", "symmetric"]


@TRANSFORMS.register("resize", summary="Resize to size (an int: the shorter side; [H, W]: exactly)", random=False)
def resize(context: Any, *, size: Size) -> Any:
    return v2().Resize(size, antialias=True)


@TRANSFORMS.register("center_crop", summary="Cut the central size×size (or [H, W]) region", random=False)
def center_crop(context: Any, *, size: Size) -> Any:
    return v2().CenterCrop(size)


@TRANSFORMS.register("pad", summary="Pad every side by `padding` pixels", random=False)
def pad(
    context: Any, *, padding: Annotated[int, Field(ge=1)], fill: float = 0.0, padding_mode: PaddingMode = "constant"
) -> Any:
    return v2().Pad(padding, fill=fill, padding_mode=padding_mode)


@TRANSFORMS.register("grayscale", summary="Convert RGB to gray, with 1 or 3 output channels", random=False)
def grayscale(context: Any, *, channels: Literal[1, 3] = 1) -> Any:
    return v2().Grayscale(num_output_channels=channels)


@TRANSFORMS.register(
    "normalize", summary="(x - mean) / std per channel; without mean and std: the dataset's statistics", random=False
)
def normalize(context: Any, *, mean: list[float] | None = None, std: list[float] | None = None) -> Any:
    # The pipeline fills in the dataset's statistics before building, so both are set here.
    return v2().Normalize(mean, std)


@TRANSFORMS.register(
    "random_crop", summary="A random size×size crop, after padding each side by `padding`", random=True
)
def random_crop(
    context: Any, *, size: Size, padding: Annotated[int, Field(ge=0)] = 0, padding_mode: PaddingMode = "constant"
) -> Any:
    return v2().RandomCrop(size, padding=padding or None, padding_mode=padding_mode)


@TRANSFORMS.register("random_resized_crop", summary="A random area and aspect ratio, resized to size", random=True)
def random_resized_crop(
    context: Any,
    *,
    size: Size,
    # List defaults are the config's values as they are written; builders never change their parameters.
    scale: Annotated[list[Annotated[float, Field(gt=0, le=1)]], Field(min_length=2, max_length=2)] = [0.08, 1.0],  # noqa: B006
    ratio: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=2, max_length=2)] = [0.75, 4 / 3],  # noqa: B006
) -> Any:
    return v2().RandomResizedCrop(size, scale=tuple(scale), ratio=tuple(ratio), antialias=True)


@TRANSFORMS.register("horizontal_flip", summary="Mirror left to right with probability p", random=True)
def horizontal_flip(context: Any, *, p: Probability = 0.5) -> Any:
    return v2().RandomHorizontalFlip(p)


@TRANSFORMS.register("vertical_flip", summary="Mirror top to bottom with probability p", random=True)
def vertical_flip(context: Any, *, p: Probability = 0.5) -> Any:
    return v2().RandomVerticalFlip(p)


@TRANSFORMS.register("rotation", summary="Rotate by a random angle in [-degrees, degrees]", random=True)
def rotation(context: Any, *, degrees: Annotated[float, Field(ge=0, le=180)]) -> Any:
    return v2().RandomRotation(degrees)


@TRANSFORMS.register("affine", summary="Random rotation, translation (fractions of the size) and scale", random=True)
def affine(
    context: Any,
    *,
    degrees: Annotated[float, Field(ge=0, le=180)] = 0.0,
    translate: Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=2, max_length=2)] | None = None,
    scale: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=2, max_length=2)] | None = None,
) -> Any:
    return v2().RandomAffine(degrees, translate=translate and tuple(translate), scale=scale and tuple(scale))


@TRANSFORMS.register(
    "color_jitter", summary="Random brightness, contrast, saturation (RGB) and hue (RGB) changes", random=True
)
def color_jitter(
    context: Any,
    *,
    brightness: Annotated[float, Field(ge=0)] = 0.0,
    contrast: Annotated[float, Field(ge=0)] = 0.0,
    saturation: Annotated[float, Field(ge=0)] = 0.0,
    hue: Annotated[float, Field(ge=0, le=0.5)] = 0.0,
) -> Any:
    return v2().ColorJitter(brightness or None, contrast or None, saturation or None, hue or None)


@TRANSFORMS.register(
    "gaussian_blur",
    summary="Blur with a kernel of kernel_size and a random sigma in [sigma_min, sigma_max]",
    random=True,
)
def gaussian_blur(
    context: Any,
    *,
    kernel_size: Annotated[int, Field(ge=1)] = 3,
    sigma_min: Annotated[float, Field(gt=0)] = 0.1,
    sigma_max: Annotated[float, Field(gt=0)] = 2.0,
) -> Any:
    return v2().GaussianBlur(kernel_size, sigma=(sigma_min, max(sigma_min, sigma_max)))


@TRANSFORMS.register(
    "random_erasing", summary="With probability p, blank a random rectangle (after normalize)", random=True
)
def random_erasing(
    context: Any,
    *,
    p: Probability = 0.5,
    scale: Annotated[list[Annotated[float, Field(gt=0, le=1)]], Field(min_length=2, max_length=2)] = [0.02, 0.33],  # noqa: B006
) -> Any:
    return v2().RandomErasing(p, scale=tuple(scale))


# ---- audio: augmentations of clips and their log-mel features ------------------------------------

Decibels = Annotated[float, Field(ge=-60, le=60)]


@TRANSFORMS.register(
    "time_crop",
    summary="Take the clip's data.duration window at a random place in the recording (evaluation: the centre)",
    random=True,
    applies_to="audio",
)
def time_crop(context: Any) -> Any:
    from trainctl.data.audio_augment import RandomTimeCrop

    return RandomTimeCrop()


@TRANSFORMS.register(
    "gain",
    summary="Louder or quieter by a random gain in [min_db, max_db] decibels",
    random=True,
    applies_to="audio",
)
def gain(context: Any, *, min_db: Decibels = -6.0, max_db: Decibels = 6.0) -> Any:
    from trainctl.data.audio_augment import Gain

    if min_db > max_db:
        raise ValueError(f"min_db {min_db} is above max_db {max_db}")
    return Gain(min_db, max_db)


@TRANSFORMS.register(
    "noise",
    summary="White noise at a random signal-to-noise ratio in [min_snr_db, max_snr_db]",
    random=True,
    applies_to="audio",
)
def noise(context: Any, *, min_snr_db: Decibels = 10.0, max_snr_db: Decibels = 40.0) -> Any:
    from trainctl.data.audio_augment import Noise

    if min_snr_db > max_snr_db:
        raise ValueError(f"min_snr_db {min_snr_db} is above max_snr_db {max_snr_db}")
    return Noise(min_snr_db, max_snr_db)


@TRANSFORMS.register(
    "time_mask",
    summary="SpecAugment: blank `count` runs of up to max_frames log-mel frames",
    random=True,
    applies_to="audio",
)
def time_mask(
    context: Any, *, max_frames: Annotated[int, Field(ge=1)] = 10, count: Annotated[int, Field(ge=1, le=100)] = 1
) -> Any:
    from trainctl.data.audio_augment import TimeMask

    return TimeMask(max_frames, count)


@TRANSFORMS.register(
    "frequency_mask",
    summary="SpecAugment: blank `count` runs of up to max_bands mel bands",
    random=True,
    applies_to="audio",
)
def frequency_mask(
    context: Any, *, max_bands: Annotated[int, Field(ge=1)] = 8, count: Annotated[int, Field(ge=1, le=100)] = 1
) -> Any:
    from trainctl.data.audio_augment import FrequencyMask

    return FrequencyMask(max_bands, count)


def is_random(specs: list[dict[str, Any]]) -> bool:
    return any(TRANSFORMS.get(spec["name"]).info.random for spec in specs)


def steps(specs: list[dict[str, Any]], where: str = "data.transforms.eval") -> list[Any]:
    """The transforms of a list of {name, params...}, built; `where` names the list in error messages."""
    built = []
    for index, spec in enumerate(specs):
        params = {key: value for key, value in spec.items() if key != "name"}
        try:
            built.append(TRANSFORMS.get(spec["name"]).build(None, params))
        except (ValueError, TypeError) as error:
            raise UserError(f"{where}.{index}: {spec['name']}: {error}") from None
    return built


def compose(specs: list[dict[str, Any]], where: str = "data.transforms.eval") -> Any:
    """The v2 pipeline of a list of image transforms."""
    return v2().Compose(steps(specs, where))


class _RegisteredTransforms:
    """The transforms registry as the image and audio pipelines' `TransformBuilder`."""

    compose = staticmethod(compose)
    is_random = staticmethod(is_random)
    steps = staticmethod(steps)


BUILDER = _RegisteredTransforms()
