"""`c3d-rt prepare`: a flat UCF101 folder (or a class-folder tree) -> class folders + split lists.

The seed's first step, done so that it can be re-run safely: copying is the
default (``move=True`` moves), files already in place are left alone, and
``dry_run`` only reports. The split either comes from UCF101's official lists
or is group-aware, so that the same actors (``_gNN_``) never appear on both sides.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..core.console import bar_disabled
from ..core.errors import describe
from ..core.fileio import write_where_writable
from .splits import SPLIT_DIR, DataError, group_split, read_class_index, read_split_list, write_split_lists
from .video import is_frame_folder, is_video

UCF_NAME = re.compile(r"^v_(?P<cls>[A-Za-z0-9]+)_g(?P<group>\d+)_c(?P<clip>\d+)\.\w+$")


@dataclass
class PrepareReport:
    classes: list[str]
    copied: int = 0
    already_there: int = 0
    skipped: list[str] = field(default_factory=list)  # names that fit no known layout
    train: int = 0
    test: int = 0
    split_source: str = ""
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would place" if self.dry_run else "placed"
        lines = [f"{len(self.classes)} classes; {verb} {self.copied} videos, {self.already_there} already in place",
                 f"split ({self.split_source}): {self.train} train, {self.test} test"]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} files that are not UCF101-named videos, e.g. {self.skipped[0]}")
        return "\n".join(lines)


def plan_flat_folder(src: Path, class_names: list[str] | None) -> tuple[dict[str, str], list[str]]:
    """Map each UCF101-named video to "Class/file"; unrecognised files are returned apart.

    Class names are matched case-insensitively against ``classInd.txt`` when given
    (UCF101's own lists say ``HandstandPushups`` where the files say ``HandStandPushups``).
    """
    canonical = {c.lower(): c for c in class_names or []}
    plan, skipped = {}, []
    for path in sorted(src.iterdir()):
        match = UCF_NAME.match(path.name) if path.is_file() and is_video(path) else None
        if not match:
            if path.is_file():
                skipped.append(path.name)
            continue
        cls = canonical.get(match["cls"].lower(), match["cls"])
        plan[path.name] = f"{cls}/{path.name}"
    return plan, skipped


def plan_class_tree(src: Path) -> dict[str, str]:
    """A tree that already has one folder per class (HMDB51's layout): keep it as it is."""
    plan = {}
    for folder in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for item in sorted(folder.iterdir()):
            if is_video(item) or is_frame_folder(item):
                plan[f"{folder.name}/{item.name}"] = f"{folder.name}/{item.name}"
    return plan


def _in_place(src: Path, dst: Path) -> bool:
    """True where ``dst`` already holds ``src`` (a re-run): a folder, or a file of the same size."""
    return dst.exists() and (dst.is_dir() or dst.stat().st_size == src.stat().st_size)


def _place(src: Path, dst: Path, move: bool) -> None:
    """Copy (or move) ``src`` to ``dst``, through a temporary name: a crash leaves a .partial file, never a short
    video."""
    if move:
        _move(src, dst)
        return
    tmp = dst.with_name(f".{dst.name}.partial")
    try:
        if src.is_dir():
            shutil.copytree(src, tmp, dirs_exist_ok=True)
        else:
            shutil.copy2(src, tmp)
        tmp.replace(dst)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _move(src: Path, dst: Path) -> None:
    """A rename; across file systems a copy, then the source removed (a failed removal takes the copy back)."""
    try:
        os.rename(src, dst)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    _place(src, dst, move=False)
    try:
        shutil.rmtree(src) if src.is_dir() else src.unlink()
    except BaseException:
        if src.exists():  # the move did not happen: the source made whole again, the copy removed
            if src.is_dir():
                shutil.copytree(dst, src, dirs_exist_ok=True)
            shutil.rmtree(dst) if dst.is_dir() else dst.unlink(missing_ok=True)
        raise  # else the source was removed (a Ctrl-C just after): the copy is the video now, and stays


def official_split(lists: Path, split: int, present: set[str], canonical: dict[str, str]) -> tuple[list[str], list[str]]:
    """UCF101's trainlist0N/testlist0N, with class names made to match the folders."""
    def fix(rel: str) -> str:
        cls, _, name = rel.partition("/")
        return f"{canonical.get(cls.lower(), cls)}/{name}"

    sides = []
    for kind in ("train", "test"):
        path = lists / f"{kind}list{split:02d}.txt"
        if not path.is_file():
            raise DataError(f"{path}: missing. Expected UCF101's official list files (classInd.txt, "
                            f"trainlist0{split}.txt, testlist0{split}.txt) in {lists}.")
        sides.append([r for r in map(fix, read_split_list(path)) if r in present])
    return sides[0], sides[1]


def prepare(src: str | Path, dst: str | Path, *, lists: str | Path | None = None, split: int = 1,
            move: bool = False, dry_run: bool = False, val_fraction: float = 0.2, seed: int = 0,
            progress: bool = True, resplit: bool = False) -> PrepareReport:
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DataError(f"{src}: no such folder. Expected a folder of UCF101 videos (v_<Class>_gNN_cNN.avi) "
                        "or one sub-folder of videos per class.")
    lists = Path(lists) if lists else None
    class_names = read_class_index(lists / "classInd.txt") if lists and (lists / "classInd.txt").is_file() else None
    plan, skipped = plan_flat_folder(src, class_names)
    if not plan:
        plan = plan_class_tree(src)
    if not plan:
        raise DataError(f"{src}: found no UCF101-named videos (v_<Class>_gNN_cNN.avi) and no class folders "
                        f"with videos in them ({len(skipped)} other files).")
    classes = class_names or sorted({rel.split("/", 1)[0] for rel in plan.values()})
    report = PrepareReport(classes, skipped=skipped, dry_run=dry_run)
    train, test, report.split_source = _split(plan, classes, lists, split, val_fraction, seed)
    report.train, report.test = len(train), len(test)
    # Every check before the first file is touched: the split, then what is in the way.
    if not resplit:
        _refuse_another_split(dst, train, test, classes)
    todo = _files_to_place(src, dst, plan)
    report.copied, report.already_there = len(todo), len(plan) - len(todo)
    if dry_run:
        return report
    def describe_the_set() -> None:
        write_split_lists(dst, train, test)
        (dst / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
        _carry_dataset_description(src, dst)

    _place_all(src, dst, todo, move, progress, then=describe_the_set)
    return report


def _split(plan: dict[str, str], classes: list[str], lists: Path | None, split: int, val_fraction: float,
           seed: int) -> tuple[list[str], list[str], str]:
    """train and test lists of the planned videos, and where they come from."""
    present = set(plan.values())
    if lists:
        train, test = official_split(lists, split, present, {c.lower(): c for c in classes})
        return train, test, f"official lists {lists}, split {split}"
    train, test = group_split(sorted(present), val_fraction, seed)
    return train, test, f"group-aware, {val_fraction:.0%} of groups held out, seed {seed}"


def _files_to_place(src: Path, dst: Path, plan: dict[str, str]) -> list[tuple[Path, Path]]:
    """(source, target) of each video not yet in place; refuse a target name taken by something else (prepare never
    replaces a file), or a file where a class folder goes."""
    todo = []
    for name, rel in plan.items():
        source, target = src / name, dst / rel
        if target.parent.exists() and not target.parent.is_dir():
            raise DataError(f"{target.parent}: is a file, where the class folder {target.parent.name}/ goes. Move it "
                            "away, or prepare into a new folder.")
        if _in_place(source, target):
            continue
        if target.exists():
            raise DataError(f"{target}: already there with other content ({target.stat().st_size} bytes; {source} "
                            f"has {source.stat().st_size}), and prepare never replaces a file. Move it away, or "
                            "prepare into a new folder.")
        todo.append((source, target))
    return todo


def _place_all(src: Path, dst: Path, todo: list[tuple[Path, Path]], move: bool, progress: bool,
               then: Callable[[], None]) -> None:
    """Place every video, then ``then()`` (the split lists); a move that fails or is interrupted before the end is
    moved back, so SRC is as it was."""
    new_dirs = sorted({p for _, target in todo for p in (target.parent, *target.parent.parents)
                       if not p.exists()}, key=lambda p: len(p.parts), reverse=True)
    begun: list[tuple[Path, Path]] = []  # recorded before each is placed: a Ctrl-C at any point leaves none out
    try:
        for source, target in tqdm(todo, desc="prepare", unit="video", disable=bar_disabled(progress)):
            target.parent.mkdir(parents=True, exist_ok=True)
            begun.append((source, target))
            _place(source, target, move)
        then()
    except BaseException as exc:
        placed = _placed(begun)
        failed = next((source for source, target in todo if not target.exists()), None)  # None: all were placed
        if move:
            _move_back(src, dst, placed, new_dirs, exc, failed)
        if isinstance(exc, OSError):
            what = f"copying {failed} to {dst}" if failed else f"writing the split lists in {dst}"
            raise DataError(f"{what} failed ({describe(exc)}). The {len(placed)} videos copied before it are kept "
                            f"(whole: no half-copied file is left) and {src} is untouched. Fix that and run the same "
                            "command again: it goes on where it stopped.") from None
        raise


def _placed(pairs: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """The (source, target) pairs whose target is there: what the file system says, not how far a loop got (an
    interrupted copy or move leaves its target whole or absent, and every target was absent before)."""
    return [(source, target) for source, target in pairs if target.exists()]


def _move_back(src: Path, dst: Path, moved: list[tuple[Path, Path]], new_dirs: list[Path], exc: BaseException,
               failed: Path | None) -> None:
    """Undo the moves in ``moved`` (and the folders made for them); say exactly what could not be undone.

    Moving back across file systems is a full copy, so a second Ctrl-C is likely: it stops the moving back, and what
    is still in DST is listed, as for a video that could not be moved back. A plain return (or the caller's
    KeyboardInterrupt) always means that every video is back in SRC."""
    again = False
    try:
        for source, target in reversed(moved):
            with contextlib.suppress(OSError):
                _move(target, source)
    except KeyboardInterrupt:
        again = True
    stuck = _placed(moved)
    for folder in new_dirs:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty
    cause = "was interrupted" if isinstance(exc, KeyboardInterrupt) else f"failed ({describe(exc)})"
    at = f" at {failed.relative_to(src)}" if failed else " after the last video, as the split lists were written"
    if stuck:
        listing = _write_listing(dst, stuck)
        n, m = len(stuck), len(moved)
        left = (f"moving back was interrupted too: {n} of the {m} videos moved before it are still in {dst}" if again
                else f"{n} of the {m} videos moved before it could not be moved back")
        raise DataError(f"moving videos from {src} to {dst} {cause}{at}; {left} (e.g. {stuck[0][1]} belongs at "
                        f"{stuck[0][0]}). Every one is listed, as 'target<TAB>source' lines, in {listing}. Move "
                        f"them back with: while IFS=$'\\t' read -r t s; do mv -n \"$t\" \"$s\"; done < {listing}") \
            from None
    if isinstance(exc, OSError):
        raise DataError(f"moving videos from {src} to {dst} {cause}{at}: the {len(moved)} videos moved before it were "
                        f"moved back, so nothing changed. Fix that (or prepare without --move: copying leaves {src} "
                        "as it is) and run the same command again.") from None
    if again:
        raise KeyboardInterrupt  # everything was back before the second Ctrl-C: "nothing changed" is true


def _write_listing(dst: Path, pairs: list[tuple[Path, Path]]) -> Path:
    """The list of videos left moved, in DST if it can be written there, else in the temporary folder."""
    text = "".join(f"{target}\t{source}\n" for source, target in pairs)
    name = f"prepare-moved-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    return write_where_writable(text, name, (dst, tempfile.gettempdir())) or Path(
        "(nowhere writable: " + "; ".join(f"{t} -> {s}" for s, t in pairs) + ")")


def _refuse_another_split(dst: Path, train: list[str], test: list[str], classes: list[str]) -> None:
    """A folder's split (and class order) is what its checkpoints' held-out figures refer to: never replace it
    quietly."""
    old_train, old_test = dst / SPLIT_DIR / "train.txt", dst / SPLIT_DIR / "test.txt"
    if not (old_train.is_file() and old_test.is_file()):
        return
    same = (sorted(read_split_list(old_train)) == sorted(train) and sorted(read_split_list(old_test)) == sorted(test))
    index = dst / "classInd.txt"
    same_classes = not index.is_file() or read_class_index(index) == classes
    if not (same and same_classes):
        raise DataError(f"{dst}: already has a split ({len(read_split_list(old_train))} train, "
                        f"{len(read_split_list(old_test))} test{'' if same_classes else ', other class order'}) "
                        f"that differs from this one ({len(train)} train, {len(test)} test); checkpoints trained "
                        "on it refer to it. Prepare into a new folder, or pass --resplit to replace it.")


def _carry_dataset_description(src: Path, dst: Path) -> None:
    """A data set's own description (``dataset.json``: e.g. that flips are not allowed) goes with its videos."""
    description = src / "dataset.json"
    if description.is_file() and not (dst / "dataset.json").exists():
        shutil.copyfile(description, dst / "dataset.json")
