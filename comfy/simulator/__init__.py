"""A simulated ComfyUI server on loopback, for tests, benchmarks and the GPU-less demo.

It speaks the protocol recorded from ComfyUI 0.3.64 (tests/comfy/recordings) and was checked
side by side against a real 0.3.64: the same endpoints, websocket frames in the same order, the
same history, queue and error answers. A useful subset of core nodes really runs (with Pillow),
so images differ by seed, prompt and step:

    EmptyImage, LoadImage, ImageInvert, ImageAddNoise (seeded Gaussian noise), ImageBlur,
    ImageQuantize, ImageSharpen, ImageBlend, ImageScale, ImageScaleBy, SaveImage, PreviewImage,
    SolidMask, GrowMask, MaskToImage (the demo's image nodes declared as 0.3.64's /object_info
    gives them; same sizes and statistics, not the same pixels as torch would give); and for
    model workflows CheckpointLoaderSimple, LoraLoader, VAELoader, CLIPTextEncode,
    EmptyLatentImage, KSampler, VAEEncode, VAEDecode, which paint a
    deterministic pattern from the seed and prompt text (img2img blends it over the encoded
    image by `denoise`), and UpscaleModelLoader with ImageUpscaleWithModel (a 2x resize).

Like a fresh ComfyUI it has no model files unless given some (`models=`); `GET /models` and
`GET /models/{folder}` list them.

What it does as ComfyUI does:

- Prompts run one at a time in queue order, each taking `duration` seconds spread over the
  nodes it would run, in ComfyUI's execution order.
- A prompt's frames (`progress_state` and `progress` too) go only to the client id that
  submitted it; `status` goes to everyone. A prompt without a client id sends only its
  progress frames (to everyone) and, if interrupted, `execution_interrupted`.
- Node outputs are cached by input signature (a LoadImage also by the file's hash) for the
  nodes of the last prompt, as ComfyUI's classic cache: an identical prompt lists every node in
  `execution_cached`, re-sends the earlier `executed` output, succeeds at once and its history
  points at the earlier prompt's files; a prompt differing only in SaveImage's prefix re-runs
  only SaveImage.
- An interrupt is a flag seen at the next node's start or a sampler's next step; one raised
  while the last node runs comes too late, and one raised while idle is forgotten.
- A prompt ends with its end frame, then `status`, then `executing` with node null (those two
  after history is written).
- Validation follows execution.validate_prompt, including what raises: a link to a missing node
  or slot is `exception_during_validation` on the output node, or
  `exception_during_inner_validation` on the node whose check raised; widget values are
  converted in place; a combo of a comfy_api node ("COMBO" type) takes any value, as there,
  and its node fails when it runs. A body ComfyUI cannot read (not JSON, or the wrong JSON
  shape where its handler indexes it) answers aiohttp's plain-text 500, on POST /prompt,
  /queue and /history.
- POST /queue sends a `status` frame per deleted prompt (two when the queue empties) and one
  per clear; a websocket's first `feature_flags` message is answered; and when an older socket
  of a reused client id closes, that id is unregistered, so the newer socket gets no frames.

Faults can be injected (see `faults`) and every prompt's server-side start and end times are
kept in `timings` for the idle-gap benchmark. A node type is one declaration, its catalogue
entry over the function that runs it (see `catalogue` and `nodes`); `SimulatedComfy(nodes=...)`
serves more than the core ones.

    async with SimulatedComfy(duration=0.5) as sim:
        ...  # sim.url
"""
from comfy.simulator.catalogue import MODEL_FOLDERS, Input, NodeContext, NodeType, node
from comfy.simulator.nodes import NODE_TYPES
from comfy.simulator.server import SimulatedComfy
from comfy.simulator.state import PromptTiming

__all__ = [
    "MODEL_FOLDERS", "NODE_TYPES", "Input", "NodeContext", "NodeType", "PromptTiming",
    "SimulatedComfy", "node",
]
