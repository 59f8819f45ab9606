"""The core nodes the simulator runs: each one's catalogue entry over the function that runs it.

Model workflows do not run a model: the loaders pass names along, and VAEDecode paints a
deterministic pattern from the seed and prompt text (img2img blends it over the encoded image
by `denoise`). Node functions run in a worker thread.
"""
from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from comfy.simulator.catalogue import Input, NodeContext, NodeType, Result, integer, node, number
from comfy.simulator.imaging import RESAMPLE, add_noise, blend, pattern, quantize, scale, sharpen

UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
SAMPLERS = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
    "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
    "dpmpp_sde", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde", "ddpm", "lcm", "ipndm", "deis",
    "res_multistep", "gradient_estimation", "er_sde", "sa_solver", "ddim", "uni_pc", "uni_pc_bh2",
)
BLEND_MODES = ("normal", "multiply", "screen", "overlay", "soft_light", "difference")
SCHEDULERS = (
    "simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
    "linear_quadratic", "kl_optimal",
)
SAVE_PREFIX_TOOLTIP = (
    "The prefix for the file to save. This may include formatting information such as "
    "%date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes.")
_IMAGE_HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
_POST_PROCESSING = "comfy_extras.nodes_post_processing"
_IMAGES = "comfy_extras.nodes_images"
DITHERS = ("none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16")
_UPSCALE_MODEL = "comfy_extras.nodes_upscale_model"


# Values flowing between simulated nodes.


@dataclass(frozen=True)
class Model:
    name: str


@dataclass(frozen=True)
class Cond:
    text: str


@dataclass(frozen=True)
class Latent:
    width: int
    height: int
    batch: int
    seed: int | None = None
    positive: str = ""
    negative: str = ""
    model: str = ""
    denoise: float = 1.0
    base: tuple[Image.Image, ...] = ()


NODE_TYPES: dict[str, NodeType] = {}


def _core(declared: NodeType) -> NodeType:
    NODE_TYPES[declared.name] = declared
    return declared


@_core
@node("EmptyImage", {
    "width": integer(512, 1, 16384, step=1), "height": integer(512, 1, 16384, step=1),
    "batch_size": integer(1, 1, 4096),
    "color": integer(0, 0, 0xFFFFFF, step=1, display="color"),
}, ("IMAGE",), "image", "EmptyImage")
def _empty_image(context: NodeContext, inputs: dict[str, Any]) -> Result:
    color = int(inputs["color"])
    rgb = ((color >> 16) & 255, (color >> 8) & 255, color & 255)
    size = (int(inputs["width"]), int(inputs["height"]))
    return ([Image.new("RGB", size, rgb) for _ in range(int(inputs["batch_size"]))],), None


def _image_exists(context: NodeContext, value: Any) -> str | None:
    return None if context.input_path(str(value)) is not None else f"Invalid image file: {value}"


def _image_hash(context: NodeContext, inputs: Mapping[str, Any]) -> Any:
    """The file's hash, so a replaced upload runs again."""
    path = context.input_path(str(inputs.get("image")))
    return hashlib.sha256(path.read_bytes()).hexdigest() if path else object()


@_core
@node("LoadImage", {
    "image": Input("COMBO", {"image_upload": True}, "input_files", check=_image_exists),
}, ("IMAGE", "MASK"), "image", "Load Image", is_changed=_image_hash)
def _load_image(context: NodeContext, inputs: dict[str, Any]) -> Result:
    path = context.input_path(str(inputs["image"]))
    if path is None:
        raise FileNotFoundError(f"Invalid image file: {inputs['image']}")
    with Image.open(path) as opened:
        loaded = ImageOps.exif_transpose(opened)
        mask = (ImageOps.invert(loaded.getchannel("A")) if "A" in loaded.getbands()
                else Image.new("L", loaded.size, 0))
        return ([loaded.convert("RGB")], [mask]), None


@_core
@node("ImageInvert", {"image": Input("IMAGE")}, ("IMAGE",), "image", "Invert Image")
def _image_invert(context: NodeContext, inputs: dict[str, Any]) -> Result:
    return ([ImageOps.invert(img) for img in inputs["image"]],), None


