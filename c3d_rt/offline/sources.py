"""Which videos an offline run reads: files, folders (recursive) and text files of paths, each with the relative
path its outputs are named after."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import C3DError
from ..data.video import VIDEO_EXTENSIONS, is_video

LIST_SUFFIXES = (".txt", ".lst", ".list")


class SourceListError(C3DError):
    """A SOURCE that names no video, or two videos whose outputs would have the same name."""


@dataclass(frozen=True)
class VideoItem:
    path: Path  # where the video is
    rel: Path  # its name under the output folder (``DIR/<rel>.json``): relative to the folder it was found in

    @property
    def key(self) -> str:
        return self.rel.as_posix()


def collect_videos(sources: list[str | Path]) -> list[VideoItem]:
    """Every video the SOURCE arguments name, in order, without repeats.

    A folder gives the videos under it (any depth, the extensions `prepare` knows), named from the folder's own name
    down (``data/walk/v1.avi``), so class folders keep their class whether the set or one class is passed; a file
    ending in .txt/.lst/.list holds one path a line (relative ones to that file's folder; ``#`` starts a comment);
    a video file is named by its file name.
    """
    if not sources:
        raise SourceListError("no SOURCE given: pass video files, folders of videos, or a .txt file of paths")
    items: dict[Path, VideoItem] = {}
    for source in sources:
        for item in _expand(Path(source)):
            items.setdefault(item.path.resolve(), item)
    _refuse_clashes(list(items.values()))
    return list(items.values())


def _expand(source: Path) -> list[VideoItem]:
    if source.is_dir():
        found = sorted(p for p in source.rglob("*") if p.is_file() and is_video(p) and not _hidden(p, source))
        if not found:
            raise SourceListError(f"{source}: a folder with no video in it (looked for "
                                  f"{', '.join(VIDEO_EXTENSIONS)} at any depth)")
        # named from the folder's own name down (a class folder keeps its class), never through a link's target
        return [VideoItem(p, Path(source.resolve().name) / p.relative_to(source)) for p in found]
    if source.suffix.lower() in LIST_SUFFIXES and source.is_file():
        return _read_list(source)
    if source.is_file():
        if not is_video(source):
            raise SourceListError(f"{source}: not a video file (expected one of {', '.join(VIDEO_EXTENSIONS)}), a "
                                  f"folder, or a list of paths ({', '.join(LIST_SUFFIXES)})")
        return [VideoItem(source, Path(source.name))]
    raise SourceListError(f"{source}: no such file or folder. Pass video files, folders of videos, or a .txt file "
                          "with one video path a line.")


def _hidden(path: Path, root: Path) -> bool:
    """Dot files and folders (a half-written ``.name.tmp``, ``.cache``) are not videos of the set."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _read_list(list_file: Path) -> list[VideoItem]:
    lines = [ln.split("#", 1)[0].strip() for ln in list_file.read_text(errors="replace").splitlines()]
    paths = [Path(ln) if Path(ln).is_absolute() else list_file.parent / ln for ln in lines if ln]
    if not paths:
        raise SourceListError(f"{list_file}: lists no video path (one path a line; relative ones are read from "
                              f"{list_file.parent})")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        shown = ", ".join(map(str, missing[:3]))
        raise SourceListError(f"{list_file}: {len(missing)} listed videos do not exist ({shown}{more}); relative "
                              f"paths are read from {list_file.parent}")
    return [VideoItem(p, _name_in_list(p, list_file.parent)) for p in paths]


def _name_in_list(path: Path, base: Path) -> Path:
    relative = Path(os.path.relpath(os.path.abspath(path), os.path.abspath(base)))
    return Path(path.name) if relative.parts[:1] == ("..",) else relative


def _refuse_clashes(items: list[VideoItem]) -> None:
    seen: dict[str, Path] = {}
    for item in items:
        other = seen.setdefault(item.key, item.path)
        if other != item.path:
            raise SourceListError(f"two videos would write the same outputs {item.key}.json: {other} and {item.path}. "
                                  "Run them in separate runs (--out DIR each), or pass their common parent folder.")
