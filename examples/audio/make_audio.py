"""Writes examples/audio/sounds/: 1-second WAV clips at 16 kHz of six kinds of sound, one sub-folder
per class (the layout audio_folder reads), 40 clips each.

Synthesised rather than recorded (no labelled recordings ship with a package), and made so that
no single number tells the classes apart: every clip has a random pitch in the same range, a
random start, length and loudness, and background noise at a random signal-to-noise ratio; what
differs is the shape of the sound in time and frequency, as with real sounds. The script is seeded,
so running it again writes the same files.

    python examples/audio/make_audio.py            # then: trainctl train examples/audio/audio_cnn.yaml
    python examples/audio/make_audio.py OUT_DIR 10 # 10 clips per class into OUT_DIR
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import soundfile

RATE = 16000
SECONDS = 1.0
PER_CLASS = 40
CLASSES = ("tone", "chirp_up", "chirp_down", "am_tone", "pulses", "noise_burst")


def event(kind: str, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One sound of `kind` over times t (seconds from its start), peak amplitude about 1."""
    low, high = sorted(rng.uniform(300, 3000, 2))
    if kind == "tone":
        return np.sin(2 * np.pi * rng.uniform(300, 3000) * t)
    if kind in ("chirp_up", "chirp_down"):
        start, end = (low, high * 1.5) if kind == "chirp_up" else (high * 1.5, low)
        sweep = start * t + (end - start) * t**2 / (2 * t[-1])  # the phase's integral of a linear sweep
        return np.sin(2 * np.pi * sweep)
    if kind == "am_tone":
        rate = rng.uniform(4, 12)  # modulation in Hz: a tremolo
        return np.sin(2 * np.pi * rng.uniform(300, 3000) * t) * (0.55 + 0.45 * np.sin(2 * np.pi * rate * t))
    if kind == "pulses":
        period = rng.uniform(0.06, 0.12)
        gate = (t % period) < period * 0.35
        return np.sin(2 * np.pi * rng.uniform(300, 3000) * t) * gate
    # noise_burst: white noise through a band, by zeroing the spectrum outside [low, high * 1.5]
    spectrum = np.fft.rfft(rng.standard_normal(len(t)))
    frequencies = np.fft.rfftfreq(len(t), 1 / RATE)
    spectrum[(frequencies < low) | (frequencies > high * 1.5)] = 0
    burst = np.fft.irfft(spectrum, len(t))
    return burst / (np.abs(burst).max() + 1e-9)


def clip(kind: str, rng: np.random.Generator) -> np.ndarray:
    total = int(RATE * SECONDS)
    length = int(rng.uniform(0.35, 0.8) * total)
    start = int(rng.integers(0, total - length))
    t = np.arange(length) / RATE
    ramp = np.minimum(1, np.minimum(t, t[::-1]) / 0.01)  # 10 ms fades: no clicks at the edges
    signal = np.zeros(total)
    signal[start : start + length] = event(kind, t, rng) * ramp
    signal *= 10 ** (rng.uniform(-20, -3) / 20)  # peak level in dBFS
    snr = rng.uniform(5, 30)
    power = np.mean(signal[start : start + length] ** 2)
    signal += rng.standard_normal(total) * np.sqrt(power / 10 ** (snr / 10))
    return np.clip(signal, -1, 1).astype(np.float32)


def main(root: Path, per_class: int) -> None:
    rng = np.random.default_rng(0)
    shutil.rmtree(root, ignore_errors=True)
    for kind in CLASSES:
        (root / kind).mkdir(parents=True)
        for index in range(per_class):
            soundfile.write(root / kind / f"{index:03d}.wav", clip(kind, rng), RATE, subtype="PCM_16")


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "sounds"
    main(out, int(sys.argv[2]) if len(sys.argv) > 2 else PER_CLASS)
