"""Real inputs for the corpus models, made the way each model's users prepare theirs.

Images are real photos and faces that ship inside scikit-image and scikit-learn; text is rendered with
Pillow's bundled font; audio is synthesized (harmonic tones at known pitches, vowel-like formant
speech). Every generator is seeded and deterministic, and returns arrays keyed by input name with the
samples along each input's batch axis.
"""
from __future__ import annotations

import numpy as np

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
]
WORDS = ["edge", "compiler", "model", "tensor", "vision", "audio", "python", "signal", "layer", "kernel",
         "raspberry", "quantize", "latency", "river", "garden", "window", "orange", "planet", "silver", "forest"]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- images

def photos(size: tuple[int, int], count: int) -> np.ndarray:
    """Real RGB photos (scikit-image and scikit-learn samples), resized to (height, width), uint8."""
    from skimage import data
    from skimage.transform import resize
    from sklearn.datasets import load_sample_images

    images = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), *load_sample_images().images]
    out = [resize(img, size, order=1, anti_aliasing=True, preserve_range=True) for img in images[:count]]
    return np.round(np.stack(out)).astype(np.uint8)


def faces(size: int, count: int) -> np.ndarray:
    """Labelled-Faces-in-the-Wild crops from scikit-image, upscaled to size x size, grey uint8."""
    from skimage import data
    from skimage.transform import resize

    crops = data.lfw_subset()[:count]  # the first 100 are faces
    return np.stack([np.round(resize(c, (size, size), order=1) * 255) for c in crops]).astype(np.uint8)


