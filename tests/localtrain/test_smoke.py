"""Tiny end-to-end training on synthetic data for every method, and the CLI."""
import json

import pytest
import torch
from typer.testing import CliRunner

from xlayer.localtrain import data as D
from xlayer.cli.cmd_localtrain import app
from xlayer.localtrain.methods import MethodConfig
from xlayer.localtrain.train import TrainConfig, train

SMALL = D.synthetic(n_train=64, n_test=32, channels=1, size=12, seed=0)


@pytest.mark.parametrize("method,p", [("backprop", 0), ("greedy", 0), ("dgl", 0), ("infopro", 0),
                                      ("infopro-contrast", 0), ("backlink", 1)])
def test_few_steps_each_method(method, p):
    cfg = TrainConfig("resnet8", MethodConfig(method, 2, p, split="even"), epochs=1, batch_size=16,
                      lr=0.05, train_batches=3)
    r = train(cfg, SMALL)
    e = r.epochs[0]
    assert e.train_loss == e.train_loss and e.train_loss > 0    # finite
    assert 0.0 <= e.test_acc <= 1.0


def test_training_learns_synthetic():
    ds = D.synthetic(n_train=256, n_test=128, channels=1, size=12, seed=0)
    cfg = TrainConfig("resnet8", MethodConfig("backlink", 2, 1, split="even"), epochs=3,
                      batch_size=32, lr=0.05)
    r = train(cfg, ds)
    assert r.final_test_acc > 0.3                                 # chance is 0.1


def test_interrupted_run_resumes_from_last_finished_epoch(tmp_path):
    cfg = TrainConfig("resnet8", MethodConfig("greedy", 2, split="even"), epochs=2, batch_size=16,
                      lr=0.05, train_batches=2)
    full = train(cfg, SMALL, tmp_path / "full")

    def stop(epoch, i, loss):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, SMALL, tmp_path / "part", progress=stop)
    saved = json.loads((tmp_path / "part" / "result.json").read_text())
    assert [e["epoch"] for e in saved["epochs"]] == [1]
    resumed = train(cfg, SMALL, tmp_path / "part", resume=True)
    assert len(resumed.epochs) == 2
    assert resumed.epochs[0].train_loss == full.epochs[0].train_loss
    assert resumed.epochs[1].train_loss == pytest.approx(full.epochs[1].train_loss, rel=1e-5)
    assert resumed.epochs[1].test_acc == pytest.approx(full.epochs[1].test_acc)


runner = CliRunner()


def test_cli_run_json(tmp_path):
    res = runner.invoke(app, ["run", "--dataset", "synthetic", "--net", "resnet8", "--split", "even",
                              "--methods", "greedy,backlink", "--K", "2", "--epochs", "1",
                              "--batch-size", "32", "--train-batches", "1", "--test-batches", "1",
                              "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [s["method"] for s in doc["summary"]] == ["greedy", "backlink"]
    assert (tmp_path / "summary.csv").exists() and (tmp_path / "test_acc.png").exists()


def test_cli_memory_and_pipeline(tmp_path):
    res = runner.invoke(app, ["memory", "--net", "resnet8", "--in-channels", "1", "--batch-size", "2",
                              "--K", "2", "--split", "even", "--out", str(tmp_path / "m"), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["rows"]
    assert {r["method"] for r in rows} == {"backprop", "greedy", "backlink"}
    res = runner.invoke(app, ["pipeline", "--net", "resnet8", "--in-channels", "1", "--K", "2",
                              "--split", "even", "--batch-size", "2", "--repeats", "1",
                              "--batches", "2", "--format", "svg", "--out", str(tmp_path / "p"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [r["method"] for r in doc["results"]] == ["backprop", "local", "backlink"]
    assert (tmp_path / "p" / "timeline.svg").exists()


@pytest.mark.parametrize("args,word", [
    (["run", "--methods", "backlnk", "--dataset", "synthetic"], "method"),
    (["run", "--methods", "greedy", "--K", "3", "--dataset", "synthetic"], "K"),
    (["run", "--methods", "backlink", "--K", "4", "--p", "9", "--dataset", "synthetic"], "p"),
    (["run", "--dataset", "fashion-mnist", "--data", "/nonexistent/folder"], "data"),
    (["memory", "--net", "resnet32", "--K", "5"], "K"),
    (["pipeline", "--net", "resnet32", "--K", "4", "--devices", "5"], "devices"),
])
def test_cli_bad_input_exits_2(args, word, tmp_path):
    res = runner.invoke(app, args + ["--out", str(tmp_path)])
    assert res.exit_code == 2
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {word}")
