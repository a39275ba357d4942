"""``vist3a plugins``: what loaded, from which distribution, what it provides, and what failed."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Column, Table

from vist3a.commands.options import JsonOpt, out, print_json
from vist3a.plugins import SPEC_TYPES, Plugins, get_plugins


def plugins(json: JsonOpt = False) -> None:
    """List the installed plugins, their versions, hooks, what they provide and load errors."""
    rows = plugin_rows(get_plugins())
    if json:
        print_json(rows)
        return
    fold = {"overflow": "fold"}
    table = Table(Column("plugin", no_wrap=True), "distribution", Column("provides", **fold), Column("hooks", **fold), "status")
    for row in rows:
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in row["provides"].items() if names)
        status = f"[red]failed: {row['error']}[/red]" if row["error"] else "[green]loaded[/green]"
        dist = f"{row['distribution']} {row['version']}" if row["distribution"] else "-"
        table.add_row(row["name"], dist, provides or "-", ", ".join(row["hooks"]) or "-", status)
    out.print(table if rows else "No plugins installed.")


def plugin_rows(plugins: Plugins) -> list[dict[str, Any]]:
    """One plain dict per plugin: name, distribution, version, hooks, provides, error."""
    provides: dict[str, dict[str, list[str]]] = {name: {} for name in plugins.infos}
    for kind in SPEC_TYPES:
        for name, registration in sorted(plugins.registrations(kind).items()):
            provides[registration.plugin].setdefault(kind, []).append(name)
    for scheme, registration in sorted(plugins.data_sources().items()):
        provides[registration.plugin].setdefault("data_sources", []).append(scheme)
    for plugin, commands in _commands_by_plugin(plugins).items():
        provides[plugin]["commands"] = commands
    return [
        {
            "name": info.name,
            "distribution": info.distribution,
            "version": info.version,
            "hooks": info.hooks,
            "provides": provides[info.name],
            "error": info.error,
        }
        for info in sorted(plugins.infos.values(), key=lambda i: i.name)
    ]


def _commands_by_plugin(plugins: Plugins) -> dict[str, list[str]]:
    found = {}
    for plugin, call in plugins.hook_callers("register_commands"):
        app = typer.Typer()
        call(app=app)
        found[plugin] = sorted(command_names(app))
    return found


def command_names(app: typer.Typer) -> list[str]:
    """The names of an app's commands and command groups, in registration order."""
    names = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]  # type: ignore[union-attr]
    return names + [g.name or g.typer_instance.info.name for g in app.registered_groups]  # type: ignore[misc]
