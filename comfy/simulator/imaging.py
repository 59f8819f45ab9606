"""The pixel work of the simulated nodes: ComfyUI's blend, scale, noise, quantize and sharpen
(same inputs and output sizes as ComfyUI's, not the same pixels), and a painted 'generation'."""
from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

RESAMPLE = {
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def blend(first: Image.Image, second: Image.Image, factor: float, mode: str) -> Image.Image:
    """ComfyUI's ImageBlend: the second image fitted to the first, mixed in by `factor`."""
    if second.size != first.size:
        second = second.resize(first.size, Image.Resampling.BICUBIC)
    a = np.asarray(first.convert("RGB"), dtype=np.float32) / 255.0
    b = np.asarray(second.convert("RGB"), dtype=np.float32) / 255.0
    if mode == "multiply":
        mixed = a * b
    elif mode == "screen":
        mixed = 1 - (1 - a) * (1 - b)
    elif mode == "overlay":
        mixed = np.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b))
    elif mode == "soft_light":
        g = np.where(a <= 0.25, ((16 * a - 12) * a + 4) * a, np.sqrt(a))
        mixed = np.where(b <= 0.5, a - (1 - 2 * b) * a * (1 - a), a + (2 * b - 1) * (g - a))
    elif mode == "difference":
        mixed = a - b
    elif mode == "normal":
        mixed = b
    else:
        raise ValueError(f"Unsupported blend mode: {mode}")
    out = np.clip(a * (1 - factor) + mixed * factor, 0, 1)
    return Image.fromarray((out * 255).round().astype(np.uint8), "RGB")


def add_noise(image: Image.Image, seed: int, strength: float, index: int = 0) -> Image.Image:
    """ImageAddNoise: standard normal noise per pixel and channel, times strength, clipped to
    the colour range; the seed decides the noise (ComfyUI draws it with torch, so the pixels
    differ from a real server's, their statistics do not)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    noise = np.random.default_rng([seed, index]).standard_normal(pixels.shape, np.float32)
    out = np.clip(pixels + strength * noise, 0.0, 1.0)
    return Image.fromarray((out * 255).astype(np.uint8), "RGB")


def _bayer(order: int) -> np.ndarray:
    """The order×order ordered-dither threshold map, values centred on 0 in (-0.5, 0.5)."""
    matrix = np.zeros((1, 1))
    while matrix.shape[0] < order:
        matrix = np.block([[4 * matrix, 4 * matrix + 2], [4 * matrix + 3, 4 * matrix + 1]])
    return (matrix + 0.5) / matrix.size - 0.5


def quantize(image: Image.Image, colors: int, dither: str) -> Image.Image:
    """ImageQuantize: a palette of at most `colors` chosen from the image (median cut, over a
    reduced copy: a full-size cut takes a third of a second), each pixel mapped to it plainly,
    by Floyd–Steinberg error diffusion, or by a Bayer threshold map ("bayer-N") spread over the
    palette's spacing."""
    if dither not in ("none", "floyd-steinberg") and not dither.startswith("bayer-"):
        raise ValueError(f"Unsupported dither: {dither}")
    rgb = image.convert("RGB")
    sample = rgb.copy()
    sample.thumbnail((96, 96), Image.Resampling.NEAREST)
    palette = sample.quantize(colors=colors)
    if dither.startswith("bayer-"):
        order = int(dither.rsplit("-", 1)[1])
        spread = 2 * 256 / max(len(palette.getpalette() or ()) // 3, 1)
        tile = _bayer(order) * spread + 0.5
        pixels = np.asarray(rgb, dtype=np.float32)
        reps = (-(-pixels.shape[0] // order), -(-pixels.shape[1] // order))
        offset = np.tile(tile, reps)[: pixels.shape[0], : pixels.shape[1], None]
        rgb = Image.fromarray(np.clip(pixels + offset, 0, 255).astype(np.uint8), "RGB")
    method = (Image.Dither.FLOYDSTEINBERG if dither == "floyd-steinberg"
              else Image.Dither.NONE)
    return rgb.quantize(palette=palette, dither=method).convert("RGB")


def sharpen(image: Image.Image, radius: int, sigma: float, alpha: float) -> Image.Image:
    """ImageSharpen: the image plus 10·alpha times its difference from a Gaussian blur of it
    (sigma, within `radius`), clipped."""
    if radius == 0:
        return image.copy()
    return image.convert("RGB").filter(ImageFilter.UnsharpMask(
        radius=min(sigma, radius), percent=round(alpha * 1000), threshold=0))


def scale(image: Image.Image, inputs: Mapping[str, Any]) -> Image.Image:
    """ImageScale: a zero side keeps the aspect ratio; crop "center" fills the new size."""
    width, height = int(inputs["width"]), int(inputs["height"])
    if width == 0 and height == 0:
        return image.copy()
    if width == 0:
        width = max(1, round(image.width * height / image.height))
    if height == 0:
        height = max(1, round(image.height * width / image.width))
    method = RESAMPLE.get(str(inputs["upscale_method"]), Image.Resampling.BICUBIC)
    if inputs.get("crop") == "center":
        return ImageOps.fit(image, (width, height), method)
    return image.resize((width, height), method)


def pattern(
    seed: int, text: str, negative: str, model: str, width: int, height: int
) -> Image.Image:
    """A deterministic picture: the prompt picks the palette, the seed the layout."""
    palette_rng = random.Random(f"palette|{model}|{text}|{negative}")
    palette = [tuple(palette_rng.randrange(256) for _ in range(3)) for _ in range(5)]
    rng = random.Random(f"layout|{model}|{text}|{negative}|{seed}")
    gradient = Image.linear_gradient("L").rotate(rng.uniform(0, 360)).resize((width, height))
    first, second = rng.sample(palette, 2)
    image = ImageOps.colorize(gradient, first, second).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(6, 14)):
        x0, y0 = rng.uniform(-0.2, 1.0) * width, rng.uniform(-0.2, 1.0) * height
        size = rng.uniform(0.08, 0.5) * min(width, height)
        box = (x0, y0, x0 + size * rng.uniform(0.5, 2.0), y0 + size * rng.uniform(0.5, 2.0))
        color = rng.choice(palette)
        shape = rng.randrange(3)
        if shape == 0:
            draw.ellipse(box, fill=color)
        elif shape == 1:
            draw.rectangle(box, fill=color)
        else:
            points = [(rng.uniform(box[0], box[2]), rng.uniform(box[1], box[3])) for _ in range(3)]
            draw.polygon(points, fill=color)
    return image
