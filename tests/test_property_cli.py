"""Property: whatever document a user hands the CLI, the only outcomes are a result (exit 0) or
an input error (exit 2 and one line ``error: ...`` on stderr; ``validate`` may add its summary
line after the line of the file that failed). Any other exception, exit status, a multi-line
or flooding message, or a hang (over ``HANG_S``) fails.

Two kinds of input, each fed in-process (typer's CliRunner on ``xlayer.cli.main.app``) to one
of the entry points ``predict``, ``search``, ``validate``, ``serve``, ``energy``:

* arbitrary YAML-shaped documents: random nesting of mappings and lists, every scalar type
  (null, bool, int up to 10**40, float with nan/inf, unicode text), random keys mixed with the
  case format's own; plus raw bytes (binary, non-UTF-8);
* a valid case (training, local-learning training, inference) mutated field by field: one to
  three fields each replaced by null, a wrong type, a huge integer, a negative, a string, a
  list, or deleted.

Bounded: ``max_examples`` about 150 per property, no deadline; the suite runs in well under a
minute. A failure prints hypothesis's smallest failing document and the traceback.
"""
from __future__ import annotations

import copy
import math
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "xlayer" / "examples"
COMMANDS = ("predict", "search", "validate", "serve", "energy")
HANG_S = 20.0
MAX_ERROR_CHARS = 2000  # one line: the value is cut (to 200 characters), never a flood

TRAINING = {"id": "prop-small", "kind": "training",
            "model": {"name": "gpt-small", "layers": 8, "hidden": 1024, "heads": 16, "ffn_hidden": 4096,
                      "vocab": 32000, "seq_len": 1024, "activation": "gelu"},
            "system": {"accelerator": "A100-SXM-40GB", "count": 8, "scale_up_size": 8},
            "parallel": {"tp": 2, "pp": 2, "dp": 2, "cp": 1, "vp": 1, "sp": True, "recompute": "selective",
                         "zero": 1},
            "batch": {"global": 16, "micro": 2}, "precision": "bf16",
            "measured": {"iteration_time_s": 0.5}}


def _example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text())


def _local_case() -> dict[str, Any]:
    d = _example("gpt3-175b-local-8stages.yaml")
    d["measured"] = {"iteration_time_s": 14.0}
    return d


def _inference_case() -> dict[str, Any]:
    d = _example("llama2-70b-8xh100-fp8.yaml")
    d["measured"] = {"decode_step_time_s": 0.01}
    return d


MOE = {"id": "prop-moe", "kind": "training", "software": {"framework": "megatron-bridge", "version": "26.04"},
       "model": {"name": "moe-small", "layers": 4, "hidden": 512, "heads": 8, "kv_heads": 8, "ffn_hidden": 1024,
                 "vocab": 32000, "seq_len": 1024, "activation": "swiglu", "mtp_layers": 1,
                 "moe": {"experts": 8, "top_k": 2, "ffn_hidden": 256, "shared_experts": 1, "dense_layers": 1},
                 "mla": {"q_lora_rank": 128, "kv_lora_rank": 64, "qk_nope_head_dim": 64, "qk_rope_head_dim": 32,
                         "v_head_dim": 64},
                 "sliding_window": {"size": 128, "layers": 2}},
       "system": {"accelerator": "H100-SXM-80GB", "count": 4, "scale_up_size": 8},
       "parallel": {"tp": 1, "pp": 1, "dp": 4, "ep": 2, "etp": None, "zero": None, "recompute": None},
       "batch": {"global": 16, "micro": None}, "precision": "FP8-CS",
       "measured": {"iteration_time_s": 0.2}}
SERVING = {"id": "prop-serving", "kind": "inference", "software": {"framework": "trt-llm", "version": "1.0"},
           "model": {"name": "llama-small", "layers": 4, "hidden": 1024, "heads": 8, "kv_heads": 4,
                     "ffn_hidden": 2816, "vocab": 32000, "activation": "swiglu"},
           "system": {"accelerator": "H100-SXM-80GB", "count": 1, "scale_up_size": 8},
           "parallel": {"tp": 1, "pp": 1}, "precision": "fp8",
           "request": {"mode": "serving", "prompt_len": 128, "output_len": 64, "requests": 64, "batch": None,
                       "kv_precision": None},
           "measured": {"output_tokens_per_s_per_gpu": 5000.0}}
