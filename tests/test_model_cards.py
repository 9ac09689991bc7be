"""scripts/write_model_cards.py on tiny random checkpoints with synthetic eval.json / run logs:
a checkpoint without a twin, a warm-start lineage (and a warm restart from its own weights),
the default-checkpoint sentence, a twin pair, and one-line errors."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml

import interir
import interir.weights as weights_mod
from interir.data.degrade import COMBOS
from interir.eval import brightness_markdown, iterations_markdown, to_markdown, to_json

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cards():
    spec = importlib.util.spec_from_file_location("write_model_cards", ROOT / "scripts" / "write_model_cards.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fake_eval(ck: Path, n: int, offset: float, twins: dict[str, float] | None = None) -> dict:
    """A synthetic eval.json (+ eval.md made by interir.eval's own renderers) for checkpoint ck."""
    def block(base: float) -> dict:
        combos = {c: {"psnr": base + i * 0.5, "ssim": 0.5 + i * 0.01, "n": 4} for i, c in enumerate(COMBOS)}
        return {"combos": combos, "average": {"psnr": base + 1.5, "ssim": 0.53}}

    def bias(b: float) -> dict:
        combos = {c: {"bias": b * (1 if i % 2 else -1) * (i + 1), "abs_bias": abs(b) * (i + 2), "n": 4}
                  for i, c in enumerate(COMBOS)}
        return {"combos": combos, "average": {"bias": b, "abs_bias": abs(b) * 3}}

    psnr = [18.0 + offset + k for k in range(n + 1)]
    res = block(20.0 + offset) | {
        "input": block(15.0), "classical": block(17.0),
        "brightness": {"model": bias(0.7), "input": bias(5.0), "classical": bias(2.0)},
        "iterations": {"combos": {c: {"n": 4, "psnr": psnr, "residual": [0.5] * (n + 1),
                                      "psnr_non_decreasing": 0.75, "residual_decreasing": 0.25} for c in COMBOS},
                       "all_pairs": {"n": 28, "psnr": psnr, "residual": [0.9 - 0.1 * k for k in range(n + 1)],
                                     "psnr_non_decreasing": 0.75, "residual_decreasing": 0.25},
                       "tolerance_db": 0.05},
        "meta": {"weights": str(ck), "data": "testset", "n_images": 28, "y_channel": False, "crop_border": 0},
        "embedding_knn": {"accuracy": 0.4 + offset / 10, "accuracy_std": 0.05, "chance": 1 / 7}}
    if twins:
        res["delta_psnr_vs"] = {name: {c: d for c in COMBOS} | {"average": d} for name, d in twins.items()}
    (ck / "eval.json").write_text(to_json(res))
    (ck / "eval.md").write_text(to_markdown(res) + "\n" + brightness_markdown(res) + "\n"
                                + iterations_markdown(res))
    return res


def make_checkpoint(root: Path, name: str, run: str, n: int = 2, conv_type: str = "explain",
                    norm_scale: str = "learned", iteration: int = 40) -> Path:
    torch.manual_seed(0)
    model = interir.build_model("tiny", n_blocks=n, channels=4, conv_type=conv_type, norm_scale=norm_scale)
    return interir.save_pretrained(model, root / "checkpoints" / name, extra={"train": {"name": run, "iter": iteration, "val": {"psnr": 19.4}}})


def make_run(root: Path, run: str, first_time: float = 1.5, iters: int = 40) -> Path:
    """A run folder as interir train leaves it: log.csv, state.json, best/metrics.json."""
    d = root / "runs" / run
    (d / "best").mkdir(parents=True, exist_ok=True)
    rows = ["kind,iter,loss,l1,fft,lr,time,combo,psnr,ssim,stage"]
    for i in range(10, iters + 1, 10):
        rows.append(f"train,{i},0.5,0.1,4.0,0.0003,{first_time * i / 10:.3f},,,,")
        if i % 20 == 0:
            rows.append(f"val,{i},,,,,,average,{19 + i / 100:.3f},0.6,")
    (d / "log.csv").write_text("\n".join(rows) + "\n")
    (d / "state.json").write_text(json.dumps({"iteration": iters, "elapsed": first_time * iters / 10 + 60.0}))
    (d / "best" / "metrics.json").write_text(json.dumps({"iter": iters, "average": {"psnr": 19 + iters / 100}}))
    return d


def make_config(root: Path, run: str, n: int = 2, init: str | None = None, ds: str | None = "linear") -> Path:
    loss = "{l1: 1.0, fft: 0.1" + (f", deep_supervision: {ds}" if ds else "") + "}"
    text = f"""name: {run}
seed: 3
datasets:
  train: {{type: synthetic, root: data_local/train_clean, patch_size: 32, batch_size: 2}}
  val: {{root: data_local/val}}
network: {{preset: tiny, n_blocks: {n}, channels: 4, norm_scale: learned}}
train:
  optimizer: {{type: Adam, lr: 3.0e-4}}
  scheduler: {{type: CosineAnnealingLR, eta_min: 1.0e-7}}
  total_iter: 40
  loss: {loss}
  grad_clip: 1.0
{f'  init_weights: {init}' if init else ''}
val: {{every: 20}}
logger: {{print_every: 10, tensorboard: false, csv: true}}
checkpoint: {{every: 20, dir: runs/{run}}}
"""
    path = root / "configs" / f"{run}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write(cards, root: Path, *cks: Path, runs: dict[str, Path] | None = None) -> None:
    args = ["--runs", str(root / "runs")]
    for run in runs or {}:
        args += ["--config", f"{run}={root / 'configs' / (run + '.yaml')}"]
    cards.main(args + [str(c) for c in cks])


def test_checkpoint_without_twin_has_no_twin_numbers(cards, tmp_path):
    ck = make_checkpoint(tmp_path, "deep", "deep-run", n=2)
    fake_eval(ck, 2, 1.0)
    make_run(tmp_path, "deep-run")
    make_config(tmp_path, "deep-run", n=2)
    write(cards, tmp_path, ck, runs={"deep-run": None})
    text = (ck / "MODEL_CARD.md").read_text()
    assert "No standard-conv twin trained yet" in text and "`deep-stdconv`" in text
    assert "ΔPSNR = this model" not in text and "both twins alike" not in text
    assert text.count("| deep | 0.500 ± 0.050 |") == 1 and "-stdconv |" not in text  # one k-NN row
    assert "n + 1 = 3 steps on the slider, k = 0..2" in text
    assert "| Norm (Eqs. 11, 13) | `learned`" in text
    assert "`linear`: weights 0.167, 0.333, 0.500 on the early exits k = 0..2" in text  # ∝ k + 1
    assert "non-decreasing over k" in text and "on 75 % of the pairs" in text and "on 25 %." in text
    assert "0.900 → 0.800 → 0.700" in text
    assert "Brightness bias mean(output) − mean(target): +0.70/255 on average" in text
    assert "Trained from scratch in one run" in text and "## History" not in text
    assert "other work; no GPU |" in text
    assert (ck / "training_log.csv").read_text() == (tmp_path / "runs/deep-run/log.csv").read_text()
    stages = json.loads((ck / "lineage.json").read_text())["stages"]
    assert len(stages) == 1 and stages[0]["run"] == "deep-run" and stages[0]["init_weights"] is None


def test_warm_start_lineage_then_a_warm_restart_from_its_own_weights(cards, tmp_path):
    origin = make_checkpoint(tmp_path, "small", "small-run", n=1, norm_scale="unit")
    fake_eval(origin, 1, 0.0)
    ck = make_checkpoint(tmp_path, "deep", "deep-run", n=2)
    fake_eval(ck, 2, 1.0)
    make_run(tmp_path, "deep-run", iters=40)
    make_config(tmp_path, "deep-run", init=str(origin))
    write(cards, tmp_path, ck, runs={"deep-run": None})
    text = (ck / "MODEL_CARD.md").read_text()
    assert f"| 1. `small`'s own training: see `{origin}/MODEL_CARD.md` |" in text
    assert "| 19.40 dB (its weights, after 40 iterations of its last run `small-run`) |" in text
    assert f"| 2. `deep-run`, warm start from `{origin}`" in text and "| 40 | 1 min | 19.40 dB @ 40 |" in text
    assert ("`small` scored 21.50 dB on average when this line started from it (its eval.json then, after "
            "40 iterations of `small-run`), this checkpoint 22.50 dB (+1.00 dB)") in text

    # a later session: a new run warm-restarted from the committed weights of this checkpoint
    first_log = (ck / "training_log.csv").read_text()
    make_run(tmp_path, "deep-run", first_time=2.5, iters=60)  # a new run: other first log row
    make_config(tmp_path, "deep-run", init=str(ck))
    meta = json.loads((ck / "config.json").read_text())
    meta["train"]["iter"] = 60                                 # its weights replace the checkpoint's
    (ck / "config.json").write_text(json.dumps(meta))
    write(cards, tmp_path, ck, runs={"deep-run": None})
    text = (ck / "MODEL_CARD.md").read_text()
    assert f"| 3. `deep-run`, warm restart from the committed `{ck}` |" in text and "| 60 |" in text
    assert "| 1. `small`'s own training" in text and "| 2. `deep-run`, warm start from" in text
    assert "`training_log_stage2.csv` (stage 2), `training_log.csv` (stage 3)" in text
    assert (ck / "training_log_stage2.csv").read_text() == first_log
    assert (ck / "training_log.csv").read_text() == (tmp_path / "runs/deep-run/log.csv").read_text()
    lineage = (ck / "lineage.json").read_text()
    write(cards, tmp_path, ck, runs={"deep-run": None})  # the same inputs again: nothing moves
    assert (ck / "MODEL_CARD.md").read_text() == text and (ck / "lineage.json").read_text() == lineage


def deep_from_small(cards, tmp_path: Path) -> tuple[Path, Path]:
    """Two checkpoints with cards: `small` (1 stage) and `deep`, warm-started from it by `deep-run`
    (stages 1-2 of its lineage)."""
    origin = make_checkpoint(tmp_path, "small", "small-run", n=1)
    fake_eval(origin, 1, 0.0)
    ck = make_checkpoint(tmp_path, "deep", "deep-run", n=2)
    fake_eval(ck, 2, 1.0)
    make_run(tmp_path, "deep-run")
    make_config(tmp_path, "deep-run", init=str(origin))
    write(cards, tmp_path, ck, runs={"deep-run": None})
    return origin, ck


def test_the_origin_of_a_warm_start_is_kept_when_that_checkpoint_moves_on(cards, tmp_path):
    origin, ck = deep_from_small(cards, tmp_path)
    meta = json.loads((origin / "config.json").read_text())
    meta["train"].update(name="small-run2", iter=90)          # the origin is replaced later
    (origin / "config.json").write_text(json.dumps(meta))
    fake_eval(origin, 1, 3.0)
    write(cards, tmp_path, ck, runs={"deep-run": None})
    text = (ck / "MODEL_CARD.md").read_text()
    assert "after 40 iterations of its last run `small-run`" in text and "small-run2" not in text
    assert "`small` scored 21.50 dB on average when this line started from it" in text
    make_run(tmp_path, "deep-run", first_time=2.5, iters=60)   # a new run from it: recorded anew
    write(cards, tmp_path, ck, runs={"deep-run": None})
    assert "after 90 iterations of its last run `small-run2`" in (ck / "MODEL_CARD.md").read_text()


def make_milestone(root: Path, run: str, iteration: int, log_from: Path | None = None) -> Path:
    """milestones/<run>-<iter>/ as committed for a new machine: weights, config.json and (when
    ``log_from`` names a run folder) the run's log as training_log.csv."""
    torch.manual_seed(1)
    model = interir.build_model("tiny", n_blocks=2, channels=4, conv_type="explain", norm_scale="learned")
    path = interir.save_pretrained(model, root / "milestones" / f"{run}-{iteration}",
                                   extra={"train": {"name": run, "iter": iteration}})
    if log_from is not None:
        (path / "training_log.csv").write_text((log_from / "log.csv").read_text())
    return path


@pytest.mark.parametrize("with_log", [False, True])
def test_a_warm_restart_from_a_committed_milestone_continues_the_lineage(cards, tmp_path, with_log):
    """Stage k of a checkpoint's line went on past the shipped weights on a machine since replaced;
    only its milestone was committed. A run that warm-restarts from the milestone, shipped, has the
    milestone's run as the stage before it (its log kept when the milestone has one), after the
    checkpoint's earlier stages; writing the card again moves nothing."""
    _, ck = deep_from_small(cards, tmp_path)          # stages 1-2

    make_config(tmp_path, "deep-run2", init=str(ck))              # stage 3: from the shipped weights
    old_run = make_run(tmp_path, "deep-run2", first_time=3.0, iters=60)
    milestone = make_milestone(tmp_path, "deep-run2", 60, log_from=old_run if with_log else None)
    (tmp_path / "runs" / "deep-run2" / "log.csv").unlink()        # that machine is gone
    make_run(tmp_path, "deep-run3", first_time=2.0, iters=40)     # stage 4: from the milestone
    make_config(tmp_path, "deep-run3", init=str(milestone))
    meta = json.loads((ck / "config.json").read_text())
    meta["train"].update(name="deep-run3", iter=40)
    (ck / "config.json").write_text(json.dumps(meta))
    write(cards, tmp_path, ck, runs={"deep-run3": None})
    text = (ck / "MODEL_CARD.md").read_text()
    assert "| 1. `small`'s own training" in text and "| 2. `deep-run`, warm start from" in text
    assert f"| 3. `deep-run2`, warm restart from the committed `{ck}` |" in text
    assert f"| 60 (to its milestone `{milestone}`) |" in text
    assert (f"| 4. `deep-run3`, warm restart from stage 3's committed milestone `{milestone}` "
            "(weights only: Adam's moments fresh) |") in text
    stages = json.loads((ck / "lineage.json").read_text())["stages"]
    assert [s.get("run") for s in stages] == ["small-run", "deep-run", "deep-run2", "deep-run3"]
    if with_log:
        assert "| 0 min | 19.60 dB @ 60 |" in text
        assert "`training_log_stage2.csv` (stage 2), `training_log_stage3.csv` (stage 3), `training_log.csv` (stage 4)" in text
        assert (ck / "training_log_stage3.csv").read_text() == (milestone / "training_log.csv").read_text()
    else:
        assert "| unknown (no log kept) | unknown (no log kept) |" in text
        assert "`training_log_stage2.csv` (stage 2), `training_log.csv` (stage 4) beside the weights; stage 3 kept none" in text
    lineage = (ck / "lineage.json").read_text()
    write(cards, tmp_path, ck, runs={"deep-run3": None})          # the same inputs again: nothing moves
    assert (ck / "MODEL_CARD.md").read_text() == text and (ck / "lineage.json").read_text() == lineage


def test_a_milestone_of_the_shipped_run_past_the_shipped_weights_continues_the_lineage(cards, tmp_path):
    """The shipped weights came from run 3 (itself a warm restart of run 2's milestone) at 40; run 3
    went on to 80, whose milestone was committed with its log, and run 4 warm-restarted from that
    on another machine and shipped. Run 3 is then one stage, to its milestone at 80 (not the 40
    the card recorded before), between run 2 and run 4."""
    _, ck = deep_from_small(cards, tmp_path)
    make_config(tmp_path, "deep-run2", init=str(ck))
    old_run = make_run(tmp_path, "deep-run2", first_time=3.0, iters=60)
    milestone2 = make_milestone(tmp_path, "deep-run2", 60, log_from=old_run)
    (tmp_path / "runs" / "deep-run2" / "log.csv").unlink()
    run3 = make_run(tmp_path, "deep-run3", first_time=2.0, iters=80)
    make_config(tmp_path, "deep-run3", init=str(milestone2))
    meta = json.loads((ck / "config.json").read_text())
    meta["train"].update(name="deep-run3", iter=40)
    (ck / "config.json").write_text(json.dumps(meta))
    write(cards, tmp_path, ck, runs={"deep-run3": None})          # shipped: run 3 at 40
    milestone3 = make_milestone(tmp_path, "deep-run3", 80, log_from=run3)
    (run3 / "log.csv").unlink()                                    # that machine is gone too
    make_run(tmp_path, "deep-run4", first_time=1.5, iters=40)
    make_config(tmp_path, "deep-run4", init=str(milestone3))
    meta["train"].update(name="deep-run4", iter=40)
    (ck / "config.json").write_text(json.dumps(meta))
    write(cards, tmp_path, ck, runs={"deep-run4": None})
    text = (ck / "MODEL_CARD.md").read_text()
    stages = json.loads((ck / "lineage.json").read_text())["stages"]
    assert [s.get("run") for s in stages] == ["small-run", "deep-run", "deep-run2", "deep-run3", "deep-run4"]
    assert stages[3]["iterations"] == 80 and stages[3]["milestone"] == str(milestone3)
    assert f"| 80 (to its milestone `{milestone3}`) |" in text
    assert (f"| 5. `deep-run4`, warm restart from stage 4's committed milestone `{milestone3}` "
            "(weights only: Adam's moments fresh) |") in text
    assert (ck / "training_log_stage4.csv").read_text() == (milestone3 / "training_log.csv").read_text()
    assert (ck / "training_log_stage3.csv").read_text() == (milestone2 / "training_log.csv").read_text()


def test_warm_restart_without_a_recorded_earlier_run_is_a_one_line_error(cards, tmp_path):
    ck = make_checkpoint(tmp_path, "deep", "deep-run")
    fake_eval(ck, 2, 1.0)
    make_run(tmp_path, "deep-run")
    make_config(tmp_path, "deep-run", init=str(ck))
    with pytest.raises(SystemExit, match="records no earlier run"):
        write(cards, tmp_path, ck, runs={"deep-run": None})


def test_default_sentence_follows_the_constant(cards, tmp_path, monkeypatch):
    ck = make_checkpoint(tmp_path, "deep", "deep-run")
    fake_eval(ck, 2, 1.0)
    make_run(tmp_path, "deep-run")
    make_config(tmp_path, "deep-run", ds=None)
    write(cards, tmp_path, ck, runs={"deep-run": None})
    text = (ck / "MODEL_CARD.md").read_text()
    assert ("This is\nnot the checkpoint the InterIR Explorer app and `interir restore` use by default "
            f"(that is `checkpoints/{weights_mod.DEFAULT_CHECKPOINT}`)") in text
    assert "| deep supervision | none" in text
    monkeypatch.setattr(weights_mod, "DEFAULT_CHECKPOINT", "deep")
    write(cards, tmp_path, ck, runs={"deep-run": None})
    text = (ck / "MODEL_CARD.md").read_text()
    assert "This is\nthe checkpoint the InterIR Explorer app and `interir restore` use by default.\n" in text


def twin_pair(tmp_path: Path, run: str = "m-run", twin_run: str = "m-stdconv-run") -> tuple[Path, Path, dict]:
    """Checkpoints m and m-stdconv (evaluated against each other) with their runs and configs."""
    ck = make_checkpoint(tmp_path, "m", run)
    twin = make_checkpoint(tmp_path, "m-stdconv", twin_run, conv_type="standard")
    fake_eval(ck, 2, 1.0, twins={"m-stdconv": 0.25})
    fake_eval(twin, 2, 0.5, twins={"m": -0.25})
    for name in (run, twin_run):
        make_run(tmp_path, name)
        make_config(tmp_path, name)
    return ck, twin, {run: None, twin_run: None}


def test_twin_pair_and_a_twin_found_on_disk(cards, tmp_path):
    ck, twin, runs = twin_pair(tmp_path)
    write(cards, tmp_path, ck, twin, runs=runs)
    text = (ck / "MODEL_CARD.md").read_text()
    assert "ΔPSNR = this model − `m-stdconv`" in text and "| +0.25 | +0.25 |" in text
    assert "| m-stdconv | 0.450 ± 0.050 |" in text and "No standard-conv twin" not in text
    assert "both twins alike" in text
    twin_text = (twin / "MODEL_CARD.md").read_text()
    assert "the ablation twin of `m`" in twin_text and "| -0.25 |" in twin_text
    write(cards, tmp_path, ck, runs=runs)  # the twin beside it on disk, not among the arguments
    assert (ck / "MODEL_CARD.md").read_text() == text
    data = json.loads((ck / "eval.json").read_text())
    del data["delta_psnr_vs"]
    (ck / "eval.json").write_text(json.dumps(data))
    with pytest.raises(SystemExit, match="no ΔPSNR against its twin m-stdconv; evaluate the pair together"):
        write(cards, tmp_path, ck, runs=runs)


def test_an_explainable_model_started_from_its_twin_says_so_in_both_cards(cards, tmp_path):
    ck, twin, runs = twin_pair(tmp_path)
    write(cards, tmp_path, ck, twin, runs=runs)
    assert "One start" not in (ck / "MODEL_CARD.md").read_text()
    make_config(tmp_path, "m-run", init=str(twin))             # m's run began from m-stdconv
    write(cards, tmp_path, ck, twin, runs=runs)
    for path in (ck, twin):
        text = (path / "MODEL_CARD.md").read_text()
        assert "**One start:** `m` began from `m-stdconv`'s weights" in text
        assert "init_standard_as_uniform" in text


def test_iterations_trained_on_a_gpu_are_in_the_card_and_the_lineage(cards, tmp_path):
    ck = make_checkpoint(tmp_path, "deep", "deep-run", iteration=30)
    fake_eval(ck, 2, 1.0)
    make_run(tmp_path, "deep-run")
    make_config(tmp_path, "deep-run")
    args = ["--runs", str(tmp_path / "runs"), "--config", f"deep-run={tmp_path / 'configs/deep-run.yaml'}"]
    for bad, msg in (("deep-run=20", "expected NAME=FROM-TO"), ("deep-run=20-10", "FROM < TO"),
                     ("deep-run=30-40", "before the GPU span")):
        with pytest.raises(SystemExit, match=msg):
            cards.main(args + ["--gpu", bad, str(ck)])
    cards.main(args + ["--gpu", "deep-run=10-60", str(ck)])  # the run went on past the weights
    text = (ck / "MODEL_CARD.md").read_text()
    assert "iterations 10–30 of this run on one NVIDIA H200 GPU" in text and "no GPU" not in text
    assert json.loads((ck / "lineage.json").read_text())["stages"][-1]["gpu_iters"] == [10, 30]


def test_run_folder_override_and_missing_run(cards, tmp_path):
    ck = make_checkpoint(tmp_path, "deep", "sweep")
    fake_eval(ck, 2, 1.0)
    make_config(tmp_path, "sweep")
    with pytest.raises(SystemExit, match=r"log.csv not found \(train.name 'sweep'; point --run sweep="):
        write(cards, tmp_path, ck, runs={"sweep": None})
    elsewhere = make_run(tmp_path / "other", "anything")
    cards.main(["--run", f"sweep={elsewhere}", "--config", f"sweep={tmp_path / 'configs/sweep.yaml'}", str(ck)])
    assert (ck / "training_log.csv").read_text() == (elsewhere / "log.csv").read_text()
    with pytest.raises(SystemExit, match="--run: expected NAME=PATH"):
        cards.main(["--run", "nonsense", str(ck)])


def test_last_weights_hinges_and_a_residual_that_starts_above_one(cards, tmp_path):
    torch.manual_seed(0)
    model = interir.build_model("tiny", n_blocks=2, channels=4, norm_scale="learned")
    ck = interir.save_pretrained(model, tmp_path / "checkpoints" / "deep",
                                 extra={"train": {"name": "deep-run", "iter": 40}})  # not the best (20)
    res = fake_eval(ck, 2, 1.0)
    res["iterations"]["all_pairs"]["residual"] = [1.06, 0.95, 0.89]
    (ck / "eval.json").write_text(to_json(res))
    run = make_run(tmp_path, "deep-run")
    (run / "log.csv").write_text((run / "log.csv").read_text().replace("average,19.400", "average,19.100"))
    cfg = make_config(tmp_path, "deep-run", n=2)
    cfg.write_text(cfg.read_text().replace("deep_supervision: linear}",
                                           "deep_supervision: linear, monotone: 0.02, descent: 0.3}"))
    write(cards, tmp_path, ck, runs={"deep-run": None})
    text = (ck / "MODEL_CARD.md").read_text()
    assert ("this checkpoint is the weights after iteration 40 (validation PSNR 19.10 dB); best "
            "validation PSNR 19.20 dB at iteration 20 |") in text
    assert "this checkpoint is that one" not in text
    assert ("| descent hinges (our option, docs/design.md) | monotone hinge 0.02 per dB of PSNR lost "
            "between exits, descent hinge 0.3 on a rise of the relative data residual |") in text
    assert "At k = 0 the mean residual is 1.06 ≥ 1" in text and "(0.890)" in text
    # the model issue's targets, each met or missed with its number
    assert "- at least +7.5 dB over the input on average: **missed** (+6.00 dB)" in text
    assert "- relative data residual decreasing over k on at least 90 % of the pairs: **missed** (25 %)" in text
    assert "- output better than the degraded input on every combination: met" in text


def test_run_info_and_log_stop_at_the_shipped_weights_iteration(tmp_path, cards):
    """A run that went on after the shipped weights (iteration 40 of a log up to 60): the card's
    numbers and the copied log end at 40, the wall time is read from the log there."""
    run = make_run(tmp_path, "long", iters=60)
    info = cards.run_info(run, 40)
    assert info["iterations"] == 40 and info["best_iter"] == 40 and info["wall_s"] == 6.0
    assert info["best_val_psnr"] == 19.4 and [it for it, _ in info["val_curve"]] == [20, 40]
    assert cards.run_info(run)["iterations"] == 60 and cards.run_info(run)["wall_s"] == 69.0
    log = cards.log_upto(run, 40)
    assert log.splitlines()[0].startswith("kind,iter") and log.splitlines()[-1].startswith("val,40,")


def test_stage_only_records_an_intermediate_stage_before_the_fine_tune(cards, tmp_path):
    """--stage-only: stage 1 of a two-stage recipe is recorded without an eval or a card; the
    fine-tune's card then lists both stages, and the stage-1 log is kept under its stage name."""
    origin = make_checkpoint(tmp_path, "small", "small-run", n=1, norm_scale="unit")
    fake_eval(origin, 1, 0.0)
    ck = make_checkpoint(tmp_path, "deep", "deep-run", n=2)
    make_run(tmp_path, "deep-run", iters=40)
    make_config(tmp_path, "deep-run", init=str(origin))
    cards.main(["--stage-only", "--runs", str(tmp_path / "runs"), "--config",
                f"deep-run={tmp_path / 'configs/deep-run.yaml'}", str(ck)])
    assert not (ck / "MODEL_CARD.md").exists() and not (ck / "eval.json").exists()
    stages = json.loads((ck / "lineage.json").read_text())["stages"]
    assert [s.get("run") for s in stages] == ["small-run", "deep-run"] and stages[1]["iterations"] == 40
    stage1_log = (ck / "training_log.csv").read_text()
    # the fine-tune: its weights replace the checkpoint's, then evaluation and the card
    make_checkpoint(tmp_path, "deep", "deep-tune", n=2)
    fake_eval(ck, 2, 1.0)
    make_run(tmp_path, "deep-tune", first_time=2.5, iters=40)
    make_config(tmp_path, "deep-tune", init=str(ck))
    write(cards, tmp_path, ck, runs={"deep-tune": None})
    text = (ck / "MODEL_CARD.md").read_text()
    assert "| 2. `deep-run`, warm start from" in text
    assert f"| 3. `deep-tune`, warm restart from the committed `{ck}` |" in text
    assert (ck / "training_log_stage2.csv").read_text() == stage1_log


def _recipe_of(cards, tmp_path, train: dict | None = None, scheduler: dict | None = None,
               training: dict | None = None) -> str:
    """The card's recipe line for a small config (batch 8 × 96², Adam 1e-4 cosine to 1e-7);
    ``train`` adds to datasets.train, ``training`` to the train section."""
    cfg = {"seed": 1, "datasets": {"train": {"batch_size": 8, "patch_size": 96, **(train or {})}},
           "train": {"optimizer": {"type": "Adam", "lr": 1e-4},
                     "scheduler": {"eta_min": 1e-7, **(scheduler or {})},
                     "loss": {"l1": 1.0}, "grad_clip": 1.0, **(training or {})}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return cards.recipe(str(path))


def test_recipe_names_the_degradation_crop_when_pairs_are_windows_of_it(cards, tmp_path):
    assert "batch 8 × 96²," in _recipe_of(cards, tmp_path)
    assert "batch 8 × 96² (windows of degraded 256² crops)" in _recipe_of(
        cards, tmp_path, train={"degrade_size": 256})


def test_recipe_names_a_warmup(cards, tmp_path):
    assert "lr 0.0001 cosine to 1e-07" in _recipe_of(cards, tmp_path)
    assert ("lr 0.0001 after a linear warm-up over 500 iterations, cosine to 1e-07"
            in _recipe_of(cards, tmp_path, scheduler={"warmup_iter": 500}))


def test_recipe_names_a_moving_average_of_the_weights(cards, tmp_path):
    assert "moving average" not in _recipe_of(cards, tmp_path)
    assert ("a moving average of the weights (decay 0.999) kept beside them"
            in _recipe_of(cards, tmp_path, training={"ema_decay": 0.999}))


def test_a_moving_average_says_it_is_not_the_weights(cards, tmp_path):
    ck = make_checkpoint(tmp_path, "avg", "avg-run", n=2)
    train = json.loads((ck / "config.json").read_text())
    train["train"] = {"name": "avg-run", "iter": 20, "ema_decay": 0.999}   # as ema-<iter>/ records it
    (ck / "config.json").write_text(json.dumps(train))
    fake_eval(ck, 2, 1.0)
    make_run(tmp_path, "avg-run")
    make_config(tmp_path, "avg-run", n=2)
    write(cards, tmp_path, ck, runs={"avg-run": None})
    text = (ck / "MODEL_CARD.md").read_text()
    assert ("this checkpoint is the moving average of the weights (decay 0.999) after iteration 20, "
            "not the weights themselves; the weights' best validation PSNR 19.20 dB at iteration 20"
            in text)


def test_an_average_of_milestones_names_them(cards, tmp_path):
    ck = make_checkpoint(tmp_path, "avg", "avg-run", n=2)
    cfg = json.loads((ck / "config.json").read_text())
    cfg["train"] = {"name": "avg-run", "iter": 40, "average_of": [20, 40]}   # as average_weights.py
    (ck / "config.json").write_text(json.dumps(cfg))
    fake_eval(ck, 2, 1.0)
    make_run(tmp_path, "avg-run")
    make_config(tmp_path, "avg-run", n=2)
    write(cards, tmp_path, ck, runs={"avg-run": None})
    assert ("this checkpoint is the average of the weights at iterations 20, 40 (equal weights, "
            "`scripts/average_weights.py`), not a single iterate" in (ck / "MODEL_CARD.md").read_text())


def test_twins_not_in_step_say_so_in_both_cards(cards, tmp_path):
    ck = make_checkpoint(tmp_path, "m", "m-run")
    twin = make_checkpoint(tmp_path, "m-stdconv", "m-stdconv-run", conv_type="standard", iteration=20)
    fake_eval(ck, 2, 1.0, twins={"m-stdconv": 0.25})
    fake_eval(twin, 2, 0.5, twins={"m": -0.25})
    make_run(tmp_path, "m-run")
    make_run(tmp_path, "m-stdconv-run", iters=20)
    for run in ("m-run", "m-stdconv-run"):
        make_config(tmp_path, run)
    write(cards, tmp_path, ck, twin, runs={"m-run": None, "m-stdconv-run": None})
    text, twin_text = (ck / "MODEL_CARD.md").read_text(), (twin / "MODEL_CARD.md").read_text()
    assert "**Not in step:** these weights are from iteration 40" in text and "`m-stdconv`'s from iteration 20" in text
    assert "**Not in step:** these weights are from iteration 20" in twin_text and "mixes the convolution" in twin_text
    assert "the ablation twin of `m`: same code, recipe, seed and data" in twin_text
    assert "both twins alike" not in text and "both twins alike" not in twin_text


def test_twins_at_the_same_iteration_of_different_stages_are_not_in_step(cards, tmp_path):
    """The model went on to a new stage (its own run) while its twin is still in the previous
    one: the same iteration number is not "in step"."""
    ck, twin, runs = twin_pair(tmp_path, run="m-run2")
    write(cards, tmp_path, ck, twin, runs=runs)
    text, twin_text = (ck / "MODEL_CARD.md").read_text(), (twin / "MODEL_CARD.md").read_text()
    assert "**Not in step:** these weights are from iteration 40 of the training stage `m-run2`" in text
    assert "`m-stdconv`'s from iteration 40 of `m-stdconv-run`, another stage" in text
    assert "the ablation twin of `m`: same code, recipe, seed and data" in twin_text
    assert "both twins alike" not in text and "both twins alike" not in twin_text


def test_a_branched_run_is_two_stages_and_stays_so(cards, tmp_path):
    """A run copied from another run's state at iteration 40 and resumed with its own config
    (`--branch`): the parent's stage ends at the branch point, the branch is its own stage, and
    a later card of the same run, without the option, writes the same lineage."""
    ck = make_checkpoint(tmp_path, "deep", "deep-run")
    fake_eval(ck, 2, 1.0)
    make_run(tmp_path, "deep-run", iters=40)
    make_config(tmp_path, "deep-run")
    write(cards, tmp_path, ck, runs={"deep-run": None})

    def ship(run: str, it: int) -> None:
        meta = json.loads((ck / "config.json").read_text())
        meta["train"].update(name=run, iter=it)
        (ck / "config.json").write_text(json.dumps(meta))

    make_run(tmp_path, "deep-long", first_time=2.5, iters=60)   # a warm restart, shipped at 60
    make_config(tmp_path, "deep-long", init=str(ck))
    ship("deep-long", 60)
    write(cards, tmp_path, ck, runs={"deep-long": None})
    make_run(tmp_path, "deep-wide", first_time=2.5, iters=80)   # its copy at 40, resumed to 80
    make_config(tmp_path, "deep-wide", init=str(ck))
    ship("deep-wide", 80)
    args = ["--runs", str(tmp_path / "runs"), "--config", f"deep-wide={tmp_path / 'configs/deep-wide.yaml'}"]
    with pytest.raises(SystemExit, match="RUN=PARENT@ITERATION"):
        cards.main(args + ["--branch", "deep-wide=deep-long", str(ck)])
    cards.main(args + ["--branch", "deep-wide=deep-long@40", str(ck)])
    stages = json.loads((ck / "lineage.json").read_text())["stages"]
    assert [s["run"] for s in stages] == ["deep-run", "deep-long", "deep-wide"]
    assert [s["iterations"] for s in stages] == [40, 40, 40]
    assert (stages[1]["best_iter"], stages[2]["best_iter"]) == (40, 80)
    assert stages[1]["wall_s"] == 10.0 and stages[2]["wall_s"] == 80 * 0.25 + 60 - 10.0
    assert [s["log"] for s in stages] == ["training_log_stage1.csv", "training_log_stage2.csv", "training_log.csv"]
    long_log = (ck / "training_log_stage2.csv").read_text().splitlines()
    assert long_log[-1].split(",")[1] == "40" and "train,60," not in "".join(long_log)
    text = (ck / "MODEL_CARD.md").read_text()
    assert "| 3. `deep-wide`, branched from stage 2 at iteration 40 (a copy of its training state" in text
    assert f"| 2. `deep-long`, warm restart from the committed `{ck}` | `configs/deep-long.yaml` | 40 |" in text
    assert "the run `deep-long` stopped at 40 (`--stop-at 40`)" in text and "--run-dir RUNS/deep-wide --resume`" in text
    lineage = (ck / "lineage.json").read_text()
    cards.main(args + [str(ck)])  # no --branch: lineage.json remembers it
    assert (ck / "lineage.json").read_text() == lineage and (ck / "MODEL_CARD.md").read_text() == text
