"""Signal processing for audio datasets, in torch: resampling, fitting clips to one length, and the
features a model reads (log-mel spectrograms or the waveform itself).

Written here rather than taken from torchaudio (no build for this torch) or scipy (not a runtime
dependency of trainctl; scikit-learn installs it, but trainctl would then depend on what another
package happens to require). Everything works on batches, so deterministic features are computed
once, on the training device, for a whole split.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch

from trainctl.errors import UserError

# The resampling filter: a Kaiser-windowed sinc with 64 zero crossings on each side, cut off at
# 94.76 % of the lower Nyquist frequency, beta 14.77: the "kaiser_best" filter of resampy and
# torchaudio. Measured from 44.1 kHz to 16 kHz: flat to 0.01 dB up to 7 kHz, tones above 8.2 kHz
# (which would alias) attenuated by more than 75 dB.
ZERO_CROSSINGS = 64
ROLLOFF = 0.9475937167399596
KAISER_BETA = 14.769656459379492

LOG_OFFSET = 1e-6  # log(mel power + offset): silence (zero padding) is bounded, not -inf


@functools.lru_cache(maxsize=16)
def _resampling_kernel(source: int, target: int) -> tuple[torch.Tensor, int]:
    """The polyphase filter bank from `source` to `target` samples (coprime): one windowed-sinc
    filter per output phase, shape (target, 1, taps), and the padding each side needs."""
    cutoff = min(source, target) * ROLLOFF  # in cycles per `source` input samples
    half_width = math.ceil(ZERO_CROSSINGS * source / cutoff)  # input samples each side of an output sample
    offsets = torch.arange(-half_width, half_width + source, dtype=torch.float64) / source
    phases = -torch.arange(target, dtype=torch.float64)[:, None] / target
    t = ((phases + offsets) * cutoff).clamp(-ZERO_CROSSINGS, ZERO_CROSSINGS)  # in zero crossings of the sinc
    window = torch.special.i0(KAISER_BETA * torch.sqrt(1 - (t / ZERO_CROSSINGS) ** 2))
    window /= torch.special.i0(torch.tensor(KAISER_BETA, dtype=torch.float64))
    sinc = torch.special.sinc(t)  # sin(πt)/(πt), 1 at t = 0
    kernel = sinc * window * (cutoff / source)  # unit gain at 0 Hz
    return kernel[:, None].float(), half_width


def resample(waves: torch.Tensor, source_rate: int, target_rate: int) -> torch.Tensor:
    """Band-limited resampling of waves (..., samples) from source_rate to target_rate: a polyphase
    windowed-sinc filter, so frequencies above the new Nyquist frequency are removed, not folded back.
    The result has ceil(samples × target_rate / source_rate) samples."""
    if source_rate == target_rate:
        return waves
    common = math.gcd(source_rate, target_rate)
    source, target = source_rate // common, target_rate // common
    kernel, half_width = _resampling_kernel(source, target)
    shape, length = waves.shape[:-1], waves.shape[-1]
    flat = torch.nn.functional.pad(waves.reshape(-1, 1, length), (half_width, half_width + source))
    # Each output block of `target` samples is one strided convolution step over `source` input samples.
    blocks = torch.nn.functional.conv1d(flat, kernel.to(waves.device, waves.dtype), stride=source)
    out = blocks.transpose(1, 2).reshape(*shape, -1)
    return out[..., : math.ceil(length * target / source)]


def fit_length(wave: torch.Tensor, length: int, position: float = 0.5) -> torch.Tensor:
    """A 1-D wave cut or zero-padded to `length` samples. `position` in [0, 1] places the window (or
    the clip inside the padding): 0.5 is the centre, as evaluation reads every clip; a training
    crop draws it at random."""
    extra = wave.shape[-1] - length
    if extra == 0:
        return wave
    start = round(position * abs(extra))
    if extra > 0:
        return wave[..., start : start + length]
    return torch.nn.functional.pad(wave, (start, -extra - start))


def hz_to_mel(frequency: torch.Tensor) -> torch.Tensor:
    """The HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * torch.log10(1.0 + frequency / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """Triangular filters, shape (n_fft // 2 + 1, n_mels): filter m rises linearly (in Hz) from the
    m-th to the (m+1)-th of n_mels + 2 points spaced evenly on the mel scale between f_min and f_max,
    and falls to the (m+2)-th; peaks are 1 (no area normalisation: the features are standardised
    per band afterwards anyway). The construction of librosa's and torchaudio's (HTK scale)."""
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(
        torch.linspace(
            float(hz_to_mel(torch.tensor(f_min, dtype=torch.float64))),
            float(hz_to_mel(torch.tensor(f_max, dtype=torch.float64))),
            n_mels + 2,
            dtype=torch.float64,
        )
    )
    widths = edges[1:] - edges[:-1]
    distance = edges[None, :] - bins[:, None]  # (bins, points): how far each point lies above each bin
    rising = -distance[:, :-2] / widths[:-1]
    falling = distance[:, 2:] / widths[1:]
    return torch.clamp(torch.minimum(rising, falling), min=0).float()


@dataclass(frozen=True)
class LogMel:
    """Log mel spectrogram of (batch, samples) waves: (batch, 1, frames, n_mels), time along the
    rows, so `rnn` reads it frame by frame and a CNN as a one-channel image."""

    sample_rate: int
    n_fft: int
    hop_length: int
    n_mels: int
    f_min: float
    f_max: float

    def shape(self, length: int) -> tuple[int, ...]:
        return (1, 1 + length // self.hop_length, self.n_mels)  # frames of a centred STFT

    @functools.cached_property
    def _filters(self) -> torch.Tensor:
        return mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.f_min, self.f_max)

    @functools.cached_property
    def _window(self) -> torch.Tensor:
        return torch.hann_window(self.n_fft)

    def __call__(self, waves: torch.Tensor) -> torch.Tensor:
        spectrum = torch.stft(
            waves,
            self.n_fft,
            self.hop_length,
            window=self._window.to(waves.device),
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )  # (batch, n_fft // 2 + 1, frames)
        power = spectrum.real.square() + spectrum.imag.square()
        mel = power.transpose(1, 2) @ self._filters.to(waves.device)  # (batch, frames, n_mels)
        return torch.log(mel + LOG_OFFSET).unsqueeze(1)


@dataclass(frozen=True)
class Waveform:
    """The wave itself, (batch, 1, samples): for models that learn their own filters."""

    def shape(self, length: int) -> tuple[int, ...]:
        return (1, length)

    def __call__(self, waves: torch.Tensor) -> torch.Tensor:
        return waves.unsqueeze(1)


Features = LogMel | Waveform


def features_of(settings: dict[str, Any], sample_rate: int, length: int) -> Features:
    """The features data.features names, checked against the clips they will read."""
    if settings["name"] == "waveform":
        return Waveform()
    n_fft, hop, n_mels = settings["n_fft"], settings["hop_length"], settings["n_mels"]
    f_max = settings["f_max"] if settings["f_max"] is not None else sample_rate / 2
    if not settings["f_min"] < f_max <= sample_rate / 2:
        raise UserError(
            f"data.features: f_min {settings['f_min']} and f_max {f_max} must satisfy "
            f"0 ≤ f_min < f_max ≤ {sample_rate / 2:g} (half of data.sample_rate {sample_rate})"
        )
    if length < n_fft:
        raise UserError(
            f"data.duration: clips of {length} samples (at {sample_rate} Hz) are shorter than one "
            f"window of data.features.n_fft {n_fft}; use a longer duration or a smaller n_fft"
        )
    if hop > n_fft:
        raise UserError(
            f"data.features.hop_length: {hop} is longer than n_fft {n_fft}: samples between windows would be skipped"
        )
    features = LogMel(sample_rate, n_fft, hop, n_mels, float(settings["f_min"]), float(f_max))
    empty = (features._filters.sum(dim=0) == 0).nonzero().flatten().tolist()
    if empty:
        raise UserError(
            f"data.features.n_mels: {n_mels} mel bands between {settings['f_min']:g} and {f_max:g} Hz are narrower "
            f"than the {sample_rate / n_fft:g} Hz between frequency bins of n_fft {n_fft}, so band(s) "
            f"{', '.join(map(str, empty[:5]))} hold no bin; use fewer mel bands or a larger n_fft"
        )
    return features
