"""Hostile input, in process (``xlayer.cli.main.run``): exit status 2 and one line
``error: <field>: <value> is not valid; <why>`` — never a traceback, a hang or a flood.
The full corpus (several hundred inputs, each a subprocess) is ``benchmarks/fuzz_cli.py``."""
from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import pytest
import yaml

from xlayer.cli.main import run

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "xlayer" / "examples" / "gpt3-175b-1024xa100.yaml"
INFER = ROOT / "xlayer" / "examples" / "llama2-70b-8xh100-fp8.yaml"
HF_GPT2 = ROOT / "tests" / "fixtures" / "hf" / "gpt2" / "config.json"
LINE = re.compile(r"^error: .+: .* is not valid; .+$")

BOMB = "\n".join(['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'] +
                 [f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]" for p, c in zip("abcdefgh", "bcdefghi")]) + "\n"


def refused(capsys, *args, needles=(), lines=1) -> str:
    """Run the CLI in process; assert status 2 and ``lines`` error lines; return stderr."""
    rc = run([str(a) for a in args])
    err = capsys.readouterr().err
    got = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (rc, err[-2000:])
    assert "Traceback" not in err and len(err) < 10_000, err[-2000:]
    if lines == 1:
        assert len(got) == 1, err
    for ln in got:
        assert LINE.match(ln), ln
    for n in needles:
        assert n in err, err
    return err


@pytest.fixture
def files(tmp_path):
    raw = {
        "binary.yaml": bytes(range(256)) * 8,
        "latin1.yaml": "id: caf\xe9\nkind: training\n".encode("latin-1"),
        "deep.yaml": b"[" * 50_000 + b"]" * 50_000,
        "bomb.yaml": BOMB.encode(),
        "dup.yaml": b"kind: training\nparallel:\n  tp: 8\n  tp: 4\n",
        "recursive.yaml": b"a: &a [*a]\n",
        "pytag.yaml": b"kind: !!python/object/apply:os.system ['echo pwned']\n",
        "empty.yaml": b"",
    }
    for n, b in raw.items():
        (tmp_path / n).write_bytes(b)
    return tmp_path


@pytest.mark.parametrize("name,needle", [("binary.yaml", "not UTF-8"), ("latin1.yaml", "not UTF-8"),
                                         ("deep.yaml", "nest"), ("bomb.yaml", "YAML bomb"),
                                         ("dup.yaml", "'tp' is not valid; duplicate key"),
                                         ("recursive.yaml", "alias"), ("pytag.yaml", "malformed YAML"),
                                         ("empty.yaml", "mapping")])
def test_hostile_files(capsys, files, name, needle):
    t0 = time.perf_counter()
    refused(capsys, "predict", files / name, needles=(needle,))
    assert time.perf_counter() - t0 < 5.0


@pytest.mark.parametrize("path", ["", "."])
def test_not_a_file(capsys, path):
    refused(capsys, "predict", path, needles=("CASE",))


def test_usage_errors_are_one_line(capsys):
    refused(capsys, "predict", DEMO, "--bogus", needles=("--bogus",))
    refused(capsys, "search", DEMO, "--top", "0", needles=("--top",))


def test_serve_max_batch_zero(capsys):
    refused(capsys, "serve", INFER, "--max-batch", "0", needles=("--max-batch",))


def test_pareto_plot_extension_checked_before_the_search(capsys, tmp_path):
    t0 = time.perf_counter()
    refused(capsys, "search", DEMO, "--pareto-plot", tmp_path / "x.xyz", needles=("--pareto-plot", ".xyz"))
    assert time.perf_counter() - t0 < 2.0 and not (tmp_path / "x.xyz").exists()


def test_unreachable_ray_address_is_one_line_fast(capsys, tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"name": "s", "base": yaml.safe_load(DEMO.read_text()),
                                     "parameters": {"system.count": [1024]}}))
    t0 = time.perf_counter()
    refused(capsys, "sweep", sweep, "--backend", "ray", "--address", "127.0.0.1:1", "--out", tmp_path / "o")
    assert time.perf_counter() - t0 < 10.0


LT = ["localtrain", "run", "--dataset", "synthetic", "--net", "resnet8", "--split", "even", "--methods", "greedy",
      "--K", "2", "--epochs", "1", "--batch-size", "16", "--train-batches", "1", "--test-batches", "1"]


@pytest.mark.parametrize("opt,value", [("--epochs", "0"), ("--batch-size", "0"), ("--batch-size", "-4"),
                                       ("--lr", "-1"), ("--lr", "nan"), ("--threads", "-1"), ("--K", ""),
                                       ("--train-subset", "4")])
