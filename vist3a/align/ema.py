"""An exponential moving average of the trainable (LoRA) weights, used for inference after alignment."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from vist3a import distributed


class EMA:
    """Shadow copies of ``parameters``, updated with decay ``min((1 + s) / (10 + s), max_decay)`` at step ``s``.

    The warm-up formula follows the usual diffusion practice: early steps follow the weights closely.
    """

    def __init__(self, parameters: Mapping[str, nn.Parameter], max_decay: float = 0.99) -> None:
        if not 0.0 <= max_decay < 1.0:
            raise ValueError(f"max_decay must be in [0, 1), got {max_decay}")
        self.max_decay, self.step = max_decay, 0
        self.shadow = {name: p.detach().clone().float() for name, p in parameters.items()}

    def decay(self) -> float:
        return min((1 + self.step) / (10 + self.step), self.max_decay)

    @torch.no_grad()
    def update(self, parameters: Mapping[str, nn.Parameter]) -> None:
        decay = self.decay()
        for name, parameter in parameters.items():
            self.shadow[name].lerp_(parameter.detach().float(), 1 - decay)
        self.step += 1

    @torch.no_grad()
    def copy_to(self, parameters: Mapping[str, nn.Parameter]) -> None:
        """Overwrite ``parameters`` with the averages."""
        for name, parameter in parameters.items():
            parameter.copy_(self.shadow[name].to(parameter.dtype))

    def state_dict(self) -> dict[str, Tensor]:
        """The averages (sharded like the parameters under FSDP) and the step."""
        return {**{f"shadow.{k}": v for k, v in self.shadow.items()}, "step": torch.tensor(self.step)}

    def checkpoint_tensors(self) -> dict[str, Tensor]:
        """:meth:`state_dict` under the ``ema.`` prefix, to sit beside the training tensors in one state file."""
        return {f"ema.{key}": value for key, value in self.state_dict().items()}

    def load_checkpoint_tensors(self, tensors: Mapping[str, Tensor]) -> None:
        """Undo :meth:`checkpoint_tensors` on a state file's tensors (other keys are ignored)."""
        self.load_state_dict({key.removeprefix("ema."): value for key, value in tensors.items() if key.startswith("ema.")})

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        shadow = {k.removeprefix("shadow."): v for k, v in state.items() if k.startswith("shadow.")}
        if shadow.keys() != self.shadow.keys():
            raise ValueError("the saved EMA holds other parameters")
        self.shadow = {k: distributed.like(v.float().clone(), self.shadow[k]) for k, v in shadow.items()}
        self.step = int(state["step"])