def face_grid(size: int, count: int) -> np.ndarray:
    """Images of 2 x 2 faces each, size x size RGB uint8: several faces per image for a detector."""
    tiles = faces(size // 2, 4 * count)
    rows = [np.concatenate([np.concatenate(tiles[i:i + 2], 1), np.concatenate(tiles[i + 2:i + 4], 1)], 0)
            for i in range(0, 4 * count, 4)]
    return np.repeat(np.stack(rows)[..., None], 3, axis=-1)


def render_text(text: str, height: int, width: int, *, font_size: int, background=255, ink=0, angle: int = 0,
                origin=(4, None)):
    """One line of text with Pillow's bundled font, centred vertically, grey uint8 [height, width]."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=font_size)
    image = Image.new("L", (width, height), background)
    draw = ImageDraw.Draw(image)
    top = origin[1] if origin[1] is not None else (height - font_size) // 2 - font_size // 8
    draw.text((origin[0], top), text, font=font, fill=ink)
    if angle:
        image = image.rotate(angle)
    return np.asarray(image)


def _text_lines(count: int, seed: int, words: int = 2) -> list[str]:
    rng = _rng(seed)
    return [" ".join(rng.choice(WORDS, words)) + f" {rng.integers(10, 99)}" for _ in range(count)]


def text_line_crops(lines: list[str], height: int, width: int, *, font_size: int, flip_every: int = 0) -> np.ndarray:
    """Text lines as PaddleOCR's recognisers and direction classifier receive them (its resize_norm_img):
    each line cropped to its ink, resized to `height` keeping its aspect ratio (squeezed only where wider than
    `width`), scaled to [-1, 1] and padded on the right with zeros, i.e. mid-grey; every `flip_every`-th line
    is turned by 180 degrees. RGB float32 [count, 3, height, width]. Lines on a full white band of fixed width
    are not what these models see: on them the recogniser's fp32 is unsure of most characters."""
    from PIL import Image

    out = np.zeros((len(lines), 3, height, width), np.float32)
    for i, line in enumerate(lines):
        grey = render_text(line, height, 8 * width, font_size=font_size)
        ink = np.flatnonzero((grey < 128).any(axis=0))
        crop = grey[:, :min(grey.shape[1], ink.max() + 8)]
        resized_width = min(width, int(np.ceil(height * crop.shape[1] / crop.shape[0])))
        crop = np.asarray(Image.fromarray(crop).resize((resized_width, height), Image.BILINEAR))
        if flip_every and i % flip_every:
            crop = crop[::-1, ::-1]
        out[i, :, :, :resized_width] = crop.astype(np.float32) / 127.5 - 1.0
    return out


def text_on_photos(size: int, count: int, seed: int) -> np.ndarray:
    """Photos with black text lines pasted on a white band, RGB uint8 [count, size, size, 3]."""
    rng = _rng(seed)
    images = photos((size, size), count).copy()
    for image, line in zip(images, _text_lines(count, seed)):
        band = render_text(line, 40, size - 40, font_size=28)
        top = int(rng.integers(20, size - 60))
        image[top:top + 40, 20:size - 20] = band[..., None]
    return images


def glyphs_on_photos(size: int, count: int, seed: int) -> np.ndarray:
    """Click-captcha-like images: large letters scattered over a photo, RGB uint8."""
    from PIL import Image, ImageDraw, ImageFont

    rng = _rng(seed)
    font = ImageFont.load_default(size=size // 8)
    out = []
    for photo in photos((size, size), count):
        image = Image.fromarray(photo)
        draw = ImageDraw.Draw(image)
        for i in range(4):
            x = int(rng.integers(10, size - size // 6))
            y = int(size * i / 4 + rng.integers(5, size // 8))
            draw.text((x, y), chr(int(rng.integers(65, 91))), font=font, fill=(0, 0, 0),
                      stroke_width=2, stroke_fill=(255, 255, 255))
        out.append(np.asarray(image))
    return np.stack(out)


# ---------------------------------------------------------------- audio

def tones(frequencies, sample_rate: int, samples: int, harmonics: int = 3) -> np.ndarray:
    """Harmonic tones (decaying overtones), one per frequency, float32 in [-1, 1]."""
    t = np.arange(samples) / sample_rate
    out = [sum(np.sin(2 * np.pi * f * k * t) / k for k in range(1, harmonics + 1)) for f in frequencies]
    return (0.5 * np.stack(out) / harmonics).astype(np.float32)


def melody(notes_midi, sample_rate: int, samples: int) -> np.ndarray:
    """Consecutive harmonic notes with attack/decay envelopes, float32 [samples]."""
    pieces = np.array_split(np.arange(samples), len(notes_midi))
    out = np.zeros(samples, np.float32)
    for note, idx in zip(notes_midi, pieces):
        f = 440.0 * 2 ** ((note - 69) / 12)
        envelope = np.exp(-3.0 * np.arange(len(idx)) / len(idx))
        out[idx] = tones([f], sample_rate, len(idx))[0] * envelope
    return out


def vowels(seed: int, sample_rate: int = 16000, seconds: float = 1.6) -> np.ndarray:
    """Speech-like audio: a glottal pulse train with a gliding pitch through vowel formants, float32."""
    from scipy.signal import lfilter

    rng = _rng(seed)
    n = int(sample_rate * seconds)
    pitch = rng.uniform(90, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * np.arange(n) / sample_rate))
    phase = np.cumsum(pitch / sample_rate)
    source = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)
    formants = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410)]
    out = np.zeros(n)
    for k, idx in enumerate(np.array_split(np.arange(n), 4)):
        segment = source[idx]
        for f in formants[(seed + k) % len(formants)]:
            r = np.exp(-np.pi * 80 / sample_rate)
            segment = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / sample_rate), r * r], segment)
        out[idx] = segment
    out += 0.01 * rng.standard_normal(n)
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def log_mel(audio: np.ndarray, sample_rate: int = 16000, bands: int = 40, window_ms: int = 25, step_ms: int = 10):
    """Mel power spectrogram frames [frames, bands] as Resemblyzer computes them (no log)."""
    win, hop = sample_rate * window_ms // 1000, sample_rate * step_ms // 1000
    n_fft = win
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(audio, n_fft // 2, mode="reflect"), n_fft)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft + 1)[:-1], axis=1)) ** 2
    return (power @ mel_filters(sample_rate, n_fft, bands).T).astype(np.float32)


def mel_filters(sample_rate: int, n_fft: int, bands: int) -> np.ndarray:
    """Slaney-style triangular mel filterbank [bands, n_fft // 2 + 1], area-normalized."""
    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f < 1000, f / (200 / 3), 15 + np.log(np.maximum(f, 1e-9) / 1000) / (np.log(6.4) / 27))

    def mel_to_hz(m):
        return np.where(m < 15, m * 200 / 3, 1000 * np.exp((m - 15) * np.log(6.4) / 27))

    edges = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(sample_rate / 2), bands + 2))
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lower = (freqs[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    upper = (edges[2:, None] - freqs[None]) / (edges[2:, None] - edges[1:-1, None])
    return np.maximum(0, np.minimum(lower, upper)) * (2 / (edges[2:] - edges[:-2]))[:, None]


# ---------------------------------------------------------------- text

def wordpiece(sentences: list[str], vocab: list[str], length: int) -> dict[str, np.ndarray]:
    """BERT's uncased WordPiece tokenization, [CLS] ... [SEP], padded to `length`: ids and mask, int64."""
    import re
    import unicodedata

    index = {token: i for i, token in enumerate(vocab)}
    ids = np.zeros((len(sentences), length), np.int64)
    mask = np.zeros((len(sentences), length), np.int64)
    for row, sentence in enumerate(sentences):
        text = unicodedata.normalize("NFD", sentence.lower())
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
        tokens = ["[CLS]"]
        for word in re.findall(r"\w+|[^\w\s]", text):
            start = 0
            while start < len(word):
                end = len(word)
                while end > start and (("##" if start else "") + word[start:end]) not in index:
                    end -= 1
                if end == start:
                    tokens.append("[UNK]")
                    break
                tokens.append(("##" if start else "") + word[start:end])
                start = end
        tokens = tokens[:length - 1] + ["[SEP]"]
        ids[row, :len(tokens)] = [index[t] for t in tokens]
        mask[row, :len(tokens)] = 1
    return {"input_ids": ids, "attention_mask": mask}
