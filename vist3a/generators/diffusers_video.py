"""A :class:`~vist3a.protocols.Generator` over a diffusers text-to-video pipeline, shared by the generator plugins.

The base class does the family-agnostic work: loading (hub id or local folder, ``local_files_only``, clear
errors for missing files), placement (device, dtype, CPU offload), the prompt-embedding cache, encode/decode
with the frame rule and opt-in padding, gradient-checkpointed decode, ``sample()`` through the pipeline with
``output_type="latent"``, and the denoising seam (:class:`~vist3a.protocols.DenoisingLoop`). A family subclass overrides the small methods
marked "family" below: its latent spec, its text encoding, how its pipeline is called and one denoising step.

Conventions: frames ``[B,3,T,H,W]`` in [-1,1]; RAW latents ``[B,C,T',h,w]``; model-space latents are
``latent.to_model(raw)`` in the same layout.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Literal, get_args

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from vist3a.errors import CheckpointError, ConfigError, InputError, ShapeError, Vist3aError
from vist3a.generators.loading import cached_snapshot, check_pipeline_folder, is_hub_id
from vist3a.generators.options import DiffusersVideoConfig, FrameCountError
from vist3a.protocols import LatentSpec

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

Embeds = dict[str, Tensor]


@dataclass
class PipelineDenoisingLoop:
    """A :class:`~vist3a.protocols.DenoisingLoop` over a diffusers pipeline's components.

    ``latents`` is the initial noise in model space ``[B,C,T',h,w]``; run ``latents = loop.step(latents, i)``
    for ``i`` in ``range(len(loop.timesteps))`` in order, then ``loop.to_raw(latents)``. Running every step
    reproduces ``sample()`` with the same arguments exactly. ``step`` is differentiable: with
    ``detach_input=True`` (the default) the denoiser sees a detached input, so gradients reach the latents only
    through the scheduler update, and reach the denoiser's parameters through its prediction.
    """

    generator: DiffusersVideoGenerator
    scheduler: Any
    timesteps: Tensor
    latents: Tensor
    cond: Embeds
    uncond: Embeds | None
    guidance: float
    state: dict[str, Any] = field(default_factory=dict)
    """Family extras (rotary embeddings, multistep history, the torch generator)."""
    next_index: int = 0

    def predict(self, latents: Tensor, index: int) -> Tensor:
        """The guided denoiser output for model-space ``latents [B,C,T',h,w]`` at step ``index``."""
        return self.generator._predict(self, latents, self.timesteps[index], index)

    def step(self, latents: Tensor, index: int, *, detach_input: bool = True) -> Tensor:
        """Latents after step ``index`` (steps run in order, each once)."""
        return self.update(self.predict(latents.detach() if detach_input else latents, index), latents, index)

    def update(self, prediction: Tensor, latents: Tensor, index: int) -> Tensor:
        """The scheduler update of step ``index`` from the denoiser's ``prediction`` (differentiable)."""
        if index != self.next_index:
            raise Vist3aError(f"denoising steps run in order: expected step {self.next_index}, got {index}")
        self.next_index += 1
        return self.generator._scheduler_step(self, prediction, self.timesteps[index], latents, index)

    def to_raw(self, latents: Tensor) -> Tensor:
        """Final model-space latents -> RAW latents ``[B,C,T',h,w]`` (drops any padding frames)."""
        return self.generator._loop_to_raw(latents, self)


NoiseLevels = Literal["uniform", "logit_normal"]


def noise_levels(count: int, density: NoiseLevels = "uniform", generator: torch.Generator | None = None) -> Tensor:
    """``count`` training noise levels in [0, 1), before a family's timestep shift: ``uniform``, or ``logit_normal``
    (the sigmoid of a standard normal, SD3's density), which draws the middle levels most often."""
    if density == "logit_normal":
        return torch.sigmoid(torch.randn(count, generator=generator))
    if density == "uniform":
        return torch.rand(count, generator=generator)
    raise ConfigError(f"unknown noise-level density {density!r}; expected one of {list(get_args(NoiseLevels))}")


class DiffusersVideoGenerator:
    """Base class of the diffusers generators; a family overrides the methods marked "family"."""

    name: ClassVar[str]
    pipeline_class: ClassVar[str]
    """The diffusers pipeline class name."""
    text_components: ClassVar[tuple[str, ...]] = ("text_encoder",)
    """Pipeline components that only encode text; ``release_text_encoders`` drops them."""
    default_max_sequence_length: ClassVar[int]
    checkpoint_example: ClassVar[str]
    vae_class: ClassVar[str]
    """The diffusers VAE class name, used to describe the latent geometry on the meta device."""
    default_vae_checkpoints: ClassVar[tuple[str, ...]] = ()
    """Hub ids whose VAE config is the VAE class's defaults (meta builds need no file for them)."""

    def __init__(self, pipe: DiffusionPipeline, config: DiffusersVideoConfig) -> None:
        self.pipe = pipe
        self.config = config
        self.latent: LatentSpec = self.latent_spec(pipe.vae.config)
        self._cache: dict[str, Embeds] = {}
        self._text_released = False
        self._checkpoint_decode = False
        self.set_decode_checkpointing(config.checkpoint_decode)

    # ---- construction -------------------------------------------------------------------------------------

    @classmethod
    def load(cls, config: DiffusersVideoConfig) -> DiffusersVideoGenerator:
        """The factory the plugin registers: tiny, local folder or hub id, placed on device and dtype."""
        if config.tiny and config.checkpoint:
            raise ConfigError(f"{cls.name}: tiny=true builds a random pipeline; leave checkpoint unset")
        if config.cpu_offload and config.device == "cpu":
            raise ConfigError(f"{cls.name}: cpu_offload needs an accelerator device (e.g. device='cuda')")
        if config.device == "meta":
            return MetaGenerator(cls.name, cls.meta_latent(config))  # type: ignore[return-value]
        pipe = cls.tiny_pipeline() if config.tiny else cls._load_pipeline(config)
        return cls(place_pipeline(pipe, config), config)

    @classmethod
    def _load_pipeline(cls, config: DiffusersVideoConfig) -> DiffusionPipeline:
        import diffusers

        if not config.checkpoint:
            raise CheckpointError(
                f"{cls.name}: no checkpoint; pass a diffusers pipeline folder or a hub id such as "
                f"{cls.checkpoint_example} (or tiny=true for a random tiny model)"
            )
        source, offline = config.checkpoint, config.local_files_only or _hub_offline()
        folder = Path(source).expanduser()
        if is_hub_id(source):
            folder = cached_snapshot(source) if offline else None
        if folder is not None:
            check_pipeline_folder(folder, source)
        pipeline_class = getattr(diffusers, cls.pipeline_class)
        try:
            return pipeline_class.from_pretrained(
                str(folder or source),
                torch_dtype=to_dtype(config.dtype),
                use_safetensors=True,
                local_files_only=offline or folder is not None,
            )
        except Exception as exc:
            raise CheckpointError(f"{source}: cannot load a {cls.pipeline_class}: {_first_line(exc)}") from None

    @classmethod
    def meta_latent(cls, config: DiffusersVideoConfig) -> LatentSpec:
        """The latent geometry from configs alone, reading no weights and downloading nothing.

        The VAE config comes from the tiny pipeline, a local or cached folder's ``vae/config.json``, or the
        ``vae_config`` option over the VAE class defaults (which describe ``default_vae_checkpoints``). The
        normalisation is not part of the geometry and is left neutral (shift 0, scale 1).
        """
        import diffusers

        if config.tiny:
            values = dict(cls.tiny_pipeline().vae.config)
        else:
            values = {**_vae_config_file(config.checkpoint), **(config.vae_config or {})}
            if not values and config.checkpoint not in cls.default_vae_checkpoints:
                raise CheckpointError(
                    f"{cls.name}: describing {config.checkpoint or 'an unnamed checkpoint'} on the meta device needs "
                    "its VAE config: download it, pass a local folder, or give the vae_config option"
                )
        with torch.device("meta"):
            vae = getattr(diffusers, cls.vae_class).from_config(values)
        latent = cls.latent_spec(vae.config)
        return replace(latent, shift=0.0, scale=1.0)

    # ---- family hooks -------------------------------------------------------------------------------------

    @staticmethod
    def tiny_pipeline(seed: int = 0) -> DiffusionPipeline:
        """family: the real pipeline class at a tiny size, with an in-process tokenizer."""
        raise NotImplementedError

    @staticmethod
    def latent_spec(vae_config: Any) -> LatentSpec:
        """family: the LatentSpec described by a VAE config."""
        raise NotImplementedError

    def _encode_text(self, prompts: list[str]) -> Embeds:
        """family: per-prompt tensors (first dim = prompt) from the pipeline's own prompt encoder."""
        raise NotImplementedError

    def _uses_negative(self, guidance: float) -> bool:
        """family: whether the negative prompt is encoded and used."""
        return guidance > 1.0

    def _pipeline_kwargs(self, cond: Embeds, uncond: Embeds | None, guidance: float) -> dict[str, Any]:
        """family: the pipeline ``__call__`` arguments carrying the embeddings and guidance."""
        raise NotImplementedError

    def _output_to_model(self, frames: Tensor, num_frames: int) -> Tensor:
        """family: the pipeline's ``output_type="latent"`` output -> model-space ``[B,C,T',h,w]``."""
        return frames

    def _prepare_loop(self, loop: PipelineDenoisingLoop, batch: int, num_frames: int, height: int, width: int, steps: int) -> None:
        """family: set the loop's timesteps and initial latents exactly as the pipeline does."""
        raise NotImplementedError

    def _predict(self, loop: PipelineDenoisingLoop, latents: Tensor, t: Tensor, index: int) -> Tensor:
        """family: the guided denoiser output (model space, same layout as ``latents``)."""
        raise NotImplementedError

    def _scheduler_step(self, loop: PipelineDenoisingLoop, output: Tensor, t: Tensor, latents: Tensor, index: int) -> Tensor:
        """family: one scheduler update."""
        return loop.scheduler.step(output, t, latents, return_dict=False)[0]

    def _loop_to_raw(self, latents: Tensor, loop: PipelineDenoisingLoop) -> Tensor:
        return self.latent.to_raw(latents)

    def _size_multiple(self) -> int:
        """family: height and width must be multiples of this."""
        return 16

    # ---- Generator protocol -------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Where the denoiser runs (the pipeline's execution device, also under CPU offload)."""
        return self.pipe._execution_device

    def encode(self, frames: Tensor, *, sample: bool = False, generator: torch.Generator | None = None,
               pad: bool | None = None) -> Tensor:  # fmt: skip
        """frames ``[B,3,T,H,W]`` in [-1,1] -> RAW latents ``[B,C,T',h,w]`` (posterior mode, or a sample).

        ``T`` must follow the frame rule; with ``pad`` (default: the ``pad_frames`` option) the last frame is
        repeated up to the next valid count. Runs on :attr:`device` (also under CPU offload) in the VAE's dtype.
        """
        if frames.ndim != 5 or frames.shape[1] != 3:
            raise ShapeError(f"{self.name}.encode: expected frames [B,3,T,H,W], got {tuple(frames.shape)}")
        frames = self._fit_frames(frames, self.config.pad_frames if pad is None else pad)
        self._check_size(*frames.shape[-2:])
        vae = self.pipe.vae
        dist = vae.encode(frames.to(device=self.device, dtype=vae.dtype)).latent_dist
        return dist.sample(generator) if sample else dist.mode()

    def decode(self, latents: Tensor) -> Tensor:
        """RAW latents ``[B,C,T',h,w]`` -> frames ``[B,3,T,H,W]``, differentiable.

        With decode checkpointing on (:meth:`set_decode_checkpointing`), gradients are the same for less memory.
        """
        if latents.ndim != 5 or latents.shape[1] != self.latent.channels:
            raise ShapeError(f"{self.name}.decode: expected RAW latents [B,{self.latent.channels},T',h,w], got {tuple(latents.shape)}")
        self._check_latent_frames(latents.shape[2])
        vae = self.pipe.vae
        z = latents.to(device=self.device, dtype=vae.dtype)
        if self._checkpoint_decode and torch.is_grad_enabled() and not self._native_checkpointing():
            return self._decode_checkpointed(z)
        return vae.decode(z).sample

    def set_decode_checkpointing(self, enabled: bool) -> None:
        """Turn gradient checkpointing of :meth:`decode` on or off (not between a decode and its backward).

        Uses diffusers' own checkpointing when the VAE supports it, else :meth:`_decode_checkpointed`.
        """
        self._checkpoint_decode = enabled
        if self._native_checkpointing():
            vae = self.pipe.vae
            vae.enable_gradient_checkpointing() if enabled else vae.disable_gradient_checkpointing()

    def _native_checkpointing(self) -> bool:
        return bool(getattr(self.pipe.vae, "_supports_gradient_checkpointing", False))

    def _decode_checkpointed(self, z: Tensor) -> Tensor:
        """family: checkpointed decode for a VAE without diffusers checkpointing; by default the whole call."""
        return checkpoint(lambda x: self.pipe.vae.decode(x).sample, z, use_reentrant=False)

    def sample(self, prompts: Sequence[str], *, num_frames: int, height: int, width: int, steps: int,
               guidance: float, negative_prompt: str | None = "", generator: torch.Generator | None = None,
               shift: float | None = None) -> Tensor:  # fmt: skip
        """Text -> RAW latents ``[B,C,T',h,w]``: the diffusers pipeline with ``output_type="latent"``.

        ``guidance`` is the CFG scale, ``shift`` the scheduler's timestep shift (None keeps the pipeline's),
        ``generator`` seeds the initial noise. Equal to running :meth:`denoising` step by step.
        """
        prompts = self._check_request(prompts, num_frames, height, width, steps)
        cond, uncond = self.prompt_embeddings(prompts, negative_prompt, guidance)
        with self._scheduler_override(shift):
            out = self.pipe(
                **self._pipeline_kwargs(cond, uncond, guidance), num_frames=num_frames, height=height, width=width,
                num_inference_steps=steps, generator=generator, output_type="latent",
            ).frames  # fmt: skip
        return self.latent.to_raw(self._output_to_model(out, num_frames))

    def denoising(self, prompts: Sequence[str], *, num_frames: int, height: int, width: int, steps: int,
                  guidance: float, negative_prompt: str | None = "", generator: torch.Generator | None = None,
                  shift: float | None = None) -> PipelineDenoisingLoop:  # fmt: skip
        """The :class:`PipelineDenoisingLoop` of ``sample()`` with the same arguments, for the caller to drive."""
        prompts = self._check_request(prompts, num_frames, height, width, steps)
        cond, uncond = self.prompt_embeddings(prompts, negative_prompt, guidance)
        scheduler = self._scheduler(shift)
        loop = PipelineDenoisingLoop(self, scheduler, torch.empty(0), torch.empty(0), cond, uncond, guidance, {"generator": generator})
        self._prepare_loop(loop, len(prompts), num_frames, height, width, steps)
        return loop

    def training_loss(self, latents: Tensor, prompts: Sequence[str], *, generator: torch.Generator | None = None,
                      levels: NoiseLevels = "uniform") -> Tensor:  # fmt: skip
        """The family's denoising loss on clean RAW latents ``[B,C,T',h,w]`` captioned by ``prompts``.

        A noise level per clip (drawn by :func:`noise_levels` with density ``levels``) and the noise come from
        ``generator``; the denoiser predicts the family's training target (the flow-matching velocity ``noise - x0``
        by default) without guidance, and the loss is the mean squared error, differentiable in the denoiser's
        parameters.
        """
        prompts = list(prompts)
        if latents.ndim != 5 or latents.shape[1] != self.latent.channels or len(prompts) != latents.shape[0]:
            raise ShapeError(f"{self.name}.training_loss: expected RAW latents [B,{self.latent.channels},T',h,w] "
                             f"and B prompts, got {tuple(latents.shape)} and {len(prompts)} prompts")  # fmt: skip
        frames, (h, w) = self.latent.pixel_frames(latents.shape[2]), latents.shape[-2:]
        factor = self.latent.spatial_factor
        loop = self.denoising(prompts, num_frames=frames, height=h * factor, width=w * factor, steps=1, guidance=1.0)
        clean = self.latent.to_model(latents.float())
        noise = torch.randn(clean.shape, generator=generator).to(clean.device)
        level = noise_levels(len(prompts), levels, generator)
        noisy, t, target = self._training_sample(loop.scheduler, clean, noise, level.to(clean.device))
        prediction = self._predict(loop, noisy, t, 0)
        return torch.nn.functional.mse_loss(prediction.float(), target.float())

    def _training_sample(self, scheduler: Any, clean: Tensor, noise: Tensor, level: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """family: ``(noisy latents, timesteps [B], target)`` at noise levels ``level [B]`` in [0,1), one per clip;
        by default flow matching with the scheduler's timestep shift: ``sigma = s*u / (1 + (s-1)*u)``,
        ``x = (1-sigma) x0 + sigma noise``."""
        config = scheduler.config
        shift = float(config.get("flow_shift") or config.get("shift") or 1.0)
        sigma = shift * level / (1 + (shift - 1) * level)
        per_clip = sigma.reshape(-1, *[1] * (clean.ndim - 1))
        noisy = (1 - per_clip) * clean + per_clip * noise
        return noisy, sigma * config.num_train_timesteps, noise - clean

    def trainable(self) -> nn.Module:
        """The denoiser (transformer) that LoRA attaches to."""
        return self.pipe.transformer

    def load_lora(self, source: str) -> None:
        """Attach a PEFT adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``) to the denoiser,
        unmerged: a local folder, a hub id or ``repo:subfolder`` (e.g. ``HJGO/VIST3A:vist3a_1.3b_lora_ema``)."""
        from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
        from safetensors.torch import load_file

        folder = self._lora_folder(source)
        try:
            config = LoraConfig.from_pretrained(str(folder))
            state = load_file(str(folder / "adapter_model.safetensors"))
        except Exception as exc:
            raise CheckpointError(f"{source}: not a PEFT LoRA adapter folder: {_first_line(exc)}") from None
        state = {k.removeprefix("base_model.model."): v for k, v in state.items()}
        denoiser = self.trainable()
        try:
            inject_adapter_in_model(config, denoiser)
        except ValueError as exc:
            raise CheckpointError(f"{source}: the adapter does not fit {self.name}'s denoiser: {_first_line(exc)}") from None
        unexpected = set_peft_model_state_dict(denoiser, state).unexpected_keys
        if unexpected:
            raise CheckpointError(f"{source}: {len(unexpected)} adapter weights match no layer, e.g. {unexpected[0]}")

    def _lora_folder(self, source: str) -> Path:
        """The local folder of ``source`` (folder, hub id or ``repo:subfolder``; hub files from the cache when offline)."""
        repo, _, sub = source.partition(":")
        if Path(source).expanduser().is_dir() or not is_hub_id(repo):
            folder = Path(source).expanduser()
            if not folder.is_dir():
                raise CheckpointError(f"{source}: no such LoRA folder")
            return folder
        if self.config.local_files_only or _hub_offline():
            return cached_snapshot(repo) / sub
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(repo, allow_patterns=[f"{sub}/*"] if sub else None)) / sub
        except Exception as exc:
            raise CheckpointError(f"{source}: cannot download the LoRA adapter: {_first_line(exc)}") from None

    # ---- prompts ------------------------------------------------------------------------------------------

    @property
    def max_sequence_length(self) -> int:
        return self.config.max_sequence_length or self.default_max_sequence_length

    def prompt_embeddings(self, prompts: Sequence[str], negative_prompt: str | None = "",
                          guidance: float = 1.0) -> tuple[Embeds, Embeds | None]:  # fmt: skip
        """Cached text embeddings of ``prompts`` and, when guidance uses it, of the negative prompt per row."""
        cond = self._embed(list(prompts))
        if not self._uses_negative(guidance):
            return cond, None
        return cond, self._embed([negative_prompt or ""] * len(prompts))

    def release_text_encoders(self) -> None:
        """Free the text encoders; prompts already embedded keep working from the cache."""
        for name in self.text_components:
            if getattr(self.pipe, name, None) is not None:
                setattr(self.pipe, name, None)
        self._text_released = True
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _embed(self, prompts: list[str]) -> Embeds:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if missing and self._text_released:
            raise Vist3aError(f"{self.name}: the text encoders were released and {missing[0]!r} is not in the prompt cache")
        if missing:
            with torch.no_grad():
                rows = self._encode_text(missing)
            for i, prompt in enumerate(missing):
                self._cache[prompt] = {k: v[i] for k, v in rows.items()}
        return {k: torch.stack([self._cache[p][k] for p in prompts]) for k in self._cache[prompts[0]]}

    # ---- checks and helpers -------------------------------------------------------------------------------

    def valid_frames(self, frames: int) -> int:
        """The smallest frame count >= ``frames`` that this generator's VAE takes."""
        return self.latent.valid_frames(max(frames, 1))

    def _check_frames(self, frames: int) -> None:
        if not self.latent.is_valid_frames(frames):
            step = self.latent.frame_step
            low = step * ((max(frames, 1) - 1) // step) + 1
            raise FrameCountError(
                f"{self.name}: {frames} frames do not follow the frame rule {self.latent.frame_rule}; "
                f"use {low} or {low + step} frames, or pad_frames=true to repeat the last frame"
            )

    def _check_latent_frames(self, latent_frames: int) -> None:
        if not self.latent.is_valid_latent_frames(latent_frames):
            raise FrameCountError(
                f"{self.name}: {latent_frames} latent frames; this VAE decodes 1+{self.latent.latent_frame_step}k latent frames"
            )

    def _fit_frames(self, frames: Tensor, pad: bool) -> Tensor:
        count = frames.shape[2]
        target = self.valid_frames(count)
        if target == count or not pad:
            self._check_frames(count)
            return frames
        tail = frames[:, :, -1:].expand(-1, -1, target - count, -1, -1)
        return torch.cat([frames, tail], dim=2)

    def _check_size(self, height: int, width: int) -> None:
        multiple = self._size_multiple()
        if height % multiple or width % multiple:
            raise InputError(f"{self.name}: height and width must be multiples of {multiple}, got {height}x{width}")

    def _check_request(self, prompts: Sequence[str], num_frames: int, height: int, width: int, steps: int) -> list[str]:
        if isinstance(prompts, str) or not prompts:
            raise InputError(f"{self.name}: prompts must be a non-empty list of strings")
        if steps < 1:
            raise InputError(f"{self.name}: steps must be positive, got {steps}")
        self._check_frames(num_frames)
        self._check_size(height, width)
        return list(prompts)

    def _scheduler(self, shift: float | None) -> Any:
        """A fresh copy of the pipeline's scheduler, with ``shift`` applied."""
        scheduler = self.pipe.scheduler
        return type(scheduler).from_config(scheduler.config, **self._shift_kwargs(scheduler, shift))

    def _shift_kwargs(self, scheduler: Any, shift: float | None) -> dict[str, float]:
        if shift is None:
            return {}
        for key in ("shift", "flow_shift"):
            if key in scheduler.config:
                return {key: shift}
        raise InputError(f"{self.name}: the scheduler {type(scheduler).__name__} has no timestep shift")

    @contextmanager
    def _scheduler_override(self, shift: float | None) -> Iterator[None]:
        original = self.pipe.scheduler
        if shift is not None:
            self.pipe.scheduler = self._scheduler(shift)
        try:
            yield
        finally:
            self.pipe.scheduler = original

    @property
    def _transformer_dtype(self) -> torch.dtype:
        return self.pipe.transformer.dtype


class MetaGenerator:
    """A generator described on the meta device: its name and latent geometry, with nothing loaded to run."""

    def __init__(self, name: str, latent: LatentSpec) -> None:
        self.name, self.latent = name, latent

    def _unavailable(self, *args: Any, **kwargs: Any) -> Any:
        raise Vist3aError(f"{self.name} was built on the meta device to describe it; load it on a real device to run it")

    encode = decode = sample = trainable = _unavailable


def _vae_config_file(checkpoint: str | None) -> dict[str, Any]:
    """``vae/config.json`` of a local or cached pipeline folder; empty when there is none."""
    if not checkpoint:
        return {}
    folder = Path(checkpoint).expanduser()
    if is_hub_id(checkpoint):
        try:
            folder = cached_snapshot(checkpoint)
        except CheckpointError:
            return {}
    path = folder / "vae" / "config.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable VAE config: {exc}") from None


def place_pipeline(pipe: DiffusionPipeline, config: DiffusersVideoConfig) -> DiffusionPipeline:
    """Cast to ``dtype`` (the VAE to ``vae_dtype``) and move to ``device`` or enable CPU offload."""
    dtype, vae_dtype = to_dtype(config.dtype), to_dtype(config.vae_dtype or config.dtype)
    for name, module in pipe.components.items():
        wanted = vae_dtype if name == "vae" else dtype
        if isinstance(module, nn.Module) and next(module.parameters()).dtype != wanted:
            cast(module, wanted)
    if config.cpu_offload:
        pipe.enable_model_cpu_offload(device=config.device)
    else:
        pipe.to(config.device)
    return pipe


def cast(module: nn.Module, dtype: torch.dtype) -> None:
    """Cast ``module`` to ``dtype``, keeping in float32 the submodules a diffusers model lists in
    ``_keep_in_fp32_modules``, as ``from_pretrained(torch_dtype=...)`` does."""
    nn.Module.to(module, dtype=dtype)  # not ModelMixin.to, which would cast those too (and warn)
    keep = set(getattr(module, "_keep_in_fp32_modules", None) or ()) if dtype != torch.float32 else set()
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if keep.intersection(name.split(".")) and tensor.is_floating_point():
            tensor.data = tensor.data.float()


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def to_dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