def test_localtrain_options(capsys, tmp_path, opt, value):
    args = LT + ["--out", str(tmp_path / "o")]
    if opt in args:
        args[args.index(opt) + 1] = value
    else:
        args += [opt, value]
    refused(capsys, *args, needles=(opt.lstrip("-"),))


def test_validate_lists_every_file_that_fails_and_exits_2(capsys, files, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "good.yaml").write_text(DEMO.read_text())
    for n in ("binary.yaml", "dup.yaml"):
        (mixed / n).write_bytes((files / n).read_bytes())
    rc = run(["validate", str(mixed), "--json"])
    cap = capsys.readouterr()
    assert rc == 2
    doc = json.loads(cap.out)                       # the others' results are still printed
    assert any(c["id"] == "demo-gpt3-175b-1024xa100" or "good" in str(c["id"]) for c in doc["cases"])
    lines = cap.err.strip().splitlines()
    assert any("binary.yaml" in ln for ln in lines) and any("dup.yaml" in ln for ln in lines)
    assert all(LINE.match(ln) for ln in lines), lines


def test_validate_empty_folder(capsys, tmp_path):
    refused(capsys, "validate", tmp_path, needles=("no *.yaml",))


def test_value_cut_to_200_characters():
    from xlayer.errors import InputError
    msg = str(InputError("model.name", "x" * 100_000, "too long"))
    assert len(msg) < 300 and "\n" not in msg
    assert "\n" not in str(InputError("f\nield", "a\nb", "why\nnot"))


def test_strict_json_helper():
    import numpy as np

    from xlayer.cli.common import dumps
    text = dumps({"a": float("nan"), "b": [float("inf"), -math.inf, np.float64("nan"), np.int64(3)], "c": 1.5})
    assert json.loads(text) == {"a": None, "b": [None, None, None, 3], "c": 1.5}


def test_tables_not_cut_when_not_a_terminal(capsys, tmp_path):
    long_id = "case-" + "x" * 300
    data = yaml.safe_load(DEMO.read_text())
    data["id"] = long_id
    p = tmp_path / "long.yaml"
    p.write_text(yaml.safe_dump(data))
    assert run(["predict", str(p)]) == 0
    out = capsys.readouterr().out
    assert long_id in out and "…" not in out


def test_hf_config_with_model_reduced_to_seq_len(capsys, tmp_path):
    data = yaml.safe_load(DEMO.read_text())
    data["model"] = {"seq_len": 1024}
    data["system"]["count"] = 8
    data["parallel"] = {"tp": 1, "pp": 1, "dp": 8}
    data["batch"] = {"global": 64, "micro": 1}
    p = tmp_path / "hf.yaml"
    p.write_text(yaml.safe_dump(data))
    assert run(["predict", str(p), "--hf-config", str(HF_GPT2), "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["iteration_time_s"] > 0
    refused(capsys, "predict", p)                      # without the config the model is incomplete


def test_resume_with_a_changed_configuration_refuses(tmp_path):
    from xlayer.errors import InputError
    from xlayer.localtrain import data as D
    from xlayer.localtrain.methods import MethodConfig
    from xlayer.localtrain.train import TrainConfig, train
    small = D.synthetic(n_train=32, n_test=16, channels=1, size=12, seed=0)
    cfg = TrainConfig("resnet8", MethodConfig("greedy", 2, split="even"), epochs=1, batch_size=16, lr=0.05,
                      train_batches=1, test_batches=1)
    first = train(cfg, small, tmp_path)
    again = train(cfg, small, tmp_path, resume=True)            # same configuration: the finished run
    assert again.epochs == first.epochs
    changed = TrainConfig("resnet8", MethodConfig("greedy", 2, split="even"), epochs=1, batch_size=16, lr=0.01,
                          train_batches=1, test_batches=1)
    with pytest.raises(InputError, match="lr"):
        train(changed, small, tmp_path, resume=True)
    other_data = D.synthetic(n_train=48, n_test=16, channels=1, size=12, seed=1)
    with pytest.raises(InputError, match="n_train|labels"):
        train(cfg, other_data, tmp_path, resume=True)


def test_times_fields_match_module_times():
    import dataclasses

    from xlayer.cli.cmd_localtrain import TIMES_FIELDS
    from xlayer.localtrain.measure import ModuleTimes
    assert tuple(f.name for f in dataclasses.fields(ModuleTimes)) == TIMES_FIELDS