@_core
@node("ImageBlur", {
    "image": Input("IMAGE", {}), "blur_radius": integer(1, 1, 31, step=1),
    "sigma": number(1.0, 0.1, 10.0, step=0.1),
}, ("IMAGE",), "image/postprocessing", None, python_module=_POST_PROCESSING, v3=True)
def _image_blur(context: NodeContext, inputs: dict[str, Any]) -> Result:
    radius = int(inputs["blur_radius"])
    if radius == 0:
        return (list(inputs["image"]),), None
    gaussian = ImageFilter.GaussianBlur(radius=min(float(inputs["sigma"]), radius))
    return ([img.filter(gaussian) for img in inputs["image"]],), None


@_core
@node("ImageAddNoise", {
    "image": Input("IMAGE"),
    "seed": integer(0, 0, 0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                    tooltip="The random seed used for creating the noise."),
    "strength": number(0.5, 0.0, 1.0, step=0.01),
}, ("IMAGE",), "image", "ImageAddNoise", python_module=_IMAGES)
def _image_add_noise(context: NodeContext, inputs: dict[str, Any]) -> Result:
    """Gaussian noise per pixel and channel from the seed, scaled by strength, clipped."""
    seed, strength = int(inputs["seed"]), float(inputs["strength"])
    return ([add_noise(img, seed, strength, index) for index, img in
             enumerate(inputs["image"])],), None


@_core
@node("ImageQuantize", {
    "image": Input("IMAGE", {}), "colors": integer(256, 1, 256, step=1),
    "dither": Input("COMBO", None, DITHERS),
}, ("IMAGE",), "image/postprocessing", None, python_module=_POST_PROCESSING, v3=True)
def _image_quantize(context: NodeContext, inputs: dict[str, Any]) -> Result:
    colors, dither = int(inputs["colors"]), str(inputs["dither"])
    return ([quantize(img, colors, dither) for img in inputs["image"]],), None


@_core
@node("ImageSharpen", {
    "image": Input("IMAGE", {}), "sharpen_radius": integer(1, 1, 31, step=1),
    "sigma": number(1.0, 0.1, 10.0, step=0.01), "alpha": number(1.0, 0.0, 5.0, step=0.01),
}, ("IMAGE",), "image/postprocessing", None, python_module=_POST_PROCESSING, v3=True)
def _image_sharpen(context: NodeContext, inputs: dict[str, Any]) -> Result:
    radius, sigma = int(inputs["sharpen_radius"]), float(inputs["sigma"])
    alpha = float(inputs["alpha"])
    return ([sharpen(img, radius, sigma, alpha) for img in inputs["image"]],), None


@_core
@node("ImageBlend", {
    "image1": Input("IMAGE", {}), "image2": Input("IMAGE", {}),
    "blend_factor": number(0.5, 0.0, 1.0, step=0.01),
    "blend_mode": Input("COMBO", None, BLEND_MODES),
}, ("IMAGE",), "image/postprocessing", None, python_module=_POST_PROCESSING, v3=True)
def _image_blend(context: NodeContext, inputs: dict[str, Any]) -> Result:
    factor, mode = float(inputs["blend_factor"]), str(inputs["blend_mode"])
    return ([blend(a, b, factor, mode) for a, b in
             zip(inputs["image1"], itertools.cycle(inputs["image2"]))],), None


@_core
@node("ImageScale", {
    "image": Input("IMAGE"), "upscale_method": Input("COMBO", None, UPSCALE_METHODS),
    "width": integer(512, 0, 16384, step=1), "height": integer(512, 0, 16384, step=1),
    "crop": Input("COMBO", None, ("disabled", "center")),
}, ("IMAGE",), "image/upscaling", "Upscale Image")
def _image_scale(context: NodeContext, inputs: dict[str, Any]) -> Result:
    return ([scale(img, inputs) for img in inputs["image"]],), None


@_core
@node("ImageScaleBy", {
    "image": Input("IMAGE"), "upscale_method": Input("COMBO", None, UPSCALE_METHODS),
    "scale_by": number(1.0, 0.01, 8.0, step=0.01),
}, ("IMAGE",), "image/upscaling", "Upscale Image By")
def _image_scale_by(context: NodeContext, inputs: dict[str, Any]) -> Result:
    factor = float(inputs["scale_by"])
    method = RESAMPLE.get(str(inputs["upscale_method"]), Image.Resampling.BICUBIC)
    return ([img.resize((round(img.width * factor), round(img.height * factor)), method)
             for img in inputs["image"]],), None


