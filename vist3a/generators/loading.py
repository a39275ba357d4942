"""Find and check a diffusers pipeline folder (local or in the Hugging Face cache) before loading it.

A folder is checked against its ``model_index.json``: every component needs its config and, for models,
safetensors weights (single file or every shard of an index). Missing files are listed in one line with
the command that fetches them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from vist3a.errors import CheckpointError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MAX_LISTED = 6


def is_hub_id(checkpoint: str) -> bool:
    """True when ``checkpoint`` is not an existing path but looks like ``owner/name``."""
    return not Path(checkpoint).exists() and bool(HUB_ID.match(checkpoint))


def cached_snapshot(repo_id: str) -> Path:
    """The local snapshot of ``repo_id`` in the Hugging Face cache, without any network access."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        raise CheckpointError(
            f"{repo_id}: not in the local Hugging Face cache and loading is offline (local_files_only or HF_HUB_OFFLINE); "
            f"download it with `hf download {repo_id}` (or `hf download {repo_id} --local-dir DIR` and pass DIR)"
        ) from None


def check_pipeline_folder(folder: Path, source: str) -> None:
    """Raise a CheckpointError naming every file the pipeline in ``folder`` needs but lacks."""
    if not folder.is_dir():
        raise CheckpointError(f"{source}: no such folder (pass a diffusers pipeline folder or a hub id like owner/name)")
    index = folder / "model_index.json"
    if not index.is_file():
        raise CheckpointError(f"{source}: not a diffusers pipeline folder (no model_index.json)")
    try:
        components = json.loads(index.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{index}: unreadable model_index.json: {exc}") from None
    missing = [m for name, spec in sorted(components.items()) for m in _missing(folder, name, spec)]
    if missing:
        listed = ", ".join(missing[:MAX_LISTED]) + (f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else "")
        raise CheckpointError(
            f"{source}: incomplete pipeline folder, missing {listed}; "
            f"fetch them with `hf download <hub id> --local-dir {folder}`"
        )


def _missing(folder: Path, name: str, spec: object) -> list[str]:
    """Files missing for one ``model_index.json`` entry (``[library, class]``; null entries need nothing)."""
    if name.startswith("_") or not isinstance(spec, list) or len(spec) != 2 or spec[1] is None:
        return []
    sub, class_name = folder / name, str(spec[1])
    if not sub.is_dir():
        return [f"{name}/"]
    if "Tokenizer" in class_name or "Processor" in class_name:
        return [] if any(sub.iterdir()) else [f"{name}/<tokenizer files>"]
    if "Scheduler" in class_name:
        return [] if (sub / "scheduler_config.json").is_file() else [f"{name}/scheduler_config.json"]
    missing = [] if (sub / "config.json").is_file() else [f"{name}/config.json"]
    return missing + _missing_weights(sub, name)


def _missing_weights(sub: Path, name: str) -> list[str]:
    """Safetensors weights of a model component: a single file, or an index and all its shards."""
    indexes = sorted(sub.glob("*.safetensors.index.json"))
    if indexes:
        try:
            shards = set(json.loads(indexes[0].read_text())["weight_map"].values())
        except (OSError, KeyError, json.JSONDecodeError):
            return [f"{name}/{indexes[0].name} (unreadable)"]
        return [f"{name}/{shard}" for shard in sorted(shards) if not (sub / shard).is_file()]
    if any(sub.glob("*.safetensors")):
        return []
    return [f"{name}/*.safetensors (only safetensors weights are loaded)"]
