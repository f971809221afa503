"""The console entry point: every command registered, user errors as one message, bugs as a crash log."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import typer

from ..core.errors import C3DError, describe

# isort: off
# Each module registers its commands on the app, in the order `c3d-rt --help` lists them.
from . import data, training, export, live, offline, bench  # noqa: F401
# isort: on
from .app import app
from .options import command_line


def main() -> None:
    """Console entry point: a user-facing error becomes one message and exit status 1; an unexpected one becomes one
    line plus the path of a log with its traceback (``--debug`` shows the traceback instead)."""
    from ..core.console import filter_harmless_warnings, set_verbose

    debug = "--debug" in sys.argv[1:] or os.environ.get("C3D_RT_DEBUG") == "1"
    set_verbose("--verbose" in sys.argv[1:] or os.environ.get("C3D_RT_VERBOSE") == "1")
    filter_harmless_warnings()
    sys.argv = [sys.argv[0], *(a for a in sys.argv[1:] if a not in ("--debug", "--verbose"))]  # anywhere on the line
    try:
        app()
    except C3DError as exc:
        if debug:
            traceback.print_exc()
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug, or an input nothing checks yet: never a bare traceback for a user
        if debug:
            raise
        log = _crash_log(exc)
        typer.secho(f"error: unexpected {describe(exc)}\n"
                    f"This is a bug in c3d-rt or an input it does not check yet. The full traceback is in {log}; "
                    "run the command again with --debug to see it here.", fg=typer.colors.RED, err=True)
        sys.exit(1)


def _crash_log(exc: BaseException) -> Path:
    """Write the command line, versions and traceback of an unexpected error to a log file; return its path."""
    from ..core.fileio import user_cache_dir, write_where_writable
    from ..core.version import __version__

    text = (f"command: {command_line(*sys.argv[1:])}\ncwd: {os.getcwd()}\nc3d-rt {__version__}, "
            f"Python {sys.version.split()[0]}\ntime: {time.strftime('%Y-%m-%d %H:%M:%S')}\n\n"
            + "".join(traceback.format_exception(exc)))
    name = f"error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    return write_where_writable(text, name, (user_cache_dir("logs"), tempfile.gettempdir())) or Path(
        "(no writable place for a log)")
