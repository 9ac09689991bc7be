"""interir/fileio.py (output-path check, atomic writes) and the CLI's command table."""
from __future__ import annotations

import numpy as np
import pytest

from interir import cli
from interir.errors import InterIRError
from interir.fileio import (atomic_savez, atomic_write_text, atomic_write_with,
                            check_output_path)


def test_check_output_path(tmp_path):
    assert check_output_path(tmp_path / "a.png", (".png",)) == tmp_path / "a.png"
    assert check_output_path(str(tmp_path / "A.PNG"), (".png",)).name == "A.PNG"
    with pytest.raises(InterIRError, match=r"output must end with \.png or \.jpg"):
        check_output_path(tmp_path / "a.gif", (".png", ".jpg"))
    with pytest.raises(InterIRError, match="is a folder, expected a file name"):
        check_output_path(tmp_path)
    with pytest.raises(InterIRError, match=r"^--json .*: output folder .* does not exist"):
        check_output_path(tmp_path / "no" / "x.json", flag="--json")


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_with(path, broken)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    atomic_write_with(path, lambda tmp: tmp.write_text("new"), durable=False)
    assert path.read_text() == "new" and len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("compressed", [True, False])
def test_atomic_savez_round_trip(tmp_path, compressed):
    arrays = {"a": np.arange(6.0).reshape(2, 3), "s": np.array("text")}
    path = atomic_savez(tmp_path / "b.npz", arrays, compressed=compressed)
    with np.load(path) as z:
        assert np.array_equal(z["a"], arrays["a"]) and str(z["s"]) == "text"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.npz"]


def test_save_image_refuses_a_folder_and_a_missing_folder(tmp_path):
    from interir.imageio import save_image

    img = np.zeros((4, 4, 3), np.float32)
    (tmp_path / "d.png").mkdir()
    with pytest.raises(InterIRError, match="is a folder"):
        save_image(img, tmp_path / "d.png")
    with pytest.raises(InterIRError, match="does not exist"):
        save_image(img, tmp_path / "nope" / "x.png")
    save_image(img, tmp_path / "ok.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.png", "ok.png"]


def test_a_listed_command_without_its_module_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "ghost", "interir.commands.ghost")
    assert cli.main(["restore", "--help"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'ghost'" in err and "interir.commands.ghost is missing" in err


def test_require_folder_and_read_text_file_name_the_path(tmp_path):
    from interir.fileio import read_text_file, require_folder

    f = tmp_path / "a.txt"
    f.write_text("héllo", encoding="utf-8")
    assert require_folder(tmp_path, "data") == tmp_path
    with pytest.raises(InterIRError, match=r"nope: data folder does not exist$"):
        require_folder(tmp_path / "nope", "data")
    with pytest.raises(InterIRError, match=r"a.txt: not a folder \(expected pairs\)$"):
        require_folder(f, "data", "pairs")
    assert read_text_file(f, "list") == "héllo"
    with pytest.raises(InterIRError, match=r"^list not found: .*b.txt$"):
        read_text_file(tmp_path / "b.txt", "list")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(InterIRError, match=r"^cannot read list .*bad.txt: "):
        read_text_file(tmp_path / "bad.txt", "list")
