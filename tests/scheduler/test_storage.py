"""A run's folder under DATA_DIR: what it holds, and its removal."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.storage import remove_folder


def test_a_folder_goes_with_everything_in_it_and_nothing_a_link_points_at(tmp_path: Path):
    data, outside = tmp_path / "data", tmp_path / "outside"
    (data / "run-0001-a" / "01-base" / ".thumbs").mkdir(parents=True)
    (data / "run-0001-a" / "01-base" / "job-1.png").write_bytes(b"x" * 10)
    (data / "run-0001-a" / "01-base" / ".thumbs" / "job-1.jpg").write_bytes(b"y" * 5)
    outside.mkdir()
    (outside / "keep.png").write_bytes(b"keep")
    (data / "run-0001-a" / "elsewhere").symlink_to(outside)
    (data / "run-0002-b").symlink_to(outside)
    assert remove_folder(data, "run-0001-a") == []
    assert remove_folder(data, "run-0002-b") == []
    assert sorted(p.name for p in data.iterdir()) == []
    assert (outside / "keep.png").read_bytes() == b"keep"
    assert remove_folder(data, "run-0003-gone") == []


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b"])
def test_only_a_folder_right_under_data_dir_is_removed(tmp_path: Path, name: str):
    with pytest.raises(ValueError, match="not a folder right under DATA_DIR"):
        remove_folder(tmp_path, name)
