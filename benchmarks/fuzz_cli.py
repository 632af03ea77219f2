"""Hostile input against every ``xlayer`` command, each run as a subprocess.

    .venv/bin/python benchmarks/fuzz_cli.py [--quick] [--jobs N] [--only CLASS] [--xlayer CMD] [--show CLASS|all]

The corpus (built here, into a temporary folder) covers: paths that are not files (missing,
empty string, a folder), files that are not text (binary, Latin-1, UTF-16, NUL bytes), YAML
that is malformed, deeply nested, a "billion laughs" bomb, recursive, with duplicate keys,
several documents or foreign tags; schema-level nonsense (a bool where a count goes, integers
too large for the model, measured values <= 0 / inf / NaN, training in int8, a prompt longer
than the model's maximum, ``scale_up_size`` above ``count``, ...); and the options of every
command (predict, validate, search, sweep, pareto, roofline, serve, energy, synth, scd
build/study, report, localtrain run/memory/pipeline, catalog, tech-study, study).

Each run is judged (20 s timeout each):

- ``traceback``: a Python traceback or an "internal error" line on stderr, or an exit status
  other than 0, 2 (bad input) and 130;
- ``hang``: still running after 20 s;
- ``flood``: more than 10 kB on stderr;
- ``nonsense accepted``: exit 0 on an input that must be refused;
- ``not one line``: refused (status 2) but stderr is not one line ``error: <field>: <value>
  is not valid; <why>`` (validate lists one line per file that does not load: those cases
  allow several ``error:`` lines).

It prints a table per class and exits 1 if any count is not zero.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "xlayer" / "examples" / "gpt3-175b-1024xa100.yaml"
INFER = ROOT / "xlayer" / "examples" / "llama2-70b-8xh100-fp8.yaml"
HF = ROOT / "tests" / "fixtures" / "hf" / "gpt2" / "config.json"
TIMEOUT_S = 20.0
FLOOD_BYTES = 10_000
LINE = re.compile(r"^error: .+: .* is not valid; .+$")


@dataclass
class Case:
    cls: str
    name: str
    args: list[str]
    must_refuse: bool = True       # exit 0 would be "nonsense accepted"
    many_lines: bool = False       # validate: one error line per file that fails
    quick: bool = False            # part of --quick
    must_say: str | None = None    # exit 0 allowed only when stdout names this (e.g. the bad field)


@dataclass
class Outcome:
    case: Case
    rc: int | None
    stderr: str
    seconds: float
    problems: list[str] = field(default_factory=list)


# ---- the corpus -------------------------------------------------------------------------------

def _dump(path: Path, data) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return str(path)


def _mut(base: dict, dotted: str, value):
    d = json.loads(json.dumps(base))
    cur = d
    parts = dotted.split(".")
    for p in parts[:-1]:
        if not isinstance(cur.get(p), dict):
            cur[p] = {}
        cur = cur[p]
    if value is _DEL:
        cur.pop(parts[-1], None)
    else:
        cur[parts[-1]] = value
    return d


_DEL = object()


def build_corpus(tmp: Path) -> list[Case]:
    train = yaml.safe_load(DEMO.read_text())
    infer = yaml.safe_load(INFER.read_text())
    cases: list[Case] = []

    def add(cls, name, args, **kw):
        cases.append(Case(cls, name, [str(a) for a in args], **kw))

    d = tmp / "files"
    d.mkdir()
    good = str(DEMO)
    goodi = str(INFER)
    folder = tmp / "a-folder"
    folder.mkdir()
    (folder / "not-a-case.txt").write_text("hello")
    empty_dir = tmp / "empty-folder"
    empty_dir.mkdir()

    # --- raw files -------------------------------------------------------------------------
    raw: dict[str, bytes] = {
        "empty.yaml": b"",
        "blank.yaml": b"   \n\n",
        "comment.yaml": b"# nothing here\n",
        "binary.yaml": bytes(range(256)) * 40,
        "nul.yaml": b"kind: training\x00\nmodel: {}\n",
        "latin1.yaml": "id: caf\xe9\nkind: training\n".encode("latin-1"),
        "utf16.yaml": "id: x\nkind: training\n".encode("utf-16"),
        "png.yaml": b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        "gzip.yaml": b"\x1f\x8b\x08\x00" + b"\xff" * 100,
        "malformed.yaml": b"kind: training\nmodel: [unclosed\n",
        "tabs.yaml": b"kind: training\n\tmodel: {}\n",
        "colon.yaml": b"kind: : :\n",
        "list.yaml": b"- kind: training\n- kind: inference\n",
        "scalar.yaml": b"42\n",
        "string.yaml": b"just a string\n",
        "multidoc.yaml": b"kind: training\n---\nkind: inference\n",
        "pytag.yaml": b"kind: !!python/object/apply:os.system ['echo pwned']\n",
        "pyname.yaml": b"kind: !!python/name:os.system\n",
        "unknown-tag.yaml": b"kind: !foo bar\n",
        "binary-tag.yaml": b"id: !!binary aGVsbG8=\nkind: training\n",
        "unhashable-key.yaml": b"? [a, b]\n: 1\n",
        "recursive.yaml": b"a: &a [*a]\n",
        "dup-top.yaml": DEMO.read_bytes() + b"\nkind: inference\n",
        "dup-nested.yaml": b"kind: training\nparallel:\n  tp: 8\n  tp: 4\n",
        "dup-model.yaml": DEMO.read_bytes().replace(b"model:\n", b"model:\n  layers: 1\n", 1),
        "deep-list.yaml": b"[" * 100_000 + b"]" * 100_000,
        "deep-map.yaml": b"a: " + b"{a: " * 50_000 + b"1" + b"}" * 50_000 + b"\n",
        "deep-block.yaml": "".join(f"{'  ' * i}k{i}:\n" for i in range(200)).encode() + b"  " * 200 + b"v\n",
        "deep-100.yaml": b"model: " + b"[" * 100 + b"]" * 100 + b"\n",
        "merge.yaml": b"base: &b {layers: 1}\nmodel:\n  <<: *b\n  <<: *b\n",
        "crlf.yaml": DEMO.read_bytes().replace(b"\n", b"\r\n"),
        "bom.yaml": b"\xef\xbb\xbf" + DEMO.read_bytes(),
        "long-line.yaml": b"id: " + b"x" * 2_000_000 + b"\nkind: training\n",
        "long-key.yaml": b"k" * 100_000 + b": 1\n",
        "many-keys.yaml": b"".join(b"k%d: %d\n" % (i, i) for i in range(50_000)),
        "control.yaml": b"id: \x07\x1b[31mred\nkind: training\n",
    }
    laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, c in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        laughs.append(f"{c}: &{c} [" + ",".join([f"*{prev}"] * 9) + "]")
    raw["bomb.yaml"] = ("\n".join(laughs) + "\n").encode()
    raw["bomb-in-case.yaml"] = DEMO.read_bytes() + ("\n" + "\n".join(laughs).replace("a: &a", "xa: &a")
                                                    .replace("\nb:", "\nxb:") + "\n").encode()
    raw["bomb-keys.yaml"] = (b"a: &a {x: 1, y: 1, z: 1}\n" +
                             b"".join(b"l%d: &l%d [%s]\n" % (i, i, b",".join([b"*" + (b"a" if i == 0 else b"l%d" % (i - 1))] * 10))
                                      for i in range(9)))
    raw["huge.yaml"] = b"# " + b"x" * (20 * 2 ** 20) + b"\n"
    for n, b in raw.items():
        (d / n).write_bytes(b)
    big_files = {"huge.yaml", "long-line.yaml", "many-keys.yaml", "deep-list.yaml", "deep-map.yaml"}
    quick_raw = {"empty.yaml", "binary.yaml", "latin1.yaml", "bomb.yaml", "dup-nested.yaml", "deep-list.yaml",
                 "malformed.yaml", "pytag.yaml", "recursive.yaml", "multidoc.yaml"}
    ok_raw = {"crlf.yaml", "bom.yaml"}     # valid cases written differently: may be accepted
    for n in raw:
        add("file: predict", n, ["predict", d / n], quick=n in quick_raw, must_refuse=n not in ok_raw)
    for n in ("empty.yaml", "binary.yaml", "bomb.yaml", "dup-nested.yaml", "deep-list.yaml", "latin1.yaml"):
        add("file: other commands", f"search {n}", ["search", d / n], quick=n == "bomb.yaml")
        add("file: other commands", f"energy {n}", ["energy", d / n])
        add("file: other commands", f"sweep {n}", ["sweep", d / n, "--out", tmp / f"sw-{n}", "--json"],
            quick=n == "bomb.yaml")
    for n in ("binary.yaml", "bomb.yaml", "deep-list.yaml", "dup-nested.yaml"):
        add("file: other commands", f"roofline {n}", ["roofline", d / n, "--out", tmp / "r.svg"])
        add("file: other commands", f"serve {n}", ["serve", d / n])
        add("file: other commands", f"report {n}", ["report", d / n, "--out", tmp / "r.html"])
        add("file: other commands", f"scd build {n}", ["scd", "build", d / n], quick=n == "bomb.yaml")
        add("file: other commands", f"energy --scd {n}", ["energy", good, "--scd", d / n])

    # --- paths that are not files ----------------------------------------------------------
    for cmd in (["predict"], ["search"], ["energy"], ["serve"], ["roofline", "{}", "--out", tmp / "x.svg"],
                ["report", "{}", "--out", tmp / "x.html"], ["sweep"], ["scd", "build"]):
        for label, p in (("missing", tmp / "no-such-file.yaml"), ("empty string", ""), ("folder", folder),
                         ("dev-null", "/dev/null")):
            args = [a if a != "{}" else p for a in cmd] if "{}" in cmd else [*cmd, p]
            add("path", f"{cmd[0]} {' '.join(cmd[1:2]) if cmd[0] == 'scd' else ''}{label}".strip(), args,
                quick=label in ("empty string", "folder"))
    add("path", "validate missing", ["validate", tmp / "nope"], quick=True)
    add("path", "validate empty string", ["validate", ""], quick=True)
    add("path", "validate empty folder", ["validate", empty_dir], quick=True)
    add("path", "validate folder without yaml", ["validate", folder])
    add("path", "pareto missing", ["pareto", tmp / "nope"])
    add("path", "pareto a file", ["pareto", good])
    add("path", "pareto empty string", ["pareto", ""])
    add("path", "pareto empty folder", ["pareto", empty_dir])

    # validate: several bad files beside a good one (one line per bad file, status 2)
    mixed = tmp / "mixed"
    mixed.mkdir()
    shutil.copy(DEMO, mixed / "good.yaml")
    for n in ("binary.yaml", "bomb.yaml", "dup-nested.yaml", "empty.yaml"):
        shutil.copy(d / n, mixed / n)
    add("validate", "mixed folder", ["validate", mixed], many_lines=True, quick=True)
    add("validate", "mixed folder --json", ["validate", mixed, "--json"], many_lines=True)
    add("validate", "good + missing", ["validate", good, tmp / "missing.yaml"])
    add("validate", "good + binary", ["validate", good, d / "binary.yaml"], many_lines=True)

    # --- schema-level nonsense -------------------------------------------------------------
    schema = [
        ("model.layers", True), ("model.layers", 10 ** 30), ("model.layers", -1), ("model.layers", 0),
        ("model.layers", 1.5), ("model.layers", "96"), ("model.layers", None), ("model.layers", [96]),
        ("model.hidden", 0), ("model.hidden", 10 ** 30), ("model.heads", 7), ("model.heads", True),
        ("model.kv_heads", 1000), ("model.vocab", 0), ("model.seq_len", 0), ("model.seq_len", 10 ** 30),
        ("model.ffn_hidden", -5), ("model.activation", "sigmoid"), ("model", "gpt"), ("model", None),
        ("system.count", 0), ("system.count", -8), ("system.count", 10 ** 30), ("system.count", 1e30),
        ("system.count", True), ("system.count", float("inf")), ("system.scale_up_size", 4096),
        ("system.accelerator", "TPU-v99"), ("system.accelerator", "x" * 100_000), ("system.accelerator", None),
        ("system.accelerator", 42), ("system.overrides", {"hbm_capacity_gib": -1}),
        ("system.overrides", {"hbm_bandwidth_bytes_per_s": float("nan")}),
        ("system.overrides", {"warp_drive": 1}),
        ("batch.global", 10 ** 30), ("batch.global", 0), ("batch.global", True), ("batch.global", 1.5),
        ("batch.micro", 10 ** 30), ("batch.micro", -1), ("batch", None),
        ("parallel.tp", 0), ("parallel.tp", 10 ** 30), ("parallel.tp", True), ("parallel.pp", -1),
        ("parallel.zero", 7), ("parallel.recompute", "sometimes"), ("parallel.vp", 10 ** 30),
        ("parallel.warp", 1),
        ("precision", "int8"), ("precision", "int4"), ("precision", "fp64"), ("precision", 16),
        ("measured", {"iteration_time_s": -1}), ("measured", {"iteration_time_s": 0}),
        ("measured", {"iteration_time_s": float("nan")}), ("measured", {"iteration_time_s": float("inf")}),
        ("measured", {"iteration_time_s": "fast"}), ("measured", {"speed_of_light": 1}), ("measured", [1, 2]),
        ("kind", "train"), ("kind", None), ("id", ["a"]), ("notes", {"a": 1}),
        ("software", {"framework": ["x"]}), ("software", {"mode": "warp"}), ("software", "megatron"),
        ("parallel.zero", float("inf")), ("parallel.zero", float("nan")), ("parallel.tp", float("nan")),
        ("batch.micro", float("inf")), ("parallel.sp", "yes"), ("model.heads", float("nan")),
        ("system.scale_up_size", float("inf")), ("parallel.zero", -1), ("parallel.cp", float("-inf")),
    ]
    quick_schema = {"model.layers=True", "batch.global=1000000000000000000000000000000",
                    "measured={'iteration_time_s': -1}", "measured={'iteration_time_s': nan}",
                    "precision=int8", "system.scale_up_size=4096", "system.count=1000000000000000000000000000000"}
    for i, (path, value) in enumerate(schema):
        label = f"{path}={value!r}"[:70]
        f = _dump(d / f"schema-{i}.yaml", _mut(train, path, value))
        add("schema", label, ["predict", f], quick=label in quick_schema,
            must_refuse=(path, value) != ("parallel.sp", "yes"))   # 'yes' read as true, as YAML 1.1 does
    # MoE, expert parallelism, MLA, sliding windows on a training case (issue 14): each a
    # one-line refusal naming the field, through predict and search
    moe_base = _mut(_mut(train, "model.moe", {"experts": 64, "top_k": 2, "ffn_hidden": 4096,
                                              "shared_experts": 0, "dense_layers": 0}), "parallel.ep", 8)
    moe_schema = [
        ("parallel.ep", 3), ("parallel.ep", 0), ("parallel.ep", 10 ** 30), ("parallel.etp", 7),
        ("parallel.etp", -1), ("model.moe.top_k", 65), ("model.moe.top_k", 0), ("model.moe.top_k", 1.5),
        ("model.moe.experts", "many"), ("model.moe.experts", 10 ** 30), ("model.moe.experts", 63),
        ("model.moe.ffn_hidden", 0), ("model.moe.shared_experts", -1), ("model.moe.dense_layers", 97),
        ("model.moe.dense_layers", -2), ("model.moe", [64, 2]), ("model.moe.imbalance", 0.5),
        ("model.moe.imbalance", float("inf")), ("model.moe.imbalance", "high"), ("model.moe.imbalance", 10 ** 9),
        ("model.head_dim", 0), ("model.head_dim", 64.5), ("model.mtp_layers", -1),
        ("model.sliding_window", {"size": 4096, "layers": 48}), ("model.sliding_window", {"size": 0, "layers": 1}),
        ("model.sliding_window", {"size": 128, "layers": 97}),
        ("model.mla", {"kv_lora_rank": -512, "q_lora_rank": 1536, "qk_rope_head_dim": 64,
                       "qk_nope_head_dim": 128, "v_head_dim": 128}),
        ("model.mla", {"kv_lora_rank": 512, "q_lora_rank": 1536, "qk_rope_head_dim": "64",
                       "qk_nope_head_dim": 128, "v_head_dim": 128}),
    ]
    for i, (path, value) in enumerate(moe_schema):
        label = f"{path}={value!r}"[:70]
        f = _dump(d / f"moe-{i}.yaml", _mut(moe_base, path, value))
        add("schema: moe", label, ["predict", f], quick=i == 0)
        if path.startswith("parallel.") or path == "model.moe.top_k":
            # search ranks every layout whatever the case states; a stated layout that is not
            # valid is reported by field beside the ranking (JSON: case_layout.error)
            stated = path.startswith("parallel.")
            add("schema: moe", f"search {label}", ["search", f, "--json"], must_refuse=not stated,
                must_say=path if stated else None)
    # Megatron-Core module recompute (parallel.recompute as '+'-joined modules or a list): a
    # module the model lacks, an unknown or repeated module, a list of non-strings, an empty
    # string; each refused naming parallel.recompute, through predict and search
    rc_schema = [("moe_act", train), ("mla_up_proj", moe_base), ("layernorm+layernorm", train),
                 ("layernorm+attention", moe_base), (["layernorm", 3], moe_base), ([], train), ("", train),
                 ("+", moe_base), ({"modules": ["layernorm"]}, moe_base), ("moe_act+" * 400, moe_base)]
    for i, (value, base) in enumerate(rc_schema):
        label = f"parallel.recompute={value!r}"[:70]
        f = _dump(d / f"rc-{i}.yaml", _mut(base, "parallel.recompute", value))
        add("schema: recompute modules", label, ["predict", f], quick=i == 0)
        add("schema: recompute modules", f"search {label}", ["search", f, "--json"], must_refuse=False,
            must_say="parallel.recompute")
    # Megatron-Core MoE overlap switches: on a dense model, with ep = 1, both at once, with full
    # recompute, with pp > 1 and no interleaving, shared-expert overlap without shared experts,
    # and non-boolean values; each refused naming its field
    ov_schema = [(train, {"ep_overlap": True}), (_mut(moe_base, "parallel.ep", 1), {"ep_overlap": True}),
                 (moe_base, {"ep_overlap": True, "shared_expert_overlap": True}),
                 (moe_base, {"ep_overlap": True, "recompute": "full"}),
                 (moe_base, {"shared_expert_overlap": True}), (moe_base, {"ep_overlap": "yes please"}),
                 (moe_base, {"shared_expert_overlap": 2})]
    for i, (base, fields) in enumerate(ov_schema):
        case = base
        for k, v in fields.items():
            case = _mut(case, f"parallel.{k}", v)
        label = f"parallel {fields!r}"[:70]
        f = _dump(d / f"overlap-{i}.yaml", case)
        add("schema: moe overlap", label, ["predict", f], quick=i == 0)
    # the same through search (the count and batch bounds matter most there)
    for path, value in (("system.count", 10 ** 30), ("batch.global", 10 ** 30), ("system.count", 2 ** 40),
                        ("model.layers", 10 ** 30), ("parallel.tp", None)):
        f = _dump(d / f"search-{path}-{value}.yaml", _mut(train, path, value))
        add("schema: search", f"search {path}={value!r}", ["search", f, "--json"], quick=path == "system.count",
            must_refuse=value is not None)
    # inference schema
    ischema = [("request.prompt_len", 10 ** 6), ("request.prompt_len", 10 ** 30), ("request.prompt_len", -1),
               ("request.batch", 0), ("request.batch", 10 ** 30), ("request.output_len", -5),
               ("request.context_len", 10 ** 30), ("request.context_len", -1), ("request.context_len", 2.5),
               ("kv_precision", "fp3"), ("request", None),
               ("request.mode", "turbo"), ("system.scale_up_size", 64),
               # a feature inference does not model yet is refused by name, never silently dropped;
               # latent attention with an empty latent is refused by the schema
               ("model.mla", {"kv_lora_rank": 0, "q_lora_rank": 1536, "qk_rope_head_dim": 64,
                              "qk_nope_head_dim": 128, "v_head_dim": 128}),
               ("model.sliding_window", {"size": 10 ** 9, "layers": 1}),
               ("model.sliding_window", {"size": 512, "layers": 10 ** 6})]
    for i, (path, value) in enumerate(ischema):
        f = _dump(d / f"ischema-{i}.yaml", _mut(infer, path, value))
        add("schema: inference", f"{path}={value!r}", ["predict", f], quick=i == 0)
    # a plain-PyTorch CUDA-graph decode of a Llama-style model runs over a static KV cache, and
    # says so (a graph cannot replay DynamicCache's growing torch.cat)
    llama = _mut(_mut(_mut(infer, "model.activation", "swiglu"), "software", {"framework": "pytorch",
                                                                              "mode": "cuda-graph"}),
                 "request.context_len", 4096)
    f = _dump(d / "igraph-static-kv.yaml", llama)
    add("schema: inference", "pytorch cuda-graph decode: static KV cache", ["predict", f], must_refuse=False,
        must_say="written in place")
    # expert parallelism in a static batch: over the tensor-parallel ranks (ep = tp) it runs and
    # says so; any other ep, or ep on a dense model, is refused by name
    moe_inf = _mut(_mut(infer, "model.moe", {"experts": 64, "top_k": 2, "ffn_hidden": 4096}), "parallel.ep",
                   infer["parallel"]["tp"])
    f = _dump(d / "iep-ok.yaml", moe_inf)
    add("schema: inference", "parallel.ep = tp on an MoE model", ["predict", f], must_refuse=False,
        must_say="parallel.ep=")
    for i, (path, value) in enumerate((("parallel.ep", 3), ("parallel.ep", 10 ** 9), ("parallel.ep", 0))):
        f = _dump(d / f"iep-bad-{i}.yaml", _mut(moe_inf, path, value))
        add("schema: inference", f"MoE {path}={value!r}", ["predict", f])
    f = _dump(d / "iep-dense.yaml", _mut(infer, "parallel.ep", infer["parallel"]["tp"]))
    add("schema: inference", "parallel.ep on a dense model", ["predict", f])
    # MTP layers at inference: predicted without them (no speculative decoding stated), and said
    f = _dump(d / "ischema-mtp.yaml", _mut(infer, "model.mtp_layers", 1))
    add("schema: inference", "model.mtp_layers=1 (not run, said)", ["predict", f], must_refuse=False,
        must_say="model.mtp_layers=1 not run")
    f = _dump(d / "id-markup.yaml", _mut(train, "id", "[/bold] [red"))
    add("output", "id with rich markup", ["predict", f], must_refuse=False, quick=True)
    f = _dump(d / "id-newline.yaml", _mut(train, "id", "a\nb\n" * 3))
    add("output", "id with newlines", ["predict", f], must_refuse=False)
    f = _dump(d / "id-unicode.yaml", _mut(train, "id", "\u202e\u0000\ud7ff" + "é" * 50))
    add("output", "id with control characters", ["predict", f], must_refuse=False)

    # --- options of every command ----------------------------------------------------------
    opt = "options"
    add(opt, "search --pareto-plot x.xyz", ["search", good, "--pareto-plot", tmp / "x.xyz"], quick=True)
    add(opt, "search --pareto-plot folder", ["search", good, "--pareto-plot", folder])
    add(opt, "search --pareto-plot in missing folder", ["search", good, "--pareto-plot", tmp / "no" / "x.png"])
    add(opt, "search --top 0", ["search", good, "--top", "0"])
    add(opt, "search --top -3", ["search", good, "--top", "-3"])
    add(opt, "search --top 1e99", ["search", good, "--top", "1e99"])
    add(opt, "search --rank speed", ["search", good, "--rank", "speed"])
    add(opt, "search --max-vp 0", ["search", good, "--max-vp", "0"])
    add(opt, "search --max-cp nan", ["search", good, "--max-cp", "nan"])
    add(opt, "search --hf-config missing", ["search", good, "--hf-config", tmp / "none.json"])
    add(opt, "search on an inference case", ["search", goodi])
    add(opt, "predict --hf-config binary", ["predict", good, "--hf-config", d / "binary.yaml"], quick=True)
    add(opt, "predict --hf-config folder", ["predict", good, "--hf-config", folder])
    add(opt, "predict --hf-config list", ["predict", good, "--hf-config", _json(d / "list.json", [1, 2])])
    add(opt, "predict --hf-config model_type", ["predict", good, "--hf-config",
                                                _json(d / "mt.json", {"model_type": "bert"})])
    add(opt, "predict --hf-config empty string", ["predict", good, "--hf-config", ""])
    add(opt, "predict --bogus", ["predict", good, "--bogus"], quick=True)
    add(opt, "predict two cases", ["predict", good, good])
    add(opt, "predict no case", ["predict"])
    add(opt, "unknown command", ["frobnicate"])
    add(opt, "serve --max-batch 0", ["serve", goodi, "--max-batch", "0"], quick=True)
    add(opt, "serve --max-batch -1", ["serve", goodi, "--max-batch", "-1"])
    add(opt, "serve --max-batch 10**30", ["serve", goodi, "--max-batch", str(10 ** 30)])
    add(opt, "serve --input-len 0", ["serve", goodi, "--input-len", "0"])
    add(opt, "serve --output-len -4", ["serve", goodi, "--output-len", "-4"])
    add(opt, "serve --input-len 10**12", ["serve", goodi, "--input-len", str(10 ** 12)])
    add(opt, "serve --tpot-slo nan", ["serve", goodi, "--tpot-slo", "nan"])
    add(opt, "serve --tpot-slo -1", ["serve", goodi, "--tpot-slo", "-1"])
    add(opt, "serve --tpot-slo inf", ["serve", goodi, "--tpot-slo", "inf"])
    add(opt, "serve a training case", ["serve", good])
    add(opt, "roofline --out x.png", ["roofline", goodi, "--out", tmp / "x.png"])
    add(opt, "roofline --out folder", ["roofline", goodi, "--out", folder])
    add(opt, "roofline a training case", ["roofline", good, "--out", tmp / "t.svg"])
    add(opt, "roofline no --out", ["roofline", goodi])
    add(opt, "energy inference case", ["energy", goodi])
    add(opt, "report --out folder", ["report", good, "--out", folder])
    add(opt, "report --out x.exe", ["report", good, "--out", tmp / "x.exe"])
    add(opt, "report --kind bogus", ["report", good, "--kind", "bogus", "--out", tmp / "k.html"])
    add(opt, "report --top 0", ["report", good, "--kind", "search", "--top", "0", "--out", tmp / "k.html"])
    add(opt, "report --hf-config binary", ["report", good, "--hf-config", d / "binary.yaml", "--out",
                                           tmp / "k.html"])
    add(opt, "report validate mixed", ["report", mixed, "--kind", "validate", "--out", tmp / "m.html"])
    add(opt, "report empty string", ["report", "", "--out", tmp / "e.html"])
    add(opt, "catalog extra arg", ["catalog", "H100"])
    add(opt, "catalog --jsn", ["catalog", "--jsn"])
    for a in (["--node", "N99"], ["--area-mm2", "0"], ["--area-mm2", "nan"], ["--area-mm2", "-800"],
              ["--power-w", "inf"], ["--power-w", "0"], ["--domain", "0"], ["--domain", "-8"],
              ["--l2-mib", "-1"], ["--hbm-mm", "0"], ["--perimeter-mm", "nan"], ["--memory", "HBM9"],
              ["--scale-up", "carrier pigeon"], ["--hbm-gb-per-stack", "-24"], ["--area-mm2", "1e300"]):
        base = {"--node": "N5", "--area-mm2": "814", "--power-w": "700"}
        base[a[0]] = a[1]
        args = ["synth"] + [x for kv in base.items() for x in kv]
        add(opt, f"synth {' '.join(a)}", args, quick=a == ["--area-mm2", "nan"])
    add(opt, "synth missing --node", ["synth", "--area-mm2", "814", "--power-w", "700"])
    add(opt, "scd build --boards 0", ["scd", "build", "--boards", "0"], quick=True)
    add(opt, "scd build --boards -5", ["scd", "build", "--boards", "-5"])
    add(opt, "scd build --boards 10**12", ["scd", "build", "--boards", str(10 ** 12)])
    add(opt, "scd study --out a file", ["scd", "study", "--out", good])
    add(opt, "scd study --doc x.exe", ["scd", "study", "--out", tmp / "scd", "--doc", tmp / "x.exe"])
    add(opt, "scd study --spec binary", ["scd", "study", "--out", tmp / "scd", "--doc", tmp / "s.md", "--spec",
                                         d / "binary.yaml"])
    add(opt, "scd study --spec bomb", ["scd", "study", "--out", tmp / "scd", "--doc", tmp / "s.md", "--spec",
                                       d / "bomb.yaml"])
    add(opt, "scd no subcommand", ["scd"], must_refuse=False)
    add(opt, "tech-study a100-gb200 --out a file", ["tech-study", "a100-gb200", "--out", good])
    add(opt, "tech-study nodes --out a file", ["tech-study", "nodes", "--out", good])
    add(opt, "tech-study bogus", ["tech-study", "bogus"])
    add(opt, "study dram --memory-csv missing", ["study", "dram", "--memory-csv", tmp / "none.csv"])
    add(opt, "study dram --memory-csv binary", ["study", "dram", "--memory-csv", d / "binary.yaml",
                                                "--out-dir", tmp / "dram"])
    add(opt, "study dram --stacks 0", ["study", "dram", "--stacks", "0", "--out-dir", tmp / "dram"])
    add(opt, "study dram --out-dir a file", ["study", "dram", "--out-dir", good])

    # sweep
    sweep_ok = tmp / "sweep-ok.yaml"
    sweep_ok.write_text(yaml.safe_dump({"name": "t", "base": train, "parameters": {"system.count": [1024]}}))
    add(opt, "sweep --backend spark", ["sweep", sweep_ok, "--backend", "spark", "--out", tmp / "sw1"])
    add(opt, "sweep --workers 0", ["sweep", sweep_ok, "--workers", "0", "--out", tmp / "sw2"])
    add(opt, "sweep --out a file", ["sweep", sweep_ok, "--out", good])
    add(opt, "sweep --plot x.xyz", ["sweep", sweep_ok, "--plot", tmp / "x.xyz", "--out", tmp / "sw3"])
    add(opt, "sweep --address without ray", ["sweep", sweep_ok, "--address", "1.2.3.4:6379", "--out", tmp / "sw4"])
    add("ray", "sweep ray unreachable address", ["sweep", sweep_ok, "--backend", "ray", "--address",
                                                 "127.0.0.1:1", "--out", tmp / "sw5"], quick=True)
    add("ray", "sweep ray blackhole address", ["sweep", sweep_ok, "--backend", "ray", "--address",
                                               "10.255.255.1:6379", "--out", tmp / "sw6"])
    add("ray", "sweep ray bad port", ["sweep", sweep_ok, "--backend", "ray", "--address", "host:99999",
                                      "--out", tmp / "sw7"])
    add("ray", "sweep ray garbage address", ["sweep", sweep_ok, "--backend", "ray", "--address", "::::",
                                             "--out", tmp / "sw8"])
    add("ray", "sweep ray empty address", ["sweep", sweep_ok, "--backend", "ray", "--address", "",
                                           "--out", tmp / "sw9"])
    for i, sw in enumerate([
        {"name": "x", "base": train, "parameters": {"system.count": [10 ** 30]}},
        {"name": "x", "base": train, "parameters": {"system.count": list(range(1, 5000))}, "mode": "grid"},
        {"name": "x", "base": train, "parameters": {"model.layers": [True]}},
        {"name": "x", "base": str(d / "binary.yaml"), "parameters": {}},
        {"name": "x", "base": str(d / "bomb.yaml"), "parameters": {}},
        {"name": "x", "base": train, "mode": "random", "samples": 10 ** 12,
         "parameters": {"hardware.hbm_capacity_gib": {"low": 16, "high": 80}}},
        {"name": "x", "base": train, "parameters": {"hardware.hbm_capacity_gib": {"low": 80, "high": 16}}},
        {"name": "x", "base": train, "chunk_size": 0, "parameters": {}},
        {"name": "x", "base": train, "parameters": {"a.b.c.d": [1]}},
        {"name": "x", "base": train, "parameters": {"system.count": []}},
        {"name": "x", "base": train, "parameters": {f"model.layers": [1, 2] * 10}, "mode": "grid",
         "samples": 3},
        {"name": "x" * 10_000, "base": train, "parameters": {"system.count": [-1]}},
    ]):
        f = _dump(d / f"sweep-{i}.yaml", sw)
        add("sweep file", f"sweep file #{i}", ["sweep", f, "--out", tmp / f"swf{i}", "--json", "--workers", "1"],
            quick=i in (0, 3))
    add(opt, "pareto --x bogus", ["pareto", _sweep_dir(tmp), "--x", "bogus"])
    add(opt, "pareto --plot x.xyz", ["pareto", _sweep_dir(tmp), "--plot", tmp / "x.xyz"])

    # localtrain
    lt = ["localtrain", "run", "--dataset", "synthetic", "--net", "resnet8", "--split", "even", "--methods", "greedy",
          "--K", "2", "--epochs", "1", "--batch-size", "16", "--train-batches", "1", "--test-batches", "1",
          "--out", str(tmp / "lt")]

    def lt_with(**kw):
        a = list(lt)
        for k, v in kw.items():
            flag = "--" + k.replace("_", "-")
            if flag in a:
                a[a.index(flag) + 1] = v
            else:
                a += [flag, v]
        return a

    for kw, q in (({"epochs": "0"}, True), ({"epochs": "-1"}, False), ({"epochs": str(10 ** 12)}, False),
                  ({"batch_size": "0"}, True), ({"batch_size": "-4"}, True), ({"batch_size": str(10 ** 9)}, False),
                  ({"lr": "-1"}, True), ({"lr": "nan"}, True), ({"lr": "inf"}, False), ({"lr": "0"}, False),
                  ({"threads": "-1"}, True), ({"threads": "0"}, False), ({"K": ""}, True), ({"K": "0"}, False),
                  ({"K": "a,b"}, False), ({"K": "-2"}, False), ({"K": "100000"}, False),
                  ({"train_subset": "4"}, True), ({"train_subset": "0"}, False), ({"test_subset": "0"}, False),
                  ({"train_batches": "0"}, False), ({"test_batches": "-1"}, False), ({"warmup_epochs": "-1"}, False),
                  ({"warmup_epochs": "5"}, False), ({"seeds": ""}, False), ({"seeds": "-1"}, False),
                  ({"methods": ""}, False), ({"methods": "magic"}, False), ({"net": "resnet7"}, False),
                  ({"net": "resnet" + "9" * 12}, False), ({"net": "vgg16"}, False), ({"dataset": "imagenet"}, False),
                  ({"data": str(good)}, False), ({"data": ""}, False), ({"device": "tpu"}, False),
                  ({"p": "-1"}, False), ({"split": "weird"}, False), ({"head": "giant"}, False),
                  ({"out": str(good)}, False), ({"out": ""}, False)):
        add("localtrain", "run " + " ".join(f"--{k.replace('_', '-')} {v!r}"[:60] for k, v in kw.items()),
            lt_with(**kw), quick=q)
    mem = ["localtrain", "memory", "--net", "resnet8", "--methods", "backprop", "--K", "2", "--batch-size", "2",
           "--split", "even", "--out", str(tmp / "ltm")]
    for a in (["--batch-size", "0"], ["--batch-size", "-4"], ["--K", ""], ["--threads", "-1"], ["--in-channels", "7"],
              ["--methods", ""], ["--net", "resnet" + "9" * 12], ["--out", str(good)], ["--device", "quantum"]):
        args = list(mem)
        if a[0] in args:
            args[args.index(a[0]) + 1] = a[1]
        else:
            args += a
        add("localtrain", f"memory {' '.join(a)}"[:70], args, quick=a[0] == "--batch-size" and a[1] == "0")
    pipe = ["localtrain", "pipeline", "--net", "resnet8", "--K", "2", "--split", "even", "--batch-size", "2",
            "--repeats", "1", "--out", str(tmp / "ltp")]
    times_bad = [_json(d / "t1.json", [1, 2]), _json(d / "t2.json", {"fwd_s": [1]}),
                 _json(d / "t3.json", {"fwd_s": ["a", "b"], "bwd_s": [1, 1], "aux_fwd_s": [1, 1],
                                       "aux_bwd_s": [1, 1], "tail_bwd_s": [1, 1]}),
                 _json(d / "t4.json", {"fwd_s": [-1, 1], "bwd_s": [1, 1], "aux_fwd_s": [1, 1],
                                       "aux_bwd_s": [1, 1], "tail_bwd_s": [1, 1]}),
                 str(d / "binary.yaml"), str(d / "empty.yaml"), str(folder)]
    for i, t in enumerate(times_bad):
        add("localtrain", f"pipeline --times bad #{i}", [*pipe, "--times", t], quick=i == 0)
    for a in (["--K", "0"], ["--batches", "0"], ["--batch-size", "0"], ["--devices", "0"], ["--devices", "5"],
              ["--comm-s", "nan"], ["--comm-s", "-1"], ["--repeats", "0"], ["--stat", "mean"], ["--format", "bmp"],
              ["--threads", "-1"], ["--p", "-1"]):
        args = list(pipe)
        if a[0] in args:
            args[args.index(a[0]) + 1] = a[1]
        else:
            args += a
        add("localtrain", f"pipeline {' '.join(a)}", args, quick=a == ["--batches", "0"])
    add("localtrain", "localtrain bogus", ["localtrain", "bogus"])

    # serving: the SLO search, the simulator and the serving report (issue 16)
    srv = "serving"
    serving = _mut(infer, "request", {"mode": "serving", "prompt_len": 1000, "output_len": 1000, "requests": 500})
    goods = _dump(d / "serving-good.yaml", serving)
    for a, q in ((["--ttft", "1e-6"], True), (["--tpot", "1e-5"], True), (["--ttft", "1e-6", "--tpot", "1e-5"], False),
                 (["--ttft", "1", "--input-len", "4000", "--output-len", "200"], True),
                 (["--ttft", "1", "--input-len", "0"], False), (["--ttft", "1", "--output-len", "-3"], False),
                 (["--ttft", "1", "--output-len", str(10 ** 12)], False),
                 (["--gpus", "9"], True), (["--gpus", "0"], False), (["--gpus", "-8"], False),
                 (["--gpus", str(10 ** 30)], False), (["--gpus", "2.5"], False),
                 (["--ttft", "nan"], False), (["--ttft", "inf"], False), (["--ttft", "-1"], False),
                 (["--tpot", "0"], False), (["--tpot", "-inf"], False),
                 (["--ttft", "1", "--curve", str(tmp / "c.xyz")], False),
                 (["--ttft", "1", "--curve", str(folder)], False),
                 (["--simulate", "--input-len", "4000", "--output-len", "200"], False),
                 (["--simulate", "--input-len", "0"], False), (["--simulate", "--max-batch", "0"], False)):
        add(srv, "serve " + " ".join(a)[:60], ["serve", goods, *a], quick=q)
    sschema = [("request.prompt_len", 0), ("request.prompt_len", -5), ("request.output_len", 0),
               ("request.output_len", -1), ("request.prompt_len", 5000), ("request.requests", 0),
               ("request.requests", -1), ("request.requests", 10 ** 30), ("parallel.tp", 16),
               ("system.count", 4), ("parallel.pp", 3), ("request.kv_precision", "fp3")]
    for i, (path, value) in enumerate(sschema):
        f = _dump(d / f"sschema-{i}.yaml", _mut(serving, path, value))
        add(srv, f"serve {path}={value!r}", ["serve", f], quick=i in (0, 4, 8))
        if i < 5:
            add(srv, f"serve --ttft 1 {path}={value!r}", ["serve", f, "--ttft", "1"])
    # predict and validate of serving cases run the simulator: its request count is bounded
    for i, n in enumerate((10 ** 15, 10 ** 7)):
        f = _dump(d / f"sreq-{i}.yaml", _mut(serving, "request.requests", n))
        add(srv, f"predict serving requests={n}", ["predict", f])
        # validate lists it with predicted: null and the reason (exit 0 is right: the file loads)
        add(srv, f"validate serving requests={n}", ["validate", f], must_refuse=False)
    for a, q in ((["--tpot", "1e-5"], True), (["--gpus", "9"], False), (["--ttft", "nan"], False),
                 (["--gpus", "0"], False)):
        add(srv, "report --kind serving " + " ".join(a), ["report", "--kind", "serving", goods, *a, "--out",
                                                          tmp / "srv.html"], quick=q)
    add(srv, "report --kind serving a training case", ["report", "--kind", "serving", good, "--out",
                                                       tmp / "srv.html"])
    add(srv, "report --kind serving two cases", ["report", "--kind", "serving", goods, goods, "--out",
                                                 tmp / "srv.html"])
    # MoE serving on the measured fused-MoE table (xlayer.cost.measured_moe): hostile MoE fields
    # must still be refused by name; variants the table has no entry for (a modified part, an
    # unmeasured shape or format, another engine) fall back to the roofline and succeed
    moe_srv = dict(serving, model={"name": "moe", "layers": 48, "hidden": 2048, "heads": 32, "kv_heads": 4,
                                   "head_dim": 128, "ffn_hidden": 6144, "vocab": 151936, "activation": "swiglu",
                                   "moe": {"experts": 128, "top_k": 8, "ffn_hidden": 768}},
                   system={"accelerator": "B200-SXM-180GB", "count": 1}, parallel={"tp": 1, "pp": 1},
                   precision="nvfp4", software={"framework": "trt-llm", "version": "1.0"})
    _dump(d / "smoe-good.yaml", moe_srv)
    add("serving: moe table", "serve (measured table)", ["serve", str(d / "smoe-good.yaml")], must_refuse=False,
        must_say="trtllm-moe")
    for i, (path, value) in enumerate((("model.moe.top_k", 200), ("model.moe.experts", 0),
                                       ("model.moe.ffn_hidden", -768), ("parallel.ep", 3), ("parallel.ep", 10 ** 9),
                                       ("model.moe.top_k", 2.5))):
        f = _dump(d / f"smoe-{i}.yaml", _mut(moe_srv, path, value))
        add("serving: moe table", f"serve {path}={value!r}", ["serve", f], quick=i == 0)
    for i, (path, value) in enumerate((("system.overrides", {"power_limit_w": 700}), ("model.moe.ffn_hidden", 1000),
                                       ("precision", "fp8"), ("software", {"framework": "vllm"}))):
        f = _dump(d / f"smoe-ok-{i}.yaml", _mut(moe_srv, path, value))
        add("serving: moe table", f"serve (roofline fallback) {path}={value!r}"[:70], ["serve", f],
            must_refuse=False)
    add(srv, "report predict --ttft", ["report", good, "--ttft", "1", "--out", tmp / "srv.html"])
    add(srv, "report inference case as predict", ["report", goods, "--out", tmp / "srv.html"])
    # torchtitan (issue 15): per-op selective checkpointing is its default recompute; hostile
    # recompute values are refused by name, the stack's variants (modes, fp16, MoE) run
    tt = {"id": "tt", "kind": "training", "software": {"framework": "torchtitan"},
          "model": {"name": "tt", "layers": 8, "hidden": 2048, "heads": 16, "kv_heads": 4, "ffn_hidden": 5632,
                    "vocab": 32000, "seq_len": 2048, "activation": "swiglu"},
          "system": {"accelerator": "H100-SXM-80GB", "count": 8},
          "parallel": {"tp": 1, "pp": 1, "dp": 8}, "batch": {"global": 16, "micro": 2}, "precision": "bf16",
          "measured": {"iteration_time_s": 1.0}}
    f = _dump(d / "tt-good.yaml", tt)
    add("torchtitan", "predict (selective by default)", ["predict", f], must_refuse=False,
        must_say="rc=selective", quick=True)
    for i, (path, value) in enumerate((("parallel.recompute", "op"), ("parallel.recompute", "selective+selective"),
                                       ("parallel.recompute", ""), ("parallel.recompute", 2))):
        f = _dump(d / f"tt-bad-{i}.yaml", _mut(tt, path, value))
        add("torchtitan", f"predict {path}={value!r}", ["predict", f])
    for i, (path, value) in enumerate((("software", {"framework": "torchtitan", "mode": "compiled"}),
                                       ("software", {"framework": "torchtitan", "mode": "cuda-graph"}),
                                       ("precision", "fp16"), ("parallel.recompute", "full"),
                                       ("model.moe", {"experts": 8, "top_k": 2, "ffn_hidden": 1024}))):
        f = _dump(d / f"tt-ok-{i}.yaml", _mut(tt, path, value))
        add("torchtitan", f"predict {path}={value!r}"[:70], ["predict", f], must_refuse=False)
    f = _dump(d / "tt-search.yaml", _mut(tt, "parallel", {}))
    add("torchtitan", "search (selective enumerated)", ["search", f], must_refuse=False)
    return cases


def _json(path: Path, data) -> str:
    path.write_text(json.dumps(data))
    return str(path)


_SWEEP_DIR: list[Path] = []


def _sweep_dir(tmp: Path) -> Path:
    """A folder that looks like a sweep's output (one part file with a bogus schema)."""
    if not _SWEEP_DIR:
        p = tmp / "fake-sweep"
        p.mkdir()
        (p / "part-00000.parquet").write_bytes(b"PAR1" + b"\x00" * 32 + b"PAR1")
        _SWEEP_DIR.append(p)
    return _SWEEP_DIR[0]


