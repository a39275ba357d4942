"""The caption grammar of the synthetic world: one template per object count, parse-able back to attributes."""

from __future__ import annotations

import re

from vist3a_synth.cameras import first_view_coordinates
from vist3a_synth.world import COLOURS, SHAPES, SIZES, Scene

# The caption grammar, one template per object count. Fields: {size<i>}, {colour<i>}, {shape<i>} of object i and
# {rel<i><j>}, the relation of object i to object j (:data:`RELATIONS`), seen from the first frame's camera.
TEMPLATES = (
    "a {size0} {colour0} {shape0}",
    "a {colour0} {shape0} {rel01} a {colour1} {shape1}",
    "a {colour0} {shape0} {rel01} a {colour1} {shape1}, and a {colour2} {shape2} {rel21} the {colour1} {shape1}",
)
RELATIONS = ("to the left of", "to the right of", "in front of", "behind", "next to")


def caption(scene: Scene) -> str:
    """The scene's caption from :data:`TEMPLATES`; relations are as seen from the first frame's camera."""
    fields: dict[str, str] = {}
    for i, o in enumerate(scene.objects):
        fields |= {f"size{i}": o.size, f"colour{i}": o.colour, f"shape{i}": o.shape}
    seen = first_view_coordinates(scene)
    fields |= {f"rel{i}{j}": relation(seen[i], seen[j]) for i in range(len(seen)) for j in range(len(seen)) if i != j}
    return TEMPLATES[len(scene.objects) - 1].format(**fields)


def relation(a: tuple[float, float], b: tuple[float, float]) -> str:
    """How ``a`` stands to ``b``, both (right, forward) in a camera's frame: the dominant axis, or "next to" when
    neither axis dominates by a factor 1.5."""
    dx, dz = a[0] - b[0], a[1] - b[1]
    if abs(dx) >= 1.5 * abs(dz):
        return "to the left of" if dx < 0 else "to the right of"
    if abs(dz) >= 1.5 * abs(dx):
        return "in front of" if dz < 0 else "behind"
    return "next to"


def parse_caption(text: str) -> dict[str, str]:
    """The template fields of a caption (``{"colour0": "red", "shape0": "sphere", "rel01": ...}``); ValueError if
    no template matches."""
    for template in TEMPLATES:
        if match := _pattern(template).fullmatch(text.strip()):
            return match.groupdict()
    raise ValueError(f"not a caption of the synthetic world: {text!r}")


def caption_objects(text: str) -> list[tuple[str, str]]:
    """``(colour, shape)`` of each object a caption names, in the order of ``scene.objects``."""
    fields = parse_caption(text)
    return [(fields[f"colour{i}"], fields[f"shape{i}"]) for i in range(len(TEMPLATES)) if f"colour{i}" in fields]


def _pattern(template: str) -> re.Pattern[str]:
    choices = {"size": SIZES, "colour": COLOURS, "shape": SHAPES, "rel": RELATIONS}

    def field(m: re.Match[str]) -> str:
        if m.group(0) in seen:  # a repeated field must repeat the same value
            return f"(?P={m.group(1)}{m.group(2)})"
        seen.add(m.group(0))
        return f"(?P<{m.group(1)}{m.group(2)}>{'|'.join(map(re.escape, choices[m.group(1)]))})"

    seen: set[str] = set()
    return re.compile(re.sub(r"\\\{(size|colour|shape|rel)(\d+)\\\}", field, re.escape(template)))
