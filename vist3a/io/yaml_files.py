"""YAML documents validated with pydantic, with errors that name the file, the line and the field."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from vist3a.config import validation_problem
from vist3a.errors import ConfigError, InputError

M = TypeVar("M", bound=BaseModel)
Loc = Sequence[str | int]


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class YamlDocument:
    """A parsed YAML file that remembers where each value came from."""

    def __init__(self, path: Path, data: Any, root: yaml.Node | None) -> None:
        self.path, self.data, self.root = path, data, root

    @classmethod
    def read(cls, path: str | Path, error: type[InputError] = ConfigError) -> YamlDocument:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise error(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise error(f"{path}: cannot read: {exc}") from None
        loader = _UniqueKeyLoader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise error(f"{where}: invalid YAML: {problem}") from None
        finally:
            loader.dispose()
        return cls(path, data, root)

    def line(self, loc: Loc) -> int | None:
        """1-based line of the deepest key or item along ``loc`` that exists."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for part in loc:
            found = _child(node, part) if node is not None else None
            if found is None:
                break
            marker, node = found
            line = marker.start_mark.line + 1
        return line

    def where(self, loc: Loc) -> str:
        """``file:line: dotted.field`` for error messages."""
        line = self.line(loc)
        place = f"{self.path}:{line}" if line else str(self.path)
        field = ".".join(str(p) for p in loc)
        return f"{place}: {field}" if field else place

    def validate(self, model: type[M], error: type[InputError] = ConfigError) -> M:
        """Validate the whole document; the first problem becomes a one-line ``error`` with its line."""
        try:
            return model.model_validate(self.data if self.data is not None else {})
        except ValidationError as exc:
            loc, message = validation_problem(exc)
            raise error(f"{self.where(loc)}: {message}") from None


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """(the node that marks ``part``, its value) inside a mapping or sequence node."""
    if isinstance(node, yaml.MappingNode):
        return next(((k, v) for k, v in node.value if k.value == str(part)), None)
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return node.value[part], node.value[part]
    return None