# ---- running ----------------------------------------------------------------------------------

def run_one(c: Case, xlayer: list[str], cwd: Path) -> Outcome:
    t0 = time.perf_counter()
    env = {**os.environ, "COLUMNS": "80", "PYTHONWARNINGS": "ignore"}
    env.pop("XLAYER_TRACEBACK", None)
    try:
        p = subprocess.run([*xlayer, *c.args], capture_output=True, cwd=cwd, timeout=TIMEOUT_S, env=env,
                           stdin=subprocess.DEVNULL)
        rc, err = p.returncode, p.stderr.decode("utf-8", "replace")
        out = p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as exc:
        rc, err, out = None, (exc.stderr or b"").decode("utf-8", "replace"), ""
    o = Outcome(c, rc, err, time.perf_counter() - t0)
    if rc is None:
        o.problems.append("hang")
        return o
    if "Traceback (most recent call last)" in err or "error: internal error" in err or rc not in (0, 2, 130):
        o.problems.append("traceback")
    if len(err.encode()) > FLOOD_BYTES:
        o.problems.append("flood")
    if rc == 0 and (c.must_refuse or (c.must_say is not None and c.must_say not in out)):
        o.problems.append("nonsense accepted")
    if rc == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        if c.many_lines:
            ok = lines and all(LINE.match(ln) for ln in lines)
        else:
            ok = len(lines) == 1 and LINE.match(lines[0])
        if c.args[-1:] == ["scd"] or not c.args:
            ok = True
        if not ok:
            o.problems.append("not one line")
    return o


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a representative subset (a minute)")
    ap.add_argument("--jobs", type=int, default=max(1, min(8, (os.cpu_count() or 2))))
    ap.add_argument("--xlayer", default=str(ROOT / ".venv" / "bin" / "xlayer"),
                    help="the command to run (default .venv/bin/xlayer)")
    ap.add_argument("--show", default="", help="print stderr of failures of this class ('all' for every class)")
    ap.add_argument("--only", default="", help="run only the classes whose name contains this")
    ap.add_argument("--list", action="store_true", help="list the corpus and exit")
    a = ap.parse_args()
    xlayer = a.xlayer.split()
    if not Path(xlayer[0]).exists() and shutil.which(xlayer[0]) is None:
        print(f"error: --xlayer: {a.xlayer!r} is not valid; not found", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="xlayer-fuzz-"))
    try:
        cases = build_corpus(tmp)
        if a.quick:
            cases = [c for c in cases if c.quick]
        if a.only:
            cases = [c for c in cases if a.only in c.cls]
        if a.list:
            for c in cases:
                print(f"{c.cls:24s} {c.name}")
            print(f"{len(cases)} inputs")
            return 0
        cwd = tmp / "cwd"
        cwd.mkdir()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=a.jobs) as ex:
            outcomes = list(ex.map(lambda c: run_one(c, xlayer, cwd), cases))
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    kinds = ("traceback", "hang", "flood", "nonsense accepted", "not one line")
    classes = list(dict.fromkeys(o.case.cls for o in outcomes))
    head = f"{'class':24s} {'inputs':>6s} " + " ".join(f"{k:>17s}" for k in kinds)
    print(head)
    print("-" * len(head))
    totals = dict.fromkeys(kinds, 0)
    for cls in classes:
        rows = [o for o in outcomes if o.case.cls == cls]
        counts = {k: sum(k in o.problems for o in rows) for k in kinds}
        for k in kinds:
            totals[k] += counts[k]
        print(f"{cls:24s} {len(rows):6d} " + " ".join(f"{counts[k]:17d}" for k in kinds))
    print("-" * len(head))
    print(f"{'all':24s} {len(outcomes):6d} " + " ".join(f"{totals[k]:17d}" for k in kinds))
    slowest = max(outcomes, key=lambda o: o.seconds)
    print(f"\n{len(outcomes)} inputs in {wall:.0f} s ({a.jobs} at a time); slowest {slowest.seconds:.1f} s: "
          f"{slowest.case.name}")
    bad = [o for o in outcomes if o.problems]
    for o in bad:
        show = a.show == "all" or a.show == o.case.cls
        tail = o.stderr.strip().splitlines()[-1][:300] if o.stderr.strip() else ""
        print(f"FAIL [{', '.join(o.problems)}] {o.case.cls} / {o.case.name}: rc={o.rc} {tail}")
        if show:
            print("   args:", " ".join(o.case.args)[:300])
            print("   " + o.stderr[-2000:].replace("\n", "\n   "))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
