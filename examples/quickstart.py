"""xlayer from Python: predict a case, look at it as DataFrames, import a Hugging Face model,
validate against measurements and write HTML reports.

    .venv/bin/python examples/quickstart.py [OUT_DIR]
"""
from __future__ import annotations

import sys
import tempfile
from importlib import resources
from pathlib import Path

import xlayer

ROOT = Path(__file__).resolve().parents[1]
out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="xlayer-quickstart-"))
out.mkdir(parents=True, exist_ok=True)

# 1. predict the embedded example: GPT-3 175B on 1024 A100-80GB (same as `xlayer demo`)
with resources.as_file(resources.files("xlayer") / "examples" / "gpt3-175b-1024xa100.yaml") as path:
    case = xlayer.load_case(path)
pred = xlayer.predict(case)
print(f"{case.id}: {pred.iteration_time_s:.2f} s per iteration, MFU {100 * pred.mfu:.1f} %, "
      f"layout {pred.layout.describe()}")
print(pred.time_frame().sort_values("time_s", ascending=False).head(5).to_string())
print(pred.memory_frame().to_string())
ops = pred.ops_frame()
print("HBM-bound operators:", ", ".join(ops.index[ops["bound"] == "hbm"]))

# 2. another model from a Hugging Face config.json on disk (Llama 3 8B) on 64 H100, as a
#    case written in Python (same fields as the case YAML files)
hf = ROOT / "tests" / "fixtures" / "hf" / "Meta-Llama-3-8B" / "config.json"
llama = xlayer.load_case({"id": "llama3-8b-64xh100", "kind": "training", "model": {"seq_len": 8192},
                          "system": {"accelerator": "H100-SXM-80GB", "count": 64},
                          "parallel": {"tp": 8, "pp": 1}, "batch": {"global": 512, "micro": 1},
                          "precision": "bf16"}, hf_config=hf)
p8 = xlayer.predict(llama)
print(f"{llama.model.name}: {llama.model.total_params() / 1e9:.2f} B parameters, "
      f"{p8.iteration_time_s:.3f} s per iteration on 64 H100, MFU {100 * p8.mfu:.1f} %")

# 3. reports: one self-contained HTML file each
print("wrote", xlayer.report(pred, out / "predict.html"))
validation = ROOT.parent / "shared" / "validation" / "training"
if validation.is_dir():
    res = xlayer.validate(validation)
    print(res.summary_frame().to_string())
    print("wrote", xlayer.report(res, out / "validate.html"))
