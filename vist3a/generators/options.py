"""Options of the diffusers generator plugins (importing this module does not import torch or diffusers)."""

from __future__ import annotations

from typing import Any

from pydantic import PositiveInt

from vist3a.config import ComponentConfig, DType
from vist3a.errors import InputError


class FrameCountError(InputError):
    """A frame count the video VAE cannot take."""


class DiffusersVideoConfig(ComponentConfig):
    """Options shared by the diffusers generator plugins (``checkpoint``: hub id or local pipeline folder)."""

    local_files_only: bool = False
    """Never touch the network: a hub id must already be in the Hugging Face cache."""
    cpu_offload: bool = False
    """Keep models on the CPU and move each to ``device`` while it runs (needs an accelerator device)."""
    vae_dtype: DType | None = None
    """dtype of the VAE; None uses ``dtype``."""
    max_sequence_length: PositiveInt | None = None
    """Text tokens per prompt; None uses the family's default."""
    pad_frames: bool = False
    """encode() pads a frame count the VAE cannot take by repeating the last frame, instead of failing."""
    checkpoint_decode: bool = False
    """decode() uses gradient checkpointing when gradients are enabled."""
    vae_config: dict[str, Any] | None = None
    """VAE config values (over the VAE class defaults) that describe the latents on the meta device when the
    checkpoint's own config is not available locally."""
    tiny: bool = False
    """Build the family's random tiny pipeline (tests, examples) instead of loading ``checkpoint``."""
