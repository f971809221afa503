"""The `c3d-rt` typer app and its global options; the commands register on it from their own modules."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  help="C3D action recognition from training to a live camera.")


def _hide_flag_types() -> None:
    """typer 0.29 prints ``<bool>`` after every flag in the help (``--resume <bool>``), as if it took a value."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_c3d_rt", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._c3d_rt = True
    TyperOption.display_type_rich = display_type_rich


_hide_flag_types()


def _show_version(value: bool) -> None:
    if value:
        from ..core.version import __version__

        typer.echo(f"c3d-rt {__version__}")
        raise typer.Exit()


@app.callback()
def _global(debug: bool = typer.Option(False, "--debug", help="On an unexpected error, show the full traceback "
                                                              "(also accepted after the command)."),
            verbose: bool = typer.Option(False, "--verbose", help="Show third-party libraries' warnings and advice "
                                                                  "(hidden by default; also accepted after the "
                                                                  "command)."),
            version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                         help="Show c3d-rt's version and exit.")) -> None:
    """C3D action recognition from training to a live camera."""

