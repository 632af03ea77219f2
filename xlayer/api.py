"""The Python API: the same operations as the ``xlayer`` command, returning typed results
that turn into pandas DataFrames.

    import xlayer
    case = xlayer.load_case("case.yaml")                 # or a dict in the same format
    pred = xlayer.predict(case)                          # xlayer predict CASE.yaml
    pred.time_frame(); pred.memory_frame(); pred.ops_frame(); pred.to_frame()
    res = xlayer.validate(["../shared/validation"])      # xlayer validate PATH...
    res.to_frame(); res.summary_frame(); res.by_source_frame()
    xlayer.report(pred, "report.html")                   # xlayer report CASE.yaml --out ...
    srv = xlayer.serve(case, ttft=0.5, tpot=0.02)        # xlayer serve CASE.yaml --ttft 0.5 --tpot 0.02
    srv.best; srv.to_frame(); srv.curve_frame(); srv.breakdown_frame()
    xlayer.report(srv, "serving.html")                   # xlayer report --kind serving CASE.yaml ...

Errors are :class:`xlayer.errors.InputError` with the same one-line message the CLI prints.
pandas is imported only by the ``*_frame`` methods.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from xlayer.errors import InputError
from xlayer.prediction.training import TrainingPrediction
from xlayer.prediction.case import Case, case_from_dict
from xlayer.prediction.case import load_case as _load_case_file
from xlayer.units import GIB


__all__ = ["load_case", "predict", "validate", "report", "search", "serve", "Prediction", "ValidationResult", "Search",
           "ServingSearch"]


def _pd():
    import pandas as pd
    return pd


def load_case(case: str | Path | Mapping[str, Any] | Case, hf_config: str | Path | None = None) -> Case:
    """A :class:`Case` from a YAML path, a mapping in the same format, or a Case.

    ``hf_config`` takes the model from a Hugging Face ``config.json``: it replaces the case's
    model (keeping the case's ``seq_len``); a mapping may then leave ``model`` out or give
    only ``{"seq_len": ...}`` (default: the config's context length)."""
    hf_done = False
    if isinstance(case, Case):
        c = case
    elif isinstance(case, Mapping):
        data = dict(case)
        m = data.get("model")
        if hf_config is not None and (m is None or (isinstance(m, Mapping) and set(m) <= {"seq_len", "name"})):
            from xlayer.workload.hf import model_from_hf_config
            m = dict(m or {})
            data["model"] = model_from_hf_config(hf_config, seq_len=m.get("seq_len"), name=m.get("name")).model_dump()
            hf_done = True
        c = case_from_dict(data, "case")
    elif isinstance(case, (str, Path)):
        c = _load_case_file(case)
    else:
        raise InputError("case", type(case).__name__, "give a path to a case YAML, a mapping or a Case")
    if hf_config is not None and not hf_done:
        from xlayer.workload.hf import model_from_hf_config
        c = c.model_copy(update={"model": model_from_hf_config(hf_config, seq_len=c.model.seq_len)})
    return c


@dataclass
class Prediction(TrainingPrediction):
    """A :class:`TrainingPrediction` with DataFrame views and the case it came from."""

    case: Case | None = None

    @classmethod
    def wrap(cls, pred: TrainingPrediction, case: Case) -> "Prediction":
        return cls(**{f.name: getattr(pred, f.name) for f in fields(TrainingPrediction)}, case=case)

    def to_frame(self):
        """One row: the headline numbers and the layout."""
        d = {"id": self.case_id, "iteration_time_s": self.iteration_time_s, "mfu": self.mfu, "hfu": self.hfu,
             "tokens_per_s": self.tokens_per_s, "memory_gib": self.memory_bytes / GIB,
             "capacity_gib": self.capacity_bytes / GIB, "fits_memory": self.fits_memory,
             **{f"layout.{k}": v for k, v in self.layout.model_dump().items()}}
        return _pd().DataFrame([d]).set_index("id")

    def time_frame(self):
        """Iteration-time terms (function name → seconds, share of the iteration)."""
        pd = _pd()
        s = pd.Series({k: float(v) for k, v in self.time_breakdown_s.items()}, name="time_s")
        return pd.DataFrame({"time_s": s, "share": s / self.iteration_time_s}).rename_axis("term")

    def memory_frame(self):
        """Memory terms in bytes and GiB."""
        pd = _pd()
        s = pd.Series({k: float(v) for k, v in self.memory_breakdown_bytes.items()}, name="bytes")
        return pd.DataFrame({"bytes": s, "gib": s / GIB}).rename_axis("term")

    def ops_frame(self):
        """One layer's operators (forward and backward) with time, FLOPs, bytes and bound."""
        df = _pd().DataFrame(self.ops)
        df["flops_per_byte"] = df["flops"] / df["bytes"].where(df["bytes"] > 0)
        df["achieved_flops_per_s"] = df["flops"] / df["time_s"]
        return df.set_index("name")


def predict(case: str | Path | Mapping[str, Any] | Case, layout=None, hf_config: str | Path | None = None):
    """``xlayer predict``: a training case → :class:`Prediction` (inference cases → the
    inference result when that model is available)."""
    c = load_case(case, hf_config=hf_config)
    if c.kind == "training":
        from xlayer.prediction.training import predict_training
        return Prediction.wrap(predict_training(c, layout), c)
    if c.request is not None and c.request.mode == "serving":
        from xlayer.serving.predict import predict_serving
        return predict_serving(c)
    from xlayer.prediction.inference import predict_inference
    return predict_inference(c)


@dataclass
class ValidationResult:
    """The ``validate --json`` object: ``cases``, ``summary`` and ``by_source``."""

    cases: list[dict[str, Any]]
    summary: dict[str, dict[str, Any]]
    by_source: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"cases": self.cases, "summary": self.summary, "by_source": self.by_source}

    def to_frame(self):
        """One row per (case, metric): measured, predicted, error_pct, reason."""
        df = _pd().DataFrame(self.cases)
        if "reason" not in df.columns:
            df["reason"] = None
        return df

    def summary_frame(self):
        return _pd().DataFrame.from_dict(self.summary, orient="index").rename_axis("metric")

    def by_source_frame(self):
        return _pd().DataFrame.from_dict(self.by_source, orient="index").rename_axis("source")


def validate(paths: str | Path | Iterable[str | Path],
             progress: Callable[[Path], None] | None = None) -> ValidationResult:
    """``xlayer validate PATH...``: predict every case file found and compare."""
    from xlayer.validation.runner import collect_case_files, validate_files
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = collect_case_files([str(p) for p in paths])
    r = validate_files(files, progress=progress)
    return ValidationResult(r["cases"], r["summary"], r.get("by_source", {}))


def report(result: Any, out: str | Path, case: Case | None = None) -> Path:
    """Write the HTML report of a :class:`Prediction`, :class:`ValidationResult` (or the
    ``validate`` dict), :class:`Search`, :class:`ServingSearch`, or a sweep output folder to
    ``out``; returns the path."""
    from xlayer import reporting as rep
    if isinstance(result, (str, Path)) and Path(result).is_dir():
        return rep.write(rep.sweep_report(result), out)
    if isinstance(result, ServingSearch):
        return rep.write(rep.serving_report(case or result.case, result.result), out)
    if isinstance(result, Search):
        return rep.write(rep.search_report(case or load_case_of(result), result._cs), out)
    if isinstance(result, ValidationResult):
        return rep.write(rep.validate_report(result.to_dict()), out)
    if isinstance(result, dict) and "cases" in result:
        return rep.write(rep.validate_report(result), out)
    if isinstance(result, TrainingPrediction):
        c = case or getattr(result, "case", None)
        if c is None:
            raise InputError("case", None, "a training report needs the case (pass case=...)")
        return rep.write(rep.training_report(c, result), out)
    raise InputError("result", type(result).__name__,
                     "give a Prediction, a ValidationResult, a Search, a ServingSearch or a sweep output folder")


def load_case_of(s: "Search") -> Case:
    c = getattr(s, "_case", None)
    if c is None:
        raise InputError("case", None, "a search report needs the case (pass case=...)")
    return c


class Search:
    """A ``xlayer.explore.search.CaseSearch`` (attributes pass through) with DataFrame views."""

    def __init__(self, cs: Any):
        self._cs = cs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cs, name)

    def to_dict(self) -> dict[str, Any]:
        return self._cs.to_dict()

    def to_frame(self):
        """The top layouts: rank, layout fields, time, memory, MFU, throughput."""
        rows = []
        for r in self._cs.to_dict()["top"]:
            rows.append({"rank": r["rank"], **{f"layout.{k}": v for k, v in r["layout"].items()},
                         **{k: r[k] for k in ("iteration_time_s", "memory_gib", "mfu", "tokens_per_s_per_gpu")}})
        return _pd().DataFrame(rows).set_index("rank") if rows else _pd().DataFrame()

    def all_frame(self):
        """Every valid layout the search evaluated (fitting ones first, ranked)."""
        return _pd().DataFrame({k: v for k, v in self._cs.result.table.items()})