# latent attention, experts and sliding windows at inference (static batch and serving)
MLA_INFER = {"id": "prop-mla-infer", "kind": "inference", "software": {"framework": "vllm"},
             "model": {**{k: v for k, v in MOE["model"].items() if k != "mtp_layers"}},
             "system": {"accelerator": "H200-SXM-141GB", "count": 2, "scale_up_size": 8},
             "parallel": {"tp": 2, "pp": 1}, "precision": "fp8", "kv_precision": "fp8",
             "request": {"batch": 4, "prompt_len": 300, "context_len": 50, "output_len": 20},
             "measured": {"decode_step_time_s": 0.01}}
MLA_SERVING = {**SERVING, "id": "prop-mla-serving", "model": MLA_INFER["model"]}
BASES = {"training": TRAINING, "local": _local_case(), "inference": _inference_case(), "moe": MOE,
         "serving": SERVING, "mla-inference": MLA_INFER, "mla-serving": MLA_SERVING}
CASE_KEYS = sorted({k for b in BASES.values() for k in b} |
                   {k for b in BASES.values() for v in b.values() if isinstance(v, dict) for k in v} |
                   {"software", "moe", "mla", "ep", "etp", "head_dim", "sliding_window", "overrides", "mode"})


# ---- running one document ---------------------------------------------------------------------

class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"no answer within {HANG_S} s")


def run_cli(args: list[str]):
    from typer.testing import CliRunner

    from xlayer.cli.main import app
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_S)
    try:
        return CliRunner().invoke(app, args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check_outcome(command: str, path: Path, json_out: bool) -> None:
    """Run ``xlayer <command> <path>``; fail unless it is a result or a one-line input error."""
    args = [command, str(path)]
    if command == "search":
        args += ["--top", "1"]
    if json_out:
        args.append("--json")
    r = run_cli(args)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception.with_traceback(r.exc_info[2])
    assert r.exit_code in (0, 2), f"exit {r.exit_code}: stdout={r.stdout[-500:]!r} stderr={r.stderr[-500:]!r}"
    if r.exit_code == 2:
        err = r.stderr
        # validate lists each file that failed to load, then one summary line (issue 12): for one
        # file, at most two lines, each an input error
        most = 2 if command == "validate" else 1
        lines = err.split("\n")
        assert err.endswith("\n") and 1 <= len(lines) - 1 <= most, f"more than {most} line(s): {err[:500]!r}"
        for line in lines[:-1]:
            assert line.startswith("error: "), f"not an input error line: {line[:500]!r}"
        assert len(err) <= MAX_ERROR_CHARS * most, f"{len(err)} characters on stderr: {err[:300]!r}..."


def write_doc(tmp: Path, doc: Any) -> Path:
    p = tmp / "case.yaml"
    if isinstance(doc, bytes):
        p.write_bytes(doc)
    else:
        p.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return p


# ---- strategies -------------------------------------------------------------------------------

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)
scalars = (st.none() | st.booleans() | st.integers(min_value=-(10 ** 40), max_value=10 ** 40) |
           st.integers(min_value=-3, max_value=100) |
           st.floats(allow_nan=True, allow_infinity=True) | text |
           st.sampled_from(["training", "inference", "bf16", "fp8", "nvfp4", "A100-SXM-80GB", "H100-SXM-80GB",
                            "local", "full", "selective", "", "0", "1e30", "null"]))
keys = st.sampled_from(CASE_KEYS) | text
documents = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) |
                         st.dictionaries(keys, kids, max_size=6), max_leaves=25)
# documents that look like cases at the top (so the loader is walked past its first check)
case_shaped = st.fixed_dictionaries(
    {"kind": st.sampled_from(["training", "inference"]) | scalars},
    optional={"id": scalars, "model": documents, "system": documents, "parallel": documents, "batch": documents,
              "request": documents, "precision": scalars, "measured": documents, "software": documents})
raw_bytes = st.binary(max_size=200) | st.just(b"\xff\xfe\x00bad") | st.just(b"a: &a [*a]\n") | \
    st.just(b"k: 1\nk: 2\n") | st.just(("[" * 5000).encode())


def _paths(d: Any, prefix: tuple = ()) -> list[tuple]:
    out = []
    if isinstance(d, dict):
        for k, v in d.items():
            out.append(prefix + (k,))
            out += _paths(v, prefix + (k,))
    return out


