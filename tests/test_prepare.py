from c3d_rt.data.prepare import prepare
from c3d_rt.data.splits import load_data_split

from .conftest import write_video


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
