"""Files written whole or not at all (tts.files.replacing)."""

import stat

import pytest

from tts.files import FILE_MODE, replacing


def test_a_finished_block_replaces_the_file_readable_by_all(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    with replacing(path) as tmp:
        assert tmp.parent == tmp_path and tmp != path
        tmp.write_text("new")
        assert path.read_text() == "old"  # readers see the old file until the block ends
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_an_interrupted_block_keeps_the_old_file_and_leaves_nothing(tmp_path, error):
    path = tmp_path / "weights.safetensors"
    path.write_text("old")
    with pytest.raises(type(error)):
        with replacing(path) as tmp:
            tmp.write_text("half")
            raise error
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.safetensors"]