MUTATIONS = ("delete", "null", "wrong_type", "huge", "negative", "zero", "string", "list", "bool", "float",
             "nan", "inf", "empty_dict", "unicode", "max_count", "big", "long_string", "float_int", "fraction",
             "tiny", "double")


def _wrong_type(v: Any) -> Any:
    if isinstance(v, bool):
        return "yes please"
    if isinstance(v, (int, float)):
        return {"value": v}
    if isinstance(v, str):
        return 12345
    if isinstance(v, dict):
        return [v]
    return "x"


def mutate(doc: dict, path: tuple, how: str) -> None:
    parent = doc
    for k in path[:-1]:
        parent = parent.get(k) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            return  # an earlier mutation removed or replaced this branch
    key = path[-1]
    if key not in parent:
        return
    v = parent[key]
    if how == "delete":
        del parent[key]
        return
    if how in ("float_int", "double") and not (isinstance(v, (int, float)) and not isinstance(v, bool)):
        how = "float"
    parent[key] = {"null": None, "wrong_type": _wrong_type(v), "huge": 10 ** 30, "negative": -1, "zero": 0,
                   "string": "sixty-four", "list": [v, "a"], "bool": True, "float": 2.5, "nan": math.nan,
                   "inf": math.inf, "empty_dict": {}, "unicode": "H100\u2013SXM \U0001f525 \u202e",
                   # accepted-looking extremes: the largest count the format takes, big, long text
                   "max_count": 10 ** 15, "big": 2 ** 40, "long_string": "x" * 20000,
                   "float_int": float(v) if isinstance(v, (int, float)) else 2.5, "fraction": 0.5, "tiny": 1e-300,
                   "double": v * 2 if isinstance(v, (int, float)) else 2.5}[how]


@st.composite
def mutated_cases(draw) -> dict:
    name = draw(st.sampled_from(sorted(BASES)))
    doc = copy.deepcopy(BASES[name])
    paths = _paths(doc)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        mutate(doc, draw(st.sampled_from(paths)), draw(st.sampled_from(MUTATIONS)))
    return doc


def _with(name: str, path: str, value: Any) -> dict:
    """Base case ``name`` with the dotted ``path`` set to ``value`` (a regression example)."""
    doc = copy.deepcopy(BASES[name])
    *head, last = path.split(".")
    d = doc
    for k in head:
        d = d.setdefault(k, {})
    d[last] = value
    return doc


SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


# ---- the properties ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prop")


@SETTINGS
@given(doc=documents | case_shaped | raw_bytes, command=st.sampled_from(COMMANDS), json_out=st.booleans())
# inputs this property found (kept as explicit examples, so they are tried on every run)
@example(doc=b"\xd8", command="search", json_out=False)           # not UTF-8
@example(doc=b"\x1f", command="serve", json_out=False)            # a control character
@example(doc=b"[" * 5000, command="predict", json_out=False)       # deep nesting
def test_arbitrary_documents_give_a_result_or_an_input_error(workdir, doc, command, json_out):
    check_outcome(command, write_doc(workdir, doc), json_out)


@SETTINGS
@given(doc=mutated_cases(), command=st.sampled_from(COMMANDS), json_out=st.booleans())
# inputs this property found (kept as explicit examples, so they are tried on every run)
@example(doc=_with("training", "parallel.zero", math.inf), command="predict", json_out=False)
@example(doc=_with("training", "batch.global", 10 ** 30), command="predict", json_out=False)
@example(doc=_with("training", "model.layers", 10 ** 30), command="validate", json_out=False)
@example(doc=_with("training", "model.seq_len", 10 ** 30), command="search", json_out=False)
@example(doc=_with("local", "system.count", 10 ** 30), command="search", json_out=True)
@example(doc=_with("local", "system.count", 10 ** 7), command="search", json_out=False)
@example(doc=_with("local", "batch.global", 10 ** 12), command="search", json_out=False)
def test_mutated_cases_give_a_result_or_an_input_error(workdir, doc, command, json_out):
    check_outcome(command, write_doc(workdir, doc), json_out)


@pytest.mark.parametrize("name", sorted(BASES))
@pytest.mark.parametrize("command", COMMANDS)
def test_the_unmutated_bases_give_a_result_or_an_input_error(tmp_path, name, command):
    """The starting points themselves (a baseline for the mutations above)."""
    check_outcome(command, write_doc(tmp_path, BASES[name]), json_out=True)