@_core
@node("SaveImage", {
    "images": Input("IMAGE", {"tooltip": "The images to save."}),
    "filename_prefix": Input("STRING", {"default": "ComfyUI", "tooltip": SAVE_PREFIX_TOOLTIP}),
}, (), "image", "Save Image", output_node=True, hidden=_IMAGE_HIDDEN,
    description="Saves the input images to your ComfyUI output directory.")
def _save_image(context: NodeContext, inputs: dict[str, Any]) -> Result:
    return (), {"images": context.save(inputs["images"], str(inputs["filename_prefix"]),
                                       "output")}


@_core
@node("PreviewImage", {"images": Input("IMAGE")}, (), "image", "Preview Image",
      output_node=True, hidden=_IMAGE_HIDDEN,
      description="Saves the input images to your ComfyUI output directory.")
def _preview_image(context: NodeContext, inputs: dict[str, Any]) -> Result:
    prefix = "ComfyUI_temp_" + "".join(context.rng.choice("abcdefghijklmnopqrstupvxyz")
                                       for _ in range(5))
    return (), {"images": context.save(inputs["images"], prefix, "temp")}


@_core
@node("CheckpointLoaderSimple", {
    "ckpt_name": Input("COMBO", {"tooltip": "The name of the checkpoint (model) to load."},
                       "checkpoints"),
}, ("MODEL", "CLIP", "VAE"), "loaders", "Load Checkpoint",
    description="Loads a diffusion model checkpoint.")
def _checkpoint_loader(context: NodeContext, inputs: dict[str, Any]) -> Result:
    model = Model(str(inputs["ckpt_name"]))
    return (model, model, model), None


@_core
@node("CLIPTextEncode", {
    "text": Input("STRING", {"multiline": True, "dynamicPrompts": True}),
    "clip": Input("CLIP"),
}, ("CONDITIONING",), "conditioning", "CLIP Text Encode (Prompt)")
def _clip_text_encode(context: NodeContext, inputs: dict[str, Any]) -> Result:
    return (Cond(str(inputs["text"])),), None


@_core
@node("EmptyLatentImage", {
    "width": integer(512, 16, 16384, step=8), "height": integer(512, 16, 16384, step=8),
    "batch_size": integer(1, 1, 4096),
}, ("LATENT",), "latent", "Empty Latent Image")
def _empty_latent(context: NodeContext, inputs: dict[str, Any]) -> Result:
    return (Latent(int(inputs["width"]), int(inputs["height"]), int(inputs["batch_size"])),), None


@_core
@node("KSampler", {
    "model": Input("MODEL"),
    "seed": integer(0, 0, 0xFFFFFFFFFFFFFFFF, control_after_generate=True),
    "steps": integer(20, 1, 10000), "cfg": number(8.0, 0.0, 100.0, step=0.1, round=0.01),
    "sampler_name": Input("COMBO", {}, SAMPLERS), "scheduler": Input("COMBO", {}, SCHEDULERS),
    "positive": Input("CONDITIONING"), "negative": Input("CONDITIONING"),
    "latent_image": Input("LATENT"), "denoise": number(1.0, 0.0, 1.0, step=0.01),
}, ("LATENT",), "sampling", "KSampler", steps_input="steps")
def _ksampler(context: NodeContext, inputs: dict[str, Any]) -> Result:
    latent: Latent = inputs["latent_image"]
    return (Latent(latent.width, latent.height, latent.batch, seed=int(inputs["seed"]),
                   positive=inputs["positive"].text, negative=inputs["negative"].text,
                   model=inputs["model"].name, denoise=float(inputs["denoise"]),
                   base=latent.base),), None


@_core
@node("VAEDecode", {"samples": Input("LATENT"), "vae": Input("VAE")}, ("IMAGE",),
      "latent", "VAE Decode")
def _vae_decode(context: NodeContext, inputs: dict[str, Any]) -> Result:
    """Paint the 'generated' images: a pattern from the prompt (palette) and seed (layout)."""
    latent: Latent = inputs["samples"]
    images = []
    for index in range(latent.batch):
        seed = (latent.seed or 0) + index
        painted = pattern(seed, latent.positive, latent.negative, latent.model,
                          latent.width, latent.height)
        if latent.base:
            base = latent.base[index % len(latent.base)].convert("RGB")
            base = base.resize((latent.width, latent.height))
            painted = Image.blend(base, painted, max(0.0, min(1.0, latent.denoise)))
        images.append(painted)
    return (images,), None


