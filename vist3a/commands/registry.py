"""``vist3a registry``: the catalogue and whether each entry's plugin is installed."""

from __future__ import annotations

from typing import Any

from rich.table import Column, Table

from vist3a.commands.options import JsonOpt, RegistryOpt, out, print_json
from vist3a.plugins import SPEC_TYPES, get_plugins
from vist3a.registry import Registry


def registry(registry: RegistryOpt = None, json: JsonOpt = False) -> None:
    """List known generators, decoders, rewards and pairings, and whether each one is usable here."""
    data = registry_rows(Registry.load(registry))
    if json:
        print_json(data)
        return
    for kind in SPEC_TYPES:
        if not data[kind]:
            out.print(f"{kind}: none")
            continue
        table = Table("plugin", "default checkpoint", "installed", title=kind)
        table.columns.insert(0, Column("id", no_wrap=True))
        for row in data[kind]:
            table.add_row(row["id"], row["plugin"], row["checkpoint"] or "-", _yes_no(row))
        out.print(table)
    table = Table("stitch point", "frames", "installed", title="pairings (generator+decoder)")
    table.columns.insert(0, Column("id", no_wrap=True))
    for row in data["pairings"]:
        point = row["default_stitch_point"] or "(sweep)"
        table.add_row(row["id"], point, str(row["frames"]), _yes_no(row))
    out.print(table)
    problems = sorted({row["status"] for kind in SPEC_TYPES for row in data[kind] if not row["installed"]})
    for problem in problems:
        out.print(f"[yellow]note:[/yellow] {problem}")


def registry_rows(reg: Registry) -> dict[str, list[dict[str, Any]]]:
    """Plain dicts per section, each entry with ``installed`` and ``status``."""
    plugins = get_plugins()
    data: dict[str, list[dict[str, Any]]] = {}
    for kind in SPEC_TYPES:
        data[kind] = []
        for ident, entry in sorted(reg.entries[kind].items()):
            status = reg.status(kind, ident, plugins)
            data[kind].append({"id": ident, **entry.model_dump(), "installed": status.installed, "status": status.message})
    data["pairings"] = []
    for ident, pairing in sorted(reg.pairings.items()):
        status = reg.pairing_status(ident, plugins)
        data["pairings"].append({"id": ident, **pairing.model_dump(), "installed": status.installed, "status": status.message})
    return data


def _yes_no(row: dict[str, Any]) -> str:
    return "[green]yes[/green]" if row["installed"] else "[yellow]no[/yellow]"
