import errno
import re
import shutil
from pathlib import Path

import pytest

import c3d_rt.data.prepare as prepare_mod
from c3d_rt.data.prepare import prepare
from c3d_rt.data.splits import DataError, load_data_split

from .conftest import write_video
from .test_data_errors import cli, needs_read_only, read_only


def _flat_ucf(tmp_path):
    src = tmp_path / "UCF101"
    for cls in ("ApplyEyeMakeup", "HandStandPushups"):
        for g in range(1, 6):
            for c in range(1, 3):
                write_video(src / f"v_{cls}_g{g:02d}_c{c:02d}.avi", 3, size=(32, 32), seed=g * 10 + c)
    (src / "README.txt").write_text("not a video")
    return src


def test_prepare_sorts_into_class_folders_with_group_aware_split(tmp_path):
    src, dst = _flat_ucf(tmp_path), tmp_path / "prepared"
    report = prepare(src, dst, val_fraction=0.4, progress=False)
    assert report.copied == 20 and report.skipped == ["README.txt"]
    assert sorted(p.name for p in dst.iterdir() if p.is_dir()) == ["ApplyEyeMakeup", "HandStandPushups", "splits"]
    split = load_data_split(dst)
    groups = lambda paths: {p.split("_c")[0] for p in paths}  # noqa: E731
    assert groups(split.train).isdisjoint(groups(split.val))
    assert len(split.val) == 8 and len(split.train) == 12
    assert (src / "v_ApplyEyeMakeup_g01_c01.avi").exists()  # copy is the default
    again = prepare(src, dst, val_fraction=0.4, progress=False)  # idempotent
    assert again.copied == 0 and again.already_there == 20


def test_prepare_dry_run_changes_nothing(tmp_path):
    src, dst = _flat_ucf(tmp_path), tmp_path / "prepared"
    report = prepare(src, dst, dry_run=True, progress=False)
    assert report.copied == 20 and not dst.exists()


def test_prepare_reads_official_lists_and_fixes_class_case(tmp_path):
    src, dst, lists = _flat_ucf(tmp_path), tmp_path / "prepared", tmp_path / "lists"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 HandstandPushups\n")
    test = [f"{c}/v_{f}_g01_c0{k}.avi" for c, f in (("ApplyEyeMakeup",) * 2, ("HandstandPushups", "HandStandPushups"))
            for k in (1, 2)]
    train = [f"{c}/v_{f}_g0{g}_c01.avi 1" for c, f in (("ApplyEyeMakeup",) * 2, ("HandstandPushups", "HandStandPushups"))
             for g in (2, 3)]
    (lists / "testlist01.txt").write_text("\n".join(test) + "\n")
    (lists / "trainlist01.txt").write_text("\n".join(train) + "\n")
    report = prepare(src, dst, lists=lists, move=True, progress=False)
    assert report.train == 4 and report.test == 4
    assert (dst / "HandstandPushups" / "v_HandStandPushups_g01_c01.avi").is_file()
    assert not (src / "v_ApplyEyeMakeup_g01_c01.avi").exists()  # moved
    split = load_data_split(dst)
    assert split.classes == ["ApplyEyeMakeup", "HandstandPushups"]
    assert "HandstandPushups/v_HandStandPushups_g01_c02.avi" in split.val


def test_prepare_accepts_a_class_folder_tree(tmp_path):
    src = tmp_path / "hmdb"
    for cls in ("brush_hair", "cartwheel"):
        for i in range(3):
            write_video(src / cls / f"{cls}_{i}.avi", 3, size=(32, 32))
    report = prepare(src, tmp_path / "out", progress=False)
    assert report.classes == ["brush_hair", "cartwheel"] and report.copied == 6


def test_prepare_never_replaces_another_split_quietly(tmp_path):
    import pytest

    from c3d_rt.data.splits import DataError

    src, dst = _flat_ucf(tmp_path), tmp_path / "prepared"
    prepare(src, dst, val_fraction=0.4, progress=False)
    before = {p.name: p.read_bytes() for p in (dst / "splits").iterdir()}
    with pytest.raises(DataError, match=r"already has a split \(12 train, 8 test\) that differs .* --resplit"):
        prepare(src, dst, val_fraction=0.2, progress=False)
    assert {p.name: p.read_bytes() for p in (dst / "splits").iterdir()} == before  # untouched
    assert prepare(src, dst, val_fraction=0.2, progress=False, resplit=True).test != 8


