"""Checkpoints as ``config.json`` + ``model.safetensors`` (the diffusers layout), written atomically.

Official ``.pt``/``.pth``/``.bin`` files are read with ``torch.load(weights_only=True)``: nothing in a checkpoint
is ever executed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save, save_file
from torch import Tensor, nn

from vist3a import distributed
from vist3a.config import StrictModel, validate
from vist3a.errors import CheckpointError
from vist3a.io.atomic import atomic_directory, atomic_write_bytes

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MAX_LISTED = 5
P = TypeVar("P", bound="PretrainedMixin")


def load_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors from a ``.safetensors`` file, or a plain state dict in a ``.pt``/``.pth``/``.bin`` pickle.

    Pickles load with ``weights_only=True``; a file holding anything but tensors and plain containers fails.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except Exception as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {_first_line(exc)}") from None
    if path.suffix in {".pt", ".pth", ".bin"}:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path}: cannot be read safely with weights_only=True: {_first_line(exc)}") from None
        if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
            raise CheckpointError(f"{path}: expected a flat mapping of names to tensors")
        return dict(state)
    raise CheckpointError(f"{path}: unsupported checkpoint format {path.suffix!r} (use .safetensors, .pt, .pth or .bin)")


def check_state_dict(expected: nn.Module | Mapping[str, Tensor], state: Mapping[str, Tensor], source: str | Path) -> None:
    """Raise a CheckpointError listing missing, unexpected and mis-shaped keys of ``state``."""
    what = type(expected).__name__ if isinstance(expected, nn.Module) else "the model"
    if isinstance(expected, nn.Module):
        expected = expected.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k} {list(state[k].shape)} vs {list(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    problems = [
        f"{label} ({len(keys)}): {', '.join(keys[:MAX_LISTED])}{', ...' if len(keys) > MAX_LISTED else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch file vs model", mismatched))
        if keys
    ]
    if problems:
        raise CheckpointError(f"{source}: does not match {what}: {'; '.join(problems)}")


def save_checkpoint(directory: str | Path, module: nn.Module, config: Mapping[str, Any], *, overwrite: bool = False) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` atomically."""
    directory = Path(directory)
    state, seen = {}, set()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        state[name] = tensor.clone() if key in seen else tensor  # safetensors refuses shared storage
        seen.add(key)
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        (tmp / CONFIG_NAME).write_text(json.dumps(dict(config), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        save_file(state, tmp / WEIGHTS_NAME)
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint folder."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (expected a checkpoint folder with {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: invalid JSON: {_first_line(exc)}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return config


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` for an ``nn.Module`` built as ``cls(config)``.

    ``config.json`` holds the config's fields plus ``_class_name`` and ``_vist3a_version``.
    """

    config_class: ClassVar[type[StrictModel]]
    config: StrictModel

    def save_pretrained(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        from vist3a import __version__

        assert isinstance(self, nn.Module)
        config = {
            "_class_name": type(self).__name__,
            "_vist3a_version": __version__,
            **self.config.model_dump(mode="json"),
        }
        return save_checkpoint(directory, self, config, overwrite=overwrite)

    @classmethod
    def from_pretrained(cls: type[P], directory: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> P:
        directory = Path(directory)
        values = read_config(directory)
        class_name = values.pop("_class_name", None)
        values.pop("_vist3a_version", None)
        if class_name != cls.__name__:
            raise CheckpointError(f"{directory / CONFIG_NAME}: holds a {class_name or 'unnamed class'}, not a {cls.__name__}")
        config = validate(cls.config_class, values, str(directory / CONFIG_NAME))
        module = cls(config).to(dtype=dtype)  # type: ignore[call-arg]
        assert isinstance(module, nn.Module)
        state = load_state_dict(directory / WEIGHTS_NAME)
        check_state_dict(module, state, directory / WEIGHTS_NAME)
        module.load_state_dict(state)
        return module.to(device=device).eval()  # type: ignore[return-value]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def write_state(path: str | Path, tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> None:
    """A resumable job's state: tensors plus string metadata in one safetensors file, written atomically."""
    atomic_write_bytes(path, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=dict(metadata)))


def read_state(path: str | Path, what: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors and metadata that :func:`write_state` wrote; a clear error names ``what`` otherwise."""
    try:
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
        return load_file(path), metadata
    except Exception as exc:
        raise CheckpointError(f"{path}: corrupted {what} ({_first_line(exc)}); delete it to start over") from None


def training_tensors(params: Mapping[str, nn.Parameter], optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """The trainable parameters, their optimizer state and the torch RNG state, for :func:`write_state`."""
    tensors: dict[str, Tensor] = {f"param.{n}": p for n, p in params.items()}
    for name, parameter in params.items():
        for key, value in optimizer.state.get(parameter, {}).items():
            tensors[f"optim.{name}.{key}"] = torch.as_tensor(value)
    tensors["rng.torch"] = torch.get_rng_state()
    return tensors


def restore_training(tensors: Mapping[str, Tensor], params: Mapping[str, nn.Parameter], optimizer: torch.optim.Optimizer,
                     source: str | Path) -> None:  # fmt: skip
    """Undo :func:`training_tensors`: parameters, optimizer state and RNG, after checking the parameter names."""
    if {k.removeprefix("param.") for k in tensors if k.startswith("param.")} != set(params):
        raise CheckpointError(f"{source}: saved for other trainable parameters; delete it to start over")
    with torch.no_grad():
        for name, parameter in params.items():
            parameter.copy_(distributed.like(tensors[f"param.{name}"], parameter))
            saved = {k.rsplit(".", 1)[1]: v for k, v in tensors.items() if k.rsplit(".", 1)[0] == f"optim.{name}"}
            if saved:
                optimizer.state[parameter] = {k: distributed.like(v.to(parameter.device), parameter) if v.ndim else v
                                              for k, v in saved.items()}  # fmt: skip
    torch.set_rng_state(tensors["rng.torch"])
