"""Generated audio with a known answer: tones whose pitch is the class, as 16-bit PCM WAV.

`tone_wav` synthesises one clip; `write_tones` writes a dataset folder (`tones.csv` naming one WAV
per row, relative to the CSV, and the WAV files). The generative process, per row: a pitch class
drawn uniformly from `PITCHES` (octaves apart), a sine at that frequency ×(1 ± 3 %) with a random
phase and amplitude in [0.2, 0.8], an onset in the first tenth of the clip (silence before), and
Gaussian noise of std 0.05; the label is the pitch's name. Chance accuracy is 1 / len(PITCHES).

`generate_alerts` (the `alerts` source, `configs/audio_text.yaml`) adds a caption to each clip and
three tasks that need the audio, the text, or both: `pitch` (the tone's class), `urgent` (the
caption holds one of `URGENT_WORDS`, drawn with probability 0.4 among filler words) and `alarm`
(urgent *and* a high or top pitch). About 8 % of clips and 8 % of captions are missing (empty);
a task whose deciding modality is missing keeps its label (the model can only guess it).
"""

from __future__ import annotations

import csv
import io
import wave
from pathlib import Path

import numpy as np

PITCHES = {"low": 300.0, "mid": 600.0, "high": 1200.0, "top": 2400.0}


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """Mono float samples in [-1, 1] as 16-bit PCM WAV bytes."""
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def tone_wav(frequency: float, sample_rate: int, duration_s: float, rng: np.random.Generator) -> bytes:
    """One clip of the generative process above, at `frequency` Hz."""
    count = int(round(sample_rate * duration_s))
    time = np.arange(count) / sample_rate
    onset = rng.uniform(0.0, 0.1 * duration_s)
    pitch = frequency * rng.uniform(0.97, 1.03)
    tone = rng.uniform(0.2, 0.8) * np.sin(2 * np.pi * pitch * time + rng.uniform(0, 2 * np.pi))
    tone[time < onset] = 0.0
    return wav_bytes(np.clip(tone + rng.normal(0.0, 0.05, count), -1.0, 1.0), sample_rate)


def write_tones(
    folder: str | Path, num_examples: int, seed: int, sample_rate: int = 8000, duration_s: float = 0.5
) -> Path:
    """Write `tones.csv` (columns `clip`, `pitch`) and `clips/<i>.wav` into `folder`; return the CSV's path."""
    folder = Path(folder)
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(PITCHES)
    path = folder / "tones.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["clip", "pitch"])
        for index in range(num_examples):
            pitch = names[int(rng.integers(len(names)))]
            clip = Path("clips") / f"{index}.wav"
            (folder / clip).write_bytes(tone_wav(PITCHES[pitch], sample_rate, duration_s, rng))
            writer.writerow([clip.as_posix(), pitch])
    return path


URGENT_WORDS = ("urgent", "now", "asap", "immediately")
FILLER_WORDS = ("the", "door", "bell", "kitchen", "timer", "phone", "please", "check", "soon", "later", "quiet")
HIGH_PITCHES = ("high", "top")


def generate_alerts(
    num_examples: int, seed: int, sample_rate: int = 8000, duration_s: float = 0.5
) -> dict[str, np.ndarray]:
    """The `alerts` table: `clip` (WAV bytes), `caption` (text) and the labels `pitch`, `urgent`, `alarm`."""
    rng = np.random.default_rng(seed)
    names = list(PITCHES)
    table: dict[str, list] = {column: [] for column in ("clip", "caption", "pitch", "urgent", "alarm")}
    for _ in range(num_examples):
        pitch = names[int(rng.integers(len(names)))]
        urgent = bool(rng.random() < 0.4)
        words = list(rng.choice(FILLER_WORDS, size=int(rng.integers(3, 7))))
        if urgent:
            words.insert(int(rng.integers(len(words) + 1)), str(rng.choice(URGENT_WORDS)))
        clip = tone_wav(PITCHES[pitch], sample_rate, duration_s, rng)
        table["clip"].append(b"" if rng.random() < 0.08 else clip)
        table["caption"].append("" if rng.random() < 0.08 else " ".join(words))
        table["pitch"].append(pitch)
        table["urgent"].append("yes" if urgent else "no")
        table["alarm"].append("yes" if urgent and pitch in HIGH_PITCHES else "no")
    return {column: np.asarray(values, dtype=object) for column, values in table.items()}
