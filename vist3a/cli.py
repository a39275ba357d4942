"""The ``vist3a`` command line: wiring only. Each command lives in ``vist3a/commands``.

Exit codes: 0 success, 2 bad input (flags, files, configs, checkpoints, registry), 1 failure during a run.
Errors are one ``Error:`` line on stderr; ``VIST3A_DEBUG=1`` adds the traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections import Counter
from typing import Annotated

import typer
from typer.exceptions import TyperException

from vist3a import __version__
from vist3a.commands.align import align
from vist3a.commands.generate import generate
from vist3a.commands.pair import pair
from vist3a.commands.plugins import command_names, plugins
from vist3a.commands.registry import registry
from vist3a.commands.render import render
from vist3a.commands.stitch import stitch
from vist3a.commands.sweep import sweep_layers
from vist3a.errors import PluginError, Vist3aError
from vist3a.plugins import get_plugins

INTERRUPTED = 130


def _version(value: bool) -> None:
    if value:
        print(f"vist3a {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """vist3a: text-to-3D by stitching a 3D reconstruction model to a video generator."""


def build_app() -> typer.Typer:
    """The typer app with the core commands and every plugin's commands."""
    app = typer.Typer(
        name="vist3a", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, callback=_root
    )
    app.command()(plugins)
    app.command()(registry)
    app.command()(pair)
    app.command("sweep-layers")(sweep_layers)
    app.command()(stitch)
    app.command()(render)
    app.command()(generate)
    app.command()(align)
    owners = dict.fromkeys(command_names(app), "vist3a")
    for plugin, call in get_plugins().hook_callers("register_commands"):
        before = Counter(command_names(app))
        call(app=app)
        for name in Counter(command_names(app)) - before:
            if name in owners:
                raise PluginError(f"plugin {plugin!r} adds the command {name!r}, which {owners[name]!r} already provides")
            owners[name] = plugin
    return app


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit code."""
    _setup_logging()
    try:
        command = typer.main.get_command(build_app())
        result = command.main(args=argv, prog_name="vist3a", standalone_mode=False)
        if result == INTERRUPTED:  # typer turns Ctrl-C into this exit code
            raise KeyboardInterrupt
        return result if isinstance(result, int) else 0
    except typer.Abort:
        return _fail("aborted", 1)
    except TyperException as exc:  # usage errors: unknown command, bad flag or value
        message = exc.format_message()
        return _fail(message, 2) if message else 2  # no arguments: the help was printed
    except Vist3aError as exc:
        return _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted (resumable jobs continue from their last checkpoint when rerun)", INTERRUPTED)
    except Exception as exc:
        return _fail(f"{type(exc).__name__}: {exc}", 1)


def _fail(message: str, code: int) -> int:
    if os.environ.get("VIST3A_DEBUG", "") not in {"", "0"} and sys.exc_info()[0] is not None:
        traceback.print_exc()
    print("Error: " + " ".join(message.split("\n")).strip(), file=sys.stderr)
    return code


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger = logging.getLogger("vist3a")
    if not logger.handlers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