@_core
@node("VAEEncode", {"pixels": Input("IMAGE"), "vae": Input("VAE")}, ("LATENT",),
      "latent", "VAE Encode")
def _vae_encode(context: NodeContext, inputs: dict[str, Any]) -> Result:
    images = tuple(inputs["pixels"])
    return (Latent(images[0].width, images[0].height, len(images), base=images),), None


@_core
@node("LoraLoader", {
    "model": Input("MODEL"), "clip": Input("CLIP"),
    "lora_name": Input("COMBO", {"tooltip": "The name of the LoRA."}, "loras"),
    "strength_model": number(1.0, -100.0, 100.0, step=0.01),
    "strength_clip": number(1.0, -100.0, 100.0, step=0.01),
}, ("MODEL", "CLIP"), "loaders", "Load LoRA")
def _lora_loader(context: NodeContext, inputs: dict[str, Any]) -> Result:
    return (inputs["model"], inputs["clip"]), None


@_core
@node("VAELoader", {"vae_name": Input("COMBO", None, "vae")}, ("VAE",), "loaders", "Load VAE")
def _vae_loader(context: NodeContext, inputs: dict[str, Any]) -> Result:
    return (Model(str(inputs["vae_name"])),), None


@_core
@node("UpscaleModelLoader", {"model_name": Input("COMBO", {}, "upscale_models")},
      ("UPSCALE_MODEL",), "loaders", "Load Upscale Model", python_module=_UPSCALE_MODEL, v3=True)
def _upscale_model_loader(context: NodeContext, inputs: dict[str, Any]) -> Result:
    return (Model(str(inputs["model_name"])),), None


@_core
@node("ImageUpscaleWithModel", {
    "upscale_model": Input("UPSCALE_MODEL", {}), "image": Input("IMAGE", {}),
}, ("IMAGE",), "image/upscaling", "Upscale Image (using Model)",
    python_module=_UPSCALE_MODEL, v3=True)
def _image_upscale_with_model(context: NodeContext, inputs: dict[str, Any]) -> Result:
    """A 2x resize, whatever the model."""
    return ([img.resize((img.width * 2, img.height * 2), Image.Resampling.LANCZOS)
             for img in inputs["image"]],), None


# Masks are single-channel images ("L"), as LoadImage's second output is.
_MASK = "comfy_extras.nodes_mask"


@_core
@node("SolidMask", {
    "value": number(1.0, 0.0, 1.0, step=0.01),
    "width": integer(512, 1, 16384, step=1), "height": integer(512, 1, 16384, step=1),
}, ("MASK",), "mask", "SolidMask", python_module=_MASK)
def _solid_mask(context: NodeContext, inputs: dict[str, Any]) -> Result:
    size = (int(inputs["width"]), int(inputs["height"]))
    return ([Image.new("L", size, round(float(inputs["value"]) * 255))],), None


@_core
@node("GrowMask", {
    "mask": Input("MASK"), "expand": integer(0, -16384, 16384, step=1),
    "tapered_corners": Input("BOOLEAN", {"default": True}),
}, ("MASK",), "mask", "GrowMask", python_module=_MASK)
def _grow_mask(context: NodeContext, inputs: dict[str, Any]) -> Result:
    """Grey dilation (erosion for a negative `expand`) by a 3×3 cross, or square without
    tapered corners, once per pixel of `expand`."""
    expand, corners = int(inputs["expand"]), not inputs["tapered_corners"]
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if corners or 0 in (dy, dx)]
    grown = []
    for mask in inputs["mask"]:
        pixels = np.asarray(mask.convert("L"))
        for _ in range(abs(expand)):
            padded = np.pad(pixels, 1, mode="edge")
            h, w = pixels.shape
            stack = [padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in shifts]
            pixels = np.max(stack, axis=0) if expand > 0 else np.min(stack, axis=0)
        grown.append(Image.fromarray(pixels.astype(np.uint8), "L"))
    return (grown,), None


@_core
@node("MaskToImage", {"mask": Input("MASK")}, ("IMAGE",), "mask", "Convert Mask to Image",
      python_module=_MASK)
def _mask_to_image(context: NodeContext, inputs: dict[str, Any]) -> Result:
    return ([mask.convert("RGB") for mask in inputs["mask"]],), None
