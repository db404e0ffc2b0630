"""lm-evaluation-harness against ``nexa serve`` (through ``nexa eval lm-eval``): a generation task scores
what ``nexa eval`` scores on the same prompts, a multiple-choice task scores the log-likelihoods the bundle
gives, and bad input is one line and exit 2 with nothing on the leaderboard."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow.parquet as pq
import pytest
from gate_tasks import MC_DOCS, write_mc_task
from typer.testing import CliRunner

from nexa.cli import app
from nexa.eval.exact import exact_match
from nexa.eval.generate import Generator
from nexus import NexusModel

GEN_DOCS = [{"prompt": f"max({a},{b})=", "answer": str(max(a, b))} for a, b in [(1, 7), (3, 0), (9, 14), (2, 2), (5, 21), (8, 7)]]
TASK_HEAD = """task: {name}
dataset_path: json
dataset_kwargs: {{data_files: {{test: {data}}}}}
test_split: test
"""
GEN_TASK = """output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{answer}}}}"
target_delimiter: ""
generation_kwargs: {{until: [], max_gen_toks: 6, do_sample: false, temperature: 0.0}}
filter_list:
  - name: strip
    filter:
      - {{function: regex, regex_pattern: "(?s).*"}}
      - {{function: take_first}}
metric_list:
  - {{metric: exact_match, aggregation: mean, higher_is_better: true}}
metadata: {{version: 2.0}}
"""


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm_eval_tasks")
    data = folder / "tiny_gen.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in GEN_DOCS))
    (folder / "tiny_gen.yaml").write_text((TASK_HEAD + GEN_TASK).format(name="tiny_gen", data=data))
    write_mc_task(folder, "tiny_mc")
    return folder


def _nexa(*args):
    return CliRunner().invoke(app, ["eval", "lm-eval", *map(str, args)])


def test_lm_eval_against_nexa_serve_matches_nexa_eval(bundle, tasks, lab):
    result = _nexa("--model", bundle, "--tasks", "tiny_gen,tiny_mc", "--include-path", tasks, "--lab", lab.root, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(out) == {"model", "tasks", "leaderboard"} and out["model"] == "tiny"
    assert out["tasks"]["tiny_gen"] == {"metric": "exact_match", "score": pytest.approx(_nexa_eval_score(bundle)),
                                        "n": len(GEN_DOCS), "version": 2.0}
    assert out["tasks"]["tiny_mc"] == {"metric": "acc", "score": pytest.approx(_loglikelihood_accuracy(bundle)),
                                       "n": len(MC_DOCS), "version": 1.0}
    rows = pq.read_table(out["leaderboard"]).to_pylist()
    assert {(r["capability"], r["metric"], r["judge_model_id"].split(":", 1)[1]) for r in rows} == {
        ("tiny_gen", "exact_match", "tiny_gen@v2.0:0-shot"), ("tiny_mc", "acc", "tiny_mc@v1.0:0-shot")}
    assert all(r["dataset"].startswith("sha256:") and len(r["judge_prompt_hash"]) == 64 for r in rows)


def _nexa_eval_score(bundle) -> float:
    """What ``nexa eval`` scores on the same prompts: its generator (greedy, routed) and its exact match."""
    generations = Generator(bundle).generate([d["prompt"] for d in GEN_DOCS], max_new_tokens=6)
    return sum(exact_match(g.output, d["answer"]) for g, d in zip(generations, GEN_DOCS)) / len(GEN_DOCS)


def _loglikelihood_accuracy(bundle) -> float:
    """Accuracy by summed continuation log-probabilities, straight from the runtime."""
    model = NexusModel.load(bundle)
    correct = 0
    for doc in MC_DOCS:
        context = model.tokenizer.encode(doc["question"]).ids
        totals = []
        for choice in doc["choices"]:
            ids = context + model.tokenizer.encode(choice, add_special_tokens=False).ids
            scores = model.score([ids], routed_on=[ids])[0]  # lm-eval asks for the routed model, "tiny"
            totals.append(sum(s.logprob for s in scores[len(context) - 1:]))
        correct += totals.index(max(totals)) == doc["label"]
    return correct / len(MC_DOCS)


class _NoLogprobs(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that lists a model and refuses echo/logprobs, as chat-only APIs do."""

    def do_GET(self):  # noqa: N802
        self._send(200, {"object": "list", "data": [{"id": "chat-only", "object": "model"}]})

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send(400, {"error": {"message": "logprobs are not supported", "type": "invalid_request_error",
                                   "param": "logprobs", "code": None}})

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        return None


@pytest.fixture
def chat_only():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoLogprobs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("case", ["unknown_task", "unreachable", "no_logprobs"])
def test_bad_input_is_one_line_exit_2_and_no_leaderboard(case, bundle, tasks, lab, chat_only):
    model, task = {"unknown_task": (bundle, "tiny_nope"), "unreachable": ("http://127.0.0.1:9/v1", "tiny_gen"),
                   "no_logprobs": (chat_only, "tiny_mc")}[case]
    result = _nexa("--model", model, "--tasks", task, "--include-path", tasks, "--lab", lab.root)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())  # one line; Rich wraps it at the test terminal's width
    assert message.startswith("error:") and message.count("error:") == 1 and "Traceback" not in message, result.output
    assert {"unknown_task": "tiny_nope", "unreachable": "cannot reach", "no_logprobs": "cannot return prompt logprobs"}[case] in message
    assert not list(lab.root.rglob("leaderboard.parquet"))


def test_lm_eval_on_an_hf_checkpoint_folder(bundle, tasks, lab, tmp_path):
    """The same tasks on the bundle's backbone as an HF folder (lm-eval's own ``hf`` model, no server)."""
    import shutil

    folder = tmp_path / "checkpoint"
    shutil.copytree(bundle.parent / "student", folder)
    shutil.copy(bundle.parent / "tokenizer.json", folder / "tokenizer.json")
    result = _nexa("--model", folder, "--tasks", "tiny_gen,tiny_mc", "--include-path", tasks, "--role", "baseline",
                   "--lab", lab.root, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["model"] == "checkpoint" and {t: s["n"] for t, s in out["tasks"].items()} == {"tiny_gen": len(GEN_DOCS), "tiny_mc": len(MC_DOCS)}
    assert 0.0 <= out["tasks"]["tiny_mc"]["score"] <= 1.0
    assert {r["role"] for r in pq.read_table(out["leaderboard"]).to_pylist()} == {"baseline"}