def test_prepare_carries_the_data_sets_own_description(tiny_data, tmp_path):
    prepare(tiny_data, tmp_path / "copy", progress=False)
    assert (tmp_path / "copy" / "dataset.json").read_text() == (tiny_data / "dataset.json").read_text()


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_refused_prepare_has_touched_no_file(tmp_path):
    """Into a folder that holds another split, with --move: refused before the first video moves."""
    src, dst = _flat_ucf(tmp_path), tmp_path / "prepared"
    earlier = Path(shutil.copytree(src, tmp_path / "earlier"))
    for video in earlier.glob("v_HandStandPushups_*"):
        video.unlink()
    prepare(earlier, dst, progress=False)  # DST holds another set's split: 10 videos of one class
    source, target = _files(src), _files(dst)
    run = cli("prepare", src, dst, "--move")
    assert run.returncode == 1 and "already has a split" in run.stderr, run.stderr[-2000:]
    assert _files(src) == source and _files(dst) == target  # every video still in SRC; DST as it was


def test_a_file_in_the_way_is_refused_before_anything_is_placed(tmp_path):
    src, dst = _flat_ucf(tmp_path), tmp_path / "prepared"
    (dst / "HandStandPushups").mkdir(parents=True)
    (dst / "HandStandPushups" / "v_HandStandPushups_g03_c01.avi").write_bytes(b"another video of that name")
    source, target = _files(src), _files(dst)
    with pytest.raises(DataError, match=r"v_HandStandPushups_g03_c01.avi: already there with other content "
                                        r"\(26 bytes; .* has \d+\)"):
        prepare(src, dst, move=True, progress=False)
    assert _files(src) == source and _files(dst) == target


@needs_read_only
def test_a_move_that_fails_half_way_is_moved_back(tmp_path):
    """Class b's folder is read-only (a mounted share): its videos cannot leave it, so a's, moved first, go back."""
    src, dst = tmp_path / "hmdb", tmp_path / "out"
    for cls in ("a", "b"):
        for i in range(3):
            write_video(src / cls / f"{cls}_{i}.avi", 3, size=(32, 32), seed=i)
    source = _files(src)
    with read_only(src / "b"):
        run = cli("prepare", src, dst, "--move")
    text = " ".join(run.stderr.split())
    assert run.returncode == 1 and "Traceback" not in text, text
    assert "b/b_0.avi" in text and "the 3 videos moved before it were moved back" in text, text
    assert _files(src) == source and not dst.exists()


