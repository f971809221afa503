"""The streams of ``c3d-rt serve``: from ``--source NAME=SPEC`` options and a ``--config`` TOML file.

A config file is a list of ``[[stream]]`` tables with the fields of
:class:`StreamSpec`; fields a table leaves out take the command line's defaults::

    [[stream]]
    name = "door"
    source = "rtsp://10.0.0.5/stream1"
    stride = 4
"""

from __future__ import annotations

from pathlib import Path

from .streams import NAME_PATTERN, StreamSpec, StreamSpecError


def read_streams(options: list[str], config: Path | None, defaults: StreamSpec) -> list[StreamSpec]:
    streams, bare = [], 0
    for text in options:
        name = text.partition("=")[0]
        if "=" not in text or not NAME_PATTERN.match(name):  # a bare SPEC (even a/b=c.mp4 or rtsp://u:p=x@h)
            text, bare = f"cam{bare}={text}", bare + 1
        name, _, source = text.partition("=")
        streams.append(StreamSpec.from_dict({"name": name, "source": source}, defaults))
    if config is not None:
        streams += read_config(config, defaults)
    return streams


def read_config(path: Path, defaults: StreamSpec) -> list[StreamSpec]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise StreamSpecError(f"--config {path}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise StreamSpecError(f"--config {path}: not valid TOML ({exc})") from None
    tables = data.get("stream")
    if not isinstance(tables, list) or not tables:
        raise StreamSpecError(f"--config {path}: expected one or more [[stream]] tables with name and source; "
                              f"found keys {sorted(data) or 'none'}")
    specs = []
    for i, table in enumerate(tables):
        try:
            specs.append(StreamSpec.from_dict(table, defaults))
        except StreamSpecError as exc:
            raise StreamSpecError(f"--config {path}, stream {i + 1}: {exc}") from None
    return specs
