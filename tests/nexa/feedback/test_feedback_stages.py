"""The golden pipeline's feedback stages chained by hand: eval → weakness → targeted data → before/after."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from nexa.data.generators import generate
from nexa.eval.stages import exact_eval
from nexa.feedback.stages import before_after, targeted_data, weakness
from nexa.ledger import Lab
from nexa.ledger.datasets import read_dataset_manifest, read_dataset_rows
from nexa.ledger.runs import start_run
from nexa.train.models import DecoderSize, build_model
from nexa.train.tokenizer import char_special_ids, save_char_tokenizer, train_char_tokenizer


@dataclass
class Ctx:
    """The slice of the runner's StageContext these stages use."""

    lab: Lab
    out: Path
    inputs: dict[str, Path]
    summaries: dict[str, dict] = field(default_factory=dict)
    seed: int = 42

    def __post_init__(self):
        self.out.mkdir(parents=True)
        self.run = start_run(self.lab, self.out.name)

    def input(self, name):
        return self.inputs[name]

    def summary_of(self, name):
        return self.summaries[name]


def _listing(lab, tmp_path, chem_ref) -> Path:
    folder = tmp_path / "weak_data"
    folder.mkdir()
    m = read_dataset_manifest(lab, chem_ref)
    (folder / "datasets.json").write_text(json.dumps({"capabilities": {"chemistry": {"ref": m.ref, "content_hash": m.content_hash, "rows": m.rows}}}))
    return folder


def _model_stage(tmp_path) -> Path:
    texts = [r["prompt"] + r["answer"] for r in generate("chemistry", 200, seed=1)]
    tokenizer = train_char_tokenizer(texts)
    stage = tmp_path / "student_before"
    model = build_model(DecoderSize(hidden_size=32, num_hidden_layers=2, num_attention_heads=4), tokenizer.get_vocab_size(), 42, char_special_ids(tokenizer))
    model.save_pretrained(stage / "model")
    save_char_tokenizer(tokenizer, stage / "model")
    return stage


def test_feedback_chain_from_eval_to_before_after(lab, chem_ref, tmp_path):
    data, stage = _listing(lab, tmp_path, chem_ref), _model_stage(tmp_path)
    ev = Ctx(lab, tmp_path / "eval_before", {"weak_data": data, "student_before": stage})
    scores = exact_eval(ev, models={"student_before": "student"}, data="weak_data", max_new_tokens=3)
    assert set(scores["scores"]["student_before"]) == {"chemistry"}
    assert {"leaderboard.parquet", "eval_report.json", "eval_report.md", "generations.jsonl"} <= {p.name for p in ev.out.iterdir()}
    assert pq.read_table(ev.out / "leaderboard.parquet").to_pylist()[0]["n"] == 10
    assert ev.run.manifest.metrics["generations_new"] == 10

    again = Ctx(lab, tmp_path / "eval_again", {"weak_data": data, "student_before": stage})
    assert exact_eval(again, models={"student_before": "student"}, data="weak_data", max_new_tokens=3) == scores
    assert again.run.manifest.metrics == {"generation_cache_hits": 10.0, "generations_new": 0.0}

    wk = Ctx(lab, tmp_path / "weakness", {"eval_before": ev.out})
    found = weakness(wk, eval="eval_before", rules=["accuracy < 0.9"])
    assert found == {"weak": ["chemistry"], "count": 1}

    fd = Ctx(lab, tmp_path / "feedback_data", {"weak_data": data, "weakness": wk.out})
    made = targeted_data(fd, data="weak_data", rows_per_weakness=25)
    assert made["datasets"] == {"chemistry": "fb-chemistry@v2"} and made["added"] == {"chemistry": 25}
    listing = json.loads((fd.out / "datasets.json").read_text())
    new_rows = read_dataset_rows(lab, listing["capabilities"]["chemistry"]["ref"])
    old_eval = [r for r in read_dataset_rows(lab, chem_ref) if r["split"] == "eval"]
    assert [r for r in new_rows if r["split"] == "eval"] == old_eval  # the benchmark does not move
    assert read_dataset_manifest(lab, "fb-chemistry@v2").parents == [chem_ref]

    after = {"scores": {"student_after": {"chemistry": 0.8}}}
    fb = Ctx(lab, tmp_path / "feedback", {}, {"eval_before": scores, "eval_after": after, "weakness": found})
    summary = before_after(fb)
    expected = {"chemistry": {"before": scores["scores"]["student_before"]["chemistry"], "after": 0.8}}
    assert json.loads((fb.out / "feedback.json").read_text()) == expected and summary["weak"] == ["chemistry"]