def test_an_interrupted_move_is_moved_back(tmp_path, monkeypatch):
    src, dst = _flat_ucf(tmp_path), tmp_path / "prepared"
    source, place, calls = _files(src), prepare_mod._place, []

    def interrupted_at_the_fifth(*args):
        calls.append(args)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return place(*args)

    monkeypatch.setattr(prepare_mod, "_place", interrupted_at_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        prepare(src, dst, move=True, progress=False)
    assert _files(src) == source and not dst.exists()


def test_a_move_that_cannot_be_undone_lists_every_video_left_moved(tmp_path, monkeypatch):
    """The disk fails on the 4th video, and again while the 3rd is moved back: that one is named, and listed."""
    src, dst = _flat_ucf(tmp_path), tmp_path / "prepared"
    source, move, calls = _files(src), prepare_mod._move, []

    def failing_disk(a, b):
        calls.append((a, b))
        if len(calls) in (4, 5):
            raise OSError(errno.EIO, "Input/output error")
        return move(a, b)

    monkeypatch.setattr(prepare_mod, "_move", failing_disk)
    with pytest.raises(DataError, match=r"at v_ApplyEyeMakeup_g02_c02.avi; 1 of the 3 videos moved before it could "
                                        r"not be moved back \(e.g. .*v_ApplyEyeMakeup_g02_c01.avi belongs at") as err:
        prepare(src, dst, move=True, progress=False)
    listing = Path(re.search(r"lines, in (\S+)\. Move them back with: ", str(err.value))[1])
    stuck = "v_ApplyEyeMakeup_g02_c01.avi"
    assert listing.read_text() == f"{dst / 'ApplyEyeMakeup' / stuck}\t{src / stuck}\n"
    assert {k: v for k, v in _files(src).items() if k != stuck} == {k: v for k, v in source.items() if k != stuck}


def _cross_device(monkeypatch):
    """Every rename fails as between two file systems (EXDEV): each move is a copy, then the source removed."""
    def rename(a, b):
        raise OSError(errno.EXDEV, "Invalid cross-device link", str(a))

    monkeypatch.setattr(prepare_mod.os, "rename", rename)


def test_a_ctrl_c_right_after_a_cross_device_move_removed_its_source_loses_no_video(tmp_path, monkeypatch):
    """The 3rd video is copied and its source removed, then Ctrl-C: the copy is that video's only one, so it is kept
    (and moved back with the two before it)."""
    src, dst = _flat_ucf(tmp_path), tmp_path / "prepared"
    source, unlink, removed = _files(src), Path.unlink, []
    _cross_device(monkeypatch)

    def interrupted_after_the_third_removal(self, *args, **kwargs):
        unlink(self, *args, **kwargs)
        if self.parent == src:
            removed.append(self)
            if len(removed) == 3:
                raise KeyboardInterrupt

    monkeypatch.setattr(Path, "unlink", interrupted_after_the_third_removal)
    with pytest.raises(KeyboardInterrupt):
        prepare(src, dst, move=True, progress=False)
    monkeypatch.undo()
    assert _files(src) == source and not dst.exists()


def test_a_ctrl_c_as_a_move_returns_still_moves_that_video_back(tmp_path, monkeypatch):
    """Ctrl-C after the 3rd video's move has finished, before it was recorded: it goes back too."""
    src, dst = _flat_ucf(tmp_path), tmp_path / "prepared"
    source, place, calls = _files(src), prepare_mod._place, []

    def interrupted_after_the_third(*args):
        calls.append(args)
        place(*args)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(prepare_mod, "_place", interrupted_after_the_third)
    with pytest.raises(KeyboardInterrupt):
        prepare(src, dst, move=True, progress=False)
    assert _files(src) == source and not dst.exists()


def test_a_second_ctrl_c_while_moving_back_lists_every_video_left_moved(tmp_path, monkeypatch):
    """Ctrl-C at the 5th video, and again while the 3rd of the 4 moved is moved back (a copy, across file systems):
    never "nothing changed", and the listing holds exactly the videos still in DST."""
    src, dst = _flat_ucf(tmp_path), tmp_path / "prepared"
    source, place, move, places, moves = _files(src), prepare_mod._place, prepare_mod._move, [], []

    def interrupted_at_the_fifth(*args):
        places.append(args)
        if len(places) == 5:
            raise KeyboardInterrupt
        return place(*args)

    def interrupted_again(a, b):
        moves.append((a, b))
        if len(moves) == 6:  # 4 moves there, then the 2nd move back
            raise KeyboardInterrupt
        return move(a, b)

    monkeypatch.setattr(prepare_mod, "_place", interrupted_at_the_fifth)
    monkeypatch.setattr(prepare_mod, "_move", interrupted_again)
    try:
        with pytest.raises(DataError, match=r"was interrupted at v_ApplyEyeMakeup_g03_c01.avi; moving back was "
                                            r"interrupted too: 3 of the 4 videos moved before it are still in") as err:
            prepare(src, dst, move=True, progress=False)
    except KeyboardInterrupt:  # what the CLI turns into "moved back ...: nothing changed"
        pytest.fail("the second Ctrl-C escaped as a plain interrupt, with videos still in DST")
    listing = Path(re.search(r"lines, in (\S+)\.", str(err.value))[1])
    left = {p.name for p in dst.rglob("*.avi")}
    assert len(left) == 3 and {Path(line.split("\t")[0]).name for line in listing.read_text().splitlines()} == left
    assert {k: v for k, v in _files(src).items() if k not in left} == {k: v for k, v in source.items()
                                                                        if k not in left}


def test_a_ctrl_c_while_the_split_lists_are_written_moves_every_video_back(tmp_path, monkeypatch):
    """Interrupted after the last video moved, while the split lists are written: moved back, so that "nothing
    changed" (what the CLI then says) is true."""
    src, dst = _flat_ucf(tmp_path), tmp_path / "prepared"
    source = _files(src)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_mod, "write_split_lists", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(src, dst, move=True, progress=False)
    assert _files(src) == source and not dst.exists()
