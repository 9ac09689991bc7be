"""scripts/sweep.py: every row is a valid training config, and the report reads a run's log."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

import interir
from interir.config import validate_config

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("sweep", ROOT / "scripts" / "sweep.py")
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)


@pytest.mark.parametrize("row", list(sweep.ROWS))
def test_every_row_is_a_valid_config_with_the_shared_budget(row):
    cfg = validate_config(sweep.row_config(row))
    base = validate_config(sweep.row_config("paper-n6"))
    for key in ("seed", "datasets"):
        assert cfg[key] == base[key]
    assert cfg["train"]["total_iter"] == base["train"]["total_iter"]
    net = dict(cfg["network"])
    interir.build_model(net.pop("preset"), **net)        # the architecture builds


def test_read_log_takes_the_last_validation_and_its_stages(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(
        "kind,iter,loss,l1,fft,lr,time,combo,psnr,ssim,stage\n"
        "train,10,1,1,1,1,5.0,,,,\n"
        "train,20,1,1,1,1,9.0,,,,\n"
        "val,10,,,,,,average,20.0,0.5,\n"
        "val_stage,10,,,,,,average,19.0,,0\n"
        "val,20,,,,,,average,21.0,0.6,\n"
        "val_stage,20,,,,,,average,20.5,,1\n"
        "val_stage,20,,,,,,average,20.0,,0\n"
        "val_stage,20,,,,,,haze,30.0,,0\n")
    r = sweep.read_log(log)
    assert r["iter"] == 20 and r["psnr"] == 21.0
    assert r["stages"] == [20.0, 20.5]
    assert r["sec_per_it"] == pytest.approx(0.4)


def test_unknown_row_is_refused(tmp_path, capsys):
    import sys
    argv = sys.argv
    sys.argv = ["sweep.py", "run", "--runs", str(tmp_path), "--rows", "nope"]
    try:
        with pytest.raises(SystemExit, match="unknown row"):
            sweep.main()
    finally:
        sys.argv = argv


def test_read_log_reports_the_pair_fractions_when_logged(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(
        "kind,iter,loss,l1,fft,lr,time,combo,psnr,ssim,stage,monotone,descent\n"
        "train,10,1,1,1,1,5.0,,,,,,\n"
        "val,10,,,,,,average,20.0,0.5,,0.25,0.5\n")
    r = sweep.read_log(log)
    assert r["pairs_monotone"] == 0.25 and r["pairs_descent"] == 0.5


def test_write_table_replaces_only_the_marked_table(tmp_path):
    doc = tmp_path / "sweep.md"
    sweep.write_table(doc, "| old |\n")
    doc.write_text("# Title\n\nintro\n\n" + doc.read_text() + "\nafter the table\n")
    sweep.write_table(doc, "| new |\n")
    text = doc.read_text()
    assert "| new |" in text and "| old |" not in text
    assert text.startswith("# Title\n\nintro\n") and text.endswith("after the table\n")


def test_report_revalidates_a_run_logged_before_the_pair_columns(tmp_path, small_train_data):
    """A finished row whose log has no pair fractions gets them from its last weights (validated
    on the row's validation set, the same numbers ``validate`` logs), cached in pairs.json."""
    from interir.train import _load_val_sets, validate
    model = interir.build_model("tiny", n_blocks=2, channels=8)
    interir.save_pretrained(model, tmp_path / "row" / "last")
    cfg = {"datasets": {"val": {"root": str(small_train_data / "val"), "max_images": None}}}
    mono, desc = sweep.revalidated_fractions(tmp_path / "row", cfg)
    want = validate(model, _load_val_sets(str(small_train_data / "val"), None), torch.device("cpu"))
    assert (mono, desc) == (want["average"]["monotone"], want["average"]["descent"])
    assert json.loads((tmp_path / "row" / "pairs.json").read_text())["monotone"] == mono
    (tmp_path / "row" / "last" / "model.safetensors").unlink()   # now read from the cache
    assert sweep.revalidated_fractions(tmp_path / "row", cfg) == (mono, desc)
    assert sweep.revalidated_fractions(tmp_path / "empty", cfg) is None


def test_report_lists_unfinished_rows_below_the_table(tmp_path, capsys):
    """A row still training (no DONE marker) gets no table row, only its progress below it."""
    (tmp_path / "ds-linear").mkdir()
    (tmp_path / "ds-linear" / "log.csv").write_text(
        "kind,iter,loss,l1,fft,lr,time,combo,psnr,ssim,stage\n"
        "train,250,1,1,1,1,5.0,,,,\n"
        "train,500,1,1,1,1,9.0,,,,\n")
    sweep.report(sweep.argparse.Namespace(runs=str(tmp_path), out=None))
    out = capsys.readouterr().out
    assert "Unfinished (resumable; not in the table): `ds-linear` (500 of 1,500 iterations)." in out
    assert "| `ds-linear` |" not in out


def test_report_keeps_rows_measured_elsewhere(tmp_path, monkeypatch):
    """A finished row whose run folder is not in RUNS keeps its line from the table in --out;
    a row unknown to the sweep is dropped."""
    doc = tmp_path / "sweep.md"
    old = ("| `paper-n6` | the paper's reading | 1500 | 20.67 | 19.30 → 20.67 | yes | 34 % / 0 %¹ | 2.67 | 1043 |\n"
           "| `gone-row` | removed | 1500 | 1.00 | 1.00 | yes | — | 1.00 | 1 |\n")
    sweep.write_table(doc, "| row | … |\n|---|\n" + old)
    run = tmp_path / "runs" / "ds-linear"
    run.mkdir(parents=True)
    (run / "log.csv").write_text(
        "kind,iter,loss,l1,fft,lr,time,combo,psnr,ssim,stage,monotone,descent\n"
        "train,10,1,1,1,1,5.0,,,,,,\n"
        "train,1500,1,1,1,1,20.0,,,,,,\n"
        "val,1500,,,,,,average,21.50,0.5,,0.5,0.25\n")
    (run / "DONE").write_text("1 s\n")
    monkeypatch.setattr(sweep, "forward_ms", lambda cfg: 123.0)
    sweep.report(sweep.argparse.Namespace(runs=str(tmp_path / "runs"), out=str(doc)))
    table = doc.read_text().split(sweep.BEGIN)[1].split(sweep.END)[0]
    assert old.splitlines()[0] in table and "gone-row" not in table
    assert "| `ds-linear` |" in table and "| 21.50 |" in table and "| 50 % / 25 % |" in table
    assert table.index("`paper-n6`") < table.index("`ds-linear`")   # the sweep's row order
