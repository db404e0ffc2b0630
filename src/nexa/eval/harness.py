"""lm-evaluation-harness on the lab's models: bundles (through ``nexa serve`` on a loopback port, so the
scores are the ones the bundle's users get over HTTP), HF checkpoint folders (lm-eval's ``hf`` model) and
OpenAI-compatible endpoints (``local-completions``), into a leaderboard.

Every check that can refuse the request (unknown task, task data not available offline, endpoint not
reachable, a log-likelihood task against a model that cannot return logprobs) runs in :func:`check`,
before anything is written. A bundle is read with its own tokenizer and the beginning-of-sequence token
it was trained with, so lm-eval sends the very token ids ``nexa eval`` generates from.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from nexa.eval.generate import ModelNotFoundError, model_hash, model_kind
from nexa.eval.leaderboard import write_leaderboard
from nexa.ledger.hashing import sha256_file, sha256_json

LOGLIKELIHOOD_TYPES = ("loglikelihood", "loglikelihood_rolling", "multiple_choice")
PROBE_TIMEOUT_S = 10.0


class HarnessError(ValueError):
    """A request lm-eval cannot serve (the user's to fix); the message says what and how."""


@dataclass
class Target:
    """A model as lm-eval reaches it: its lm-eval model class and arguments, and whether it returns logprobs."""

    name: str
    lm: str
    args: dict[str, Any]
    model_hash: str
    base_url: str | None = None  # OpenAI-compatible endpoints only
    scores_logprobs: bool | None = None  # None: probed on first need
    served_model: str | None = None


@dataclass
class Plan:
    """Checked tasks for one target: names, output types, the task manager that knows them."""

    target: Target
    tasks: list[str]
    output_types: dict[str, str]
    manager: Any = field(repr=False)


# ------------------------------------------------------------------------------------- targets
@contextmanager
def target(ref: str, workdir: Path) -> Iterator[Target]:
    """``ref`` as lm-eval reaches it: a URL, a bundle (served on 127.0.0.1 for the block) or an HF folder."""
    if ref.startswith(("http://", "https://")):
        yield endpoint(ref)
        return
    path = Path(ref)
    try:
        kind = model_kind(path)
    except ModelNotFoundError as exc:
        raise HarnessError(f"--model {ref}: {exc}; or pass an http(s) URL of an OpenAI-compatible endpoint") from None
    config = json.loads((path / ("backbone/config.json" if kind == "bundle" else "config.json")).read_text())
    tokenizer = _hf_tokenizer(path / ("tokenizer/tokenizer.json" if kind == "bundle" else "tokenizer.json"), config,
                              workdir / "tokenizer")
    context = int(config["max_position_embeddings"])
    if kind == "hf":
        yield Target(path.name, "hf", {"pretrained": str(path), "tokenizer": str(tokenizer), "device": "cpu",
                                       "dtype": "float32", "add_bos_token": True, "max_length": context,
                                       }, model_hash(path), scores_logprobs=True)
        return
    from nexa.serve.background import serving

    manifest = json.loads((path / "manifest.json").read_text())
    max_gen = int((manifest.get("generation") or {}).get("max_new_tokens", 16))
    with serving(path) as url:
        served = endpoint(url, tokenizer=tokenizer, name=str(manifest.get("name") or path.name))
        served.model_hash = model_hash(path)
        served.args.update(max_length=context, max_gen_toks=max_gen)
        yield served


def endpoint(url: str, tokenizer: Path | None = None, name: str | None = None) -> Target:
    """An OpenAI-compatible server: reachable, serving a model, with the tokenizer lm-eval will use
    (``tokenizer``, else the server's own through vLLM's /tokenize endpoints, else none: text prompts)."""
    import httpx

    base = url.rstrip("/").removesuffix("/v1/completions").removesuffix("/v1")
    try:
        reply = httpx.get(f"{base}/v1/models", timeout=PROBE_TIMEOUT_S, headers=_auth())
    except httpx.HTTPError as exc:
        raise HarnessError(f"cannot reach the endpoint {base}/v1: {exc}") from None
    try:
        served = reply.json()["data"][0]["id"] if reply.status_code == 200 else None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        served = None
    if not isinstance(served, str):
        raise HarnessError(f"{base}/v1/models answered {reply.status_code} without a model list; is {url} an "
                           "OpenAI-compatible endpoint (and OPENAI_API_KEY its key)?")
    args: dict[str, Any] = {"model": served, "base_url": f"{base}/v1/completions", "num_concurrent": 1,
                            "max_retries": 1, "tokenized_requests": True}
    if tokenizer is not None:
        args.update(tokenizer_backend="huggingface", tokenizer=str(tokenizer), add_bos_token=True)
    else:
        from lm_eval.utils import check_remote_tokenizer_support

        remote = check_remote_tokenizer_support(f"{base}/v1/completions", timeout=int(PROBE_TIMEOUT_S), max_retries=1)
        args.update(tokenizer_backend="remote" if remote else "none", tokenized_requests=remote)
    return Target(name or served, "local-completions", args, sha256_json({"endpoint": base, "model": served}),
                  base_url=base, served_model=served)


def _auth() -> dict[str, str]:
    import os

    key = os.environ.get("OPENAI_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def can_score(target: Target) -> bool:
    """Whether the target returns prompt log-likelihoods (``echo`` + ``logprobs``), probed once with one token."""
    if target.scores_logprobs is None:
        import httpx

        body = {"model": target.served_model, "prompt": "1", "max_tokens": 1, "echo": True, "logprobs": 1,
                "temperature": 0}
        try:
            reply = httpx.post(f"{target.base_url}/v1/completions", json=body, timeout=60, headers=_auth())
            logprobs = reply.json()["choices"][0]["logprobs"] if reply.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
            logprobs = None
        target.scores_logprobs = isinstance(logprobs, dict) and isinstance(logprobs.get("token_logprobs"), list) \
            and target.args.get("tokenizer_backend") != "none"
    return target.scores_logprobs


def _hf_tokenizer(tokenizer_json: Path, config: dict, out: Path) -> Path:
    """The lab's ``tokenizer.json`` as a transformers tokenizer folder (what lm-eval loads), special tokens
    named from the model config."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer.from_file(str(tokenizer_json))
    names = {f"{kind}_token": raw.id_to_token(config[f"{kind}_token_id"]) for kind in ("bos", "eos", "pad")
             if config.get(f"{kind}_token_id") is not None}
    PreTrainedTokenizerFast(tokenizer_object=raw, **names).save_pretrained(str(out))
    return out


# --------------------------------------------------------------------------------------- checks
def check(target: Target, tasks: list[str], include_path: Path | None) -> Plan:
    """Every refusal before any work: known tasks, loadable data, logprobs where a task needs them."""
    from lm_eval.tasks import TaskManager, get_task_dict

    if include_path is not None and not include_path.is_dir():
        raise HarnessError(f"--include-path {include_path} is not a folder of task YAMLs")
    if not tasks:
        raise HarnessError("--tasks is empty; name one or more lm-eval tasks (comma-separated)")
    local = TaskManager(include_path=str(include_path), include_defaults=False) if include_path else None
    known = set(local.all_tasks if local else [])
    unknown = [t for t in tasks if t not in known and t not in builtin_task_names()]
    if unknown:
        where = f" or in {include_path}" if include_path else " (local task YAMLs: --include-path DIR)"
        raise HarnessError(f"unknown lm-eval task(s) {unknown}: not among lm-eval's built-in tasks{where}")
    # Indexing lm-eval's ~15,000 built-in task YAMLs takes a minute or more: skipped when the local ones suffice.
    manager = local if local and all(t in local.all_tasks for t in tasks) else \
        TaskManager(include_path=str(include_path) if include_path else None)
    try:
        loaded = get_task_dict(tasks, manager)
    except (OSError, ValueError, KeyError, ConnectionError) as exc:
        raise HarnessError(f"cannot load the data of task(s) {tasks} (offline: only local or cached data): "
                           f"{type(exc).__name__}: {exc}") from None
    types = dict(_output_types(loaded))
    needs = sorted(t for t, kind in types.items() if kind in LOGLIKELIHOOD_TYPES)
    if needs and not can_score(target):
        raise HarnessError(f"task(s) {needs} score log-likelihoods, but {target.name} cannot return prompt logprobs "
                           "(echo + logprobs on /v1/completions, with a tokenizer); use generation tasks or another model")
    return Plan(target, tasks, types, manager)


_NAME_LINE = re.compile(r"^[\"']?(?:task|group|tag)[\"']?:[ \t]*([^\s#\[]+)[ \t]*$", re.MULTILINE)
_TAG_LIST = re.compile(r"^[\"']?tag[\"']?:[ \t]*\n((?:[ \t]+-[ \t]*\S+[ \t]*\n)+)", re.MULTILINE)


@lru_cache(maxsize=1)
def builtin_task_names() -> frozenset[str]:
    """Names of lm-eval's built-in tasks, groups and tags, read from the ``task:``/``group:``/``tag:`` lines of
    its YAMLs (a second, where lm-eval's own index parses every YAML in a minute or more)."""
    import lm_eval.tasks

    names: set[str] = set()
    for yaml_file in Path(lm_eval.tasks.__file__).parent.rglob("*.yaml"):
        text = yaml_file.read_text(encoding="utf-8", errors="replace")
        names.update(name.strip("'\"") for name in _NAME_LINE.findall(text))
        for block in _TAG_LIST.findall(text):
            names.update(line.strip().lstrip("-").strip() for line in block.splitlines() if line.strip())
    return frozenset(names)


def _output_types(loaded: dict) -> Iterator[tuple[str, str]]:
    for key, value in loaded.items():
        if isinstance(value, dict):  # a group: its subtasks
            yield from _output_types(value)
        else:
            yield getattr(key, "group_name", key), value.OUTPUT_TYPE


# ----------------------------------------------------------------------------------- evaluation
def evaluate(plan: Plan, work: Path, role: str, limit: int | None = None, num_fewshot: int | None = None) -> dict:
    """Run lm-eval; write the leaderboard (one row per task: its metric, version, n-shot and the hashes of
    task config, data and model) and lm-eval's results into ``work``. Returns {TASK: {metric, score, n, version}}."""
    import lm_eval

    began = time.perf_counter()
    results = lm_eval.simple_evaluate(model=plan.target.lm, model_args=plan.target.args, tasks=plan.tasks,
                                      task_manager=plan.manager, num_fewshot=num_fewshot, limit=limit,
                                      log_samples=False, bootstrap_iters=0, batch_size=1)
    seconds = time.perf_counter() - began
    summary = {task: _task_summary(results, task) for task in plan.tasks if task in results["configs"]}
    total = sum(s["n"] for s in summary.values()) or 1
    rows = [_row(plan.target, role, task, s, results, seconds / total) for task, s in summary.items()]
    write_leaderboard(work, rows, metric=rows[0]["metric"])
    (work / "lm_eval_results.json").write_text(json.dumps(
        {"lm_eval_version": lm_eval.__version__, "model": plan.target.name, "model_hash": plan.target.model_hash,
         "lm": plan.target.lm, "tasks": {t: {**s, "n_shot": results["n-shot"].get(t), "config_hash": _config_hash(results, t),
                                             "data": _data_ref(results["configs"][t])} for t, s in summary.items()},
         "results": results["results"]}, indent=2, sort_keys=True, default=str))
    return summary


def _task_summary(results: dict, task: str) -> dict:
    config, scores = results["configs"][task], results["results"][task]
    metric = config["metric_list"][0]["metric"] if config.get("metric_list") else next(
        k.split(",")[0] for k in scores if "," in k and "_stderr" not in k)
    keys = [k for k in scores if k.startswith(f"{metric},") and "_stderr" not in k]
    key = f"{metric},none" if f"{metric},none" in keys else keys[0]
    samples = results.get("n-samples", {}).get(task, {})
    return {"metric": metric, "score": float(scores[key]), "n": int(samples.get("effective", 0)),
            "version": results["versions"].get(task)}


def _row(target: Target, role: str, task: str, summary: dict, results: dict, seconds_per_item: float) -> dict:
    import lm_eval

    shots = results["n-shot"].get(task, 0)
    return {"model": target.name, "role": role, "capability": task, "metric": summary["metric"],
            "score": summary["score"], "n": summary["n"], "latency_ms": round(seconds_per_item * 1000, 3),
            "tokens_per_s": 0.0, "cost_usd": 0.0,
            "judge_model_id": f"lm-eval@{lm_eval.__version__}:{task}@v{summary['version']}:{shots}-shot",
            "judge_prompt_hash": _config_hash(results, task), "dataset": _data_ref(results["configs"][task])}


def _config_hash(results: dict, task: str) -> str:
    return sha256_json(json.loads(json.dumps(results["configs"][task], sort_keys=True, default=str)))


def _data_ref(config: dict) -> str:
    """The task's data: local files by content hash, else the hub dataset path and name."""
    files = (config.get("dataset_kwargs") or {}).get("data_files")
    if files:
        listed = files.values() if isinstance(files, dict) else [files] if isinstance(files, str) else files
        paths = [Path(p) for group in listed for p in ([group] if isinstance(group, str) else group)]
        if all(p.is_file() for p in paths):
            return "sha256:" + sha256_json({p.name: sha256_file(p) for p in paths})
    return ":".join(str(x) for x in (config.get("dataset_path"), config.get("dataset_name")) if x)
