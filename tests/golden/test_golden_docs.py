"""Every command in the README and docs/ and every preset in configs/ runs as written in the lab ``make demo``
leaves: the golden fixture's lab (one shared run, no extra pipeline), seen as ``nexa-demo`` from a fresh folder
holding a copy of ``configs/``.

Long jobs run with their smallest settings: each preset trains for 2 steps (its copy's ``optim.max_steps``)
and a sweep runs 1 trial. What cannot run here is listed in ``NOT_RUN`` with the reason, and a test keeps
both lists in step with the docs, so a new documented command is either run or explained.
"""

from __future__ import annotations

import json

import pytest

from documented import documented_lines
from golden_background import DOCUMENTED_RUN

RUN = DOCUMENTED_RUN  # run in the background once the demo is made (tests/golden_background.py)
RUN_BY_THE_GOLDEN_FIXTURE = ["nexa demo", "nexa demo --json"]  # tests/golden/conftest.py runs `nexa demo --json`
TEACHER_DELETED = ("needs the teacher's weights, which the golden pipeline's verify stage deletes (that is what the demo "
                   "proves); point the preset at a teacher you keep")
PROSE = "a command's name in prose; its --help runs in tests/test_docs_commands.py"
NOT_RUN = {
    "nexa train --config configs/kd_logit.yaml --lab nexa-demo": TEACHER_DELETED,
    "nexa train --config configs/lora_tiny.yaml --lab nexa-demo": TEACHER_DELETED,
    "nexa train --config configs/kd_offline.yaml --lab nexa-demo": "needs golden-distill-topk@v1, top-k logprobs materialized "
                                                                  "from a teacher you keep (" + TEACHER_DELETED + ")",
    "nexa train --config configs/sft_tiny.yaml --nproc 2 --lab nexa-demo": "two torchrun workers: run by "
                                                                          "tests/nexa/train/test_distributed.py",
    "nexa sweep launch --backend wandb --method bayes --config configs/sft_tiny.yaml --space configs/spaces/sft_tiny.yaml":
        "needs W&B online (network and an account)",
    "nexa ui --lab nexa-demo --port 8050": "serves until stopped: tests/nexa/ui/test_ui_browser.py serves the dashboard",
    "nexa auto --yes --config plan.yaml": "plan.yaml is the user's own plan: tests/nexa/train/test_auto_*.py run auto",
    "nexa infra launch --pipeline pipelines/golden.yaml --backend local --durable s3://my-bucket/lab --budget 5 --json":
        "needs an S3 bucket: tests/golden/test_golden_infra.py launches the golden pipeline locally",
    "nexa infra launch --pipeline pipelines/golden.yaml --backend skypilot --gpus H100:1 --provider runpod --spot":
        "rents a cloud GPU: tests/nexa/infra/test_skypilot_task.py checks the task it would launch",
    "nexa infra down nexa-golden": "needs the cluster the launch above makes: tests/nexa/infra/test_local_backend.py",
    "nexa infra logs nexa-golden": "needs the cluster the launch above makes: tests/nexa/infra/test_local_backend.py",
    "nexa infra sync nexa-golden": "needs the cluster the launch above makes: tests/nexa/infra/test_local_backend.py",
    "nexa eval lm-eval --model http://127.0.0.1:8000/v1 --tasks my_gen": "needs a served bundle and the user's task "
                                                                          "YAMLs: tests/nexa/serve/test_lm_eval_serve.py",
    "nexa eval lm-eval --model path/to/bundle   --tasks my_gen,my_mc --include-path tasks/ --json": "path/to/bundle and "
                                                                                                    "tasks/ are the user's",
    "nexa eval lm-eval --model path/to/checkpoint --tasks arc_easy": "downloads arc_easy from the Hugging Face hub",
    "nexa eval run --model https://api.openai.com/v1#gpt-4o\n--tasks reasoning --budget-usd 2": "calls the OpenAI API",
    "nexa distill materialize --teacher http://127.0.0.1:8000/v1\n--teacher-model nexus_bundle_v1": "needs `nexa serve` "
                                                                                                    "running: tests/nexa/serve/test_teacher_endpoint.py",
    "nexa serve path/to/bundle --port 8000 --token \"$NEXA_SERVE_TOKEN\"": "serves until stopped: tests/nexa/serve/",
    "nexa session add hf": "reads a secret from a terminal: tests/nexa/session/",
    "nexa run PIPELINE --jobs N": "PIPELINE is the user's file: tests/nexa/pipeline/test_parallel_stages.py runs "
                                  "`nexa run --jobs 2` (the golden fixture runs `nexa demo --jobs 2`)",
    "nexa ui": PROSE, "nexa report": PROSE,
    **{line: PROSE for line in ("nexa auto", "nexa bundle build", "nexa bundle verify", "nexa niwt gate", "nexa cost", "nexa cost report", "nexa data prepare",
                                "nexa distill materialize", "nexa eval", "nexa eval lm-eval", "nexa eval run", "nexa feedback",
                                "nexa feedback review", "nexa infra", "nexa infra status", "nexa infra status --remove-orphans",
                                "nexa init", "nexa pack", "nexa run", "nexa serve", "nexa session list", "nexa session start",
                                "nexa session stop", "nexa train")},
}


def test_every_documented_command_is_run_or_its_reason_given():
    documented = {line for _, line in documented_lines()}
    explained = set(RUN) | set(RUN_BY_THE_GOLDEN_FIXTURE) | set(NOT_RUN)
    assert documented <= explained, f"run these in RUN or give a reason in NOT_RUN: {sorted(documented - explained)}"
    assert set(RUN) <= documented, f"RUN names commands the docs no longer show: {sorted(set(RUN) - documented)}"


def test_the_demo_leaves_the_lab_tokenizer_the_presets_name(golden):
    assert (golden["lab"] / "tokenizer.json").is_file() and (golden["lab"] / "tokenizer_config.json").is_file()
    assert not any((golden["lab"] / "teacher").glob("**/*.safetensors"))  # the teacher stays deleted


@pytest.mark.parametrize("line", RUN, ids=[line.split(" --lab")[0] for line in RUN])
def test_a_documented_command_runs_as_written(line, golden_after_demo):
    proc = golden_after_demo["commands"][line]
    assert proc["returncode"] == 0, f"`{line}` failed:\n{proc['stderr'][-2000:]}"
    if proc["json"]:
        result = json.loads(proc["stdout"])
        assert result.get("status", "succeeded") == "succeeded", result
