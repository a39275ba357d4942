"""Prompts: files of prompts and templates that wrap them (camera motion, the paper's orbit)."""

from __future__ import annotations

from pathlib import Path

from vist3a.errors import InputError

ORBIT_TEMPLATE = (
    "The camera rotates around the scene, maintaining constant distance: {prompt}. "
    "The orbiting trajectory captures 3D structure and consistency."
)
TEMPLATES = {"orbit": ORBIT_TEMPLATE, "none": "{prompt}"}
"""Named prompt templates; the paper's orbit template is the default for 3D."""

CAMERA_TEMPLATES: tuple[str, ...] = (
    ORBIT_TEMPLATE,
    "{prompt}",
    "The camera slowly pans from left to right across {prompt}.",
    "The camera slowly pans from right to left across {prompt}.",
    "The camera dollies forward towards {prompt}, revealing its structure.",
    "The camera pulls back from {prompt}, revealing the whole scene.",
    "An aerial drone shot circling high above {prompt}.",
    "The camera cranes up over {prompt}.",
    "The camera moves along an arc around {prompt}, keeping it in view.",
    "A smooth tracking shot moving sideways past {prompt}.",
)
"""Camera-motion wrappers: the paper's orbit template, the bare prompt and common camera moves."""


def load_prompts(path: str | Path) -> list[str]:
    """One prompt per line; blank lines and lines starting with ``#`` are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the prompt file: {exc}") from None
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise InputError(f"{path}: no prompts (one per line; # starts a comment)")
    return prompts


def apply_template(template: str, prompt: str) -> str:
    """The prompt wrapped in a named template or in a ``{prompt}`` text."""
    text = TEMPLATES.get(template, template)
    if "{prompt}" not in text:
        raise InputError(f"template {template!r} is neither one of {', '.join(TEMPLATES)} nor a text with {{prompt}}")
    prompt = prompt.strip()
    if "{prompt}." in text:  # no doubled full stop
        prompt = prompt.rstrip(".")
    return text.replace("{prompt}", prompt)
