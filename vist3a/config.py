"""Pydantic configuration models shared by the library, the plugins and the commands."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from vist3a.errors import ConfigError, InputError

DType = Literal["float32", "float16", "bfloat16"]
M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every vist3a config: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ComponentConfig(StrictModel):
    """What every generator, decoder or reward factory accepts. Plugins subclass it to add their own fields."""

    checkpoint: str | None = None
    """Local folder or file, or a hub id; None builds the architecture from this config with random weights."""
    device: str = "cpu"
    """``"meta"`` builds the architecture without reading or downloading any weights (to inspect shapes)."""
    dtype: DType = "float32"


def validation_problem(exc: ValidationError) -> tuple[tuple[str | int, ...], str]:
    """The location and a one-line message of the first problem in ``exc``."""
    problems = exc.errors()
    first = problems[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problems)"
    return loc, message


def validate(model: type[M], values: Any, where: str, error: type[InputError] = ConfigError) -> M:
    """``model.model_validate(values)``, raising one line ``where: field: problem`` on failure."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        loc, message = validation_problem(exc)
        field = ".".join(map(str, loc))
        raise error(f"{where}: {field + ': ' if field else ''}{message}") from None