def search(case: str | Path | Mapping[str, Any] | Case, top: int = 5, **kwargs: Any) -> Search:
    """``xlayer search``: the best layouts for the case's model, system and batch
    (``xlayer.explore.search.search_case``; keyword arguments pass through)."""
    from xlayer.explore.search import search_case
    c = load_case(case)
    out = Search(search_case(c, top=top, **kwargs))
    out._case = c
    return out


class ServingSearch:
    """The SLO search of ``xlayer serve CASE.yaml --ttft … --tpot …``
    (:class:`xlayer.serving.deploy.SearchResult`; attributes pass through) with DataFrame views."""

    def __init__(self, result: Any, case: Case):
        self.result = result
        self.case = case

    def __getattr__(self, name: str) -> Any:
        return getattr(self.result, name)

    def to_dict(self) -> dict[str, Any]:
        return self.result.to_dict()

    def to_frame(self):
        """The deployments within the targets, best first: one row each (the best max batch
        of each shape or prefill/decode pool pair), with its binding limit."""
        rows = [c.to_dict() for c in self.result.ranked]
        for r in rows:
            dis = r.pop("disaggregated", None) or {}
            for side in ("prefill", "decode"):
                for k, v in (dis.get(side) or {}).items():
                    r[f"{side}.{k}"] = v
            for k in ("prefill_batch", "kv_bytes_per_request", "kv_transfer_s", "network"):
                r[k] = dis.get(k)
        df = _pd().DataFrame(rows)
        df.index = _pd().RangeIndex(1, len(df) + 1, name="rank")
        return df

    def curve_frame(self):
        """The throughput-vs-interactivity curves: one row per (shape or pool pair, max batch)."""
        rows = [{"deployment": k, **p} for k, pts in self.result.curves.items() for p in pts]
        return _pd().DataFrame(rows)

    def breakdown_frame(self, rank: int = 1):
        """The step-time breakdown of the deployment ranked ``rank`` (1 = best): one row per
        (iteration, term), seconds."""
        if not 1 <= rank <= len(self.result.ranked):
            raise InputError("rank", rank, f"valid: 1..{len(self.result.ranked)}")
        bd = self.result.step_breakdown(self.result.ranked[rank - 1])
        rows = [{"iteration": it, "term": k, "time_s": v} for it, terms in bd for k, v in terms.items()]
        return _pd().DataFrame(rows)


def serve(case: str | Path | Mapping[str, Any] | Case, ttft: float | None = None, tpot: float | None = None,
          gpus: int | None = None, prompt_len: int | None = None, output_len: int | None = None,
          disaggregated: bool = True, points: int = 64) -> ServingSearch:
    """``xlayer serve CASE.yaml --ttft S --tpot S [--gpus N]``: the deployments of ``gpus``
    GPUs (default system.count) ranked by output tokens/s per GPU within a time-to-first-token
    target ``ttft`` and a time-per-output-token target ``tpot`` (seconds; None: no target),
    aggregated and (``disaggregated``) prefill/decode pools. Raises :class:`InputError`
    (closest deployment and by how much) when no deployment meets the targets."""
    from xlayer.serving.deploy import slo_search
    c = load_case(case)
    if isinstance(points, bool) or not isinstance(points, int) or not 2 <= points <= 4096:
        raise InputError("points", points, "valid: a whole number 2..4096")
    return ServingSearch(slo_search(c, ttft, tpot, gpus, prompt_len, output_len, points=points,
                                    disaggregated=bool(disaggregated),
                                    length_fields=("prompt_len", "output_len")), c)
