"""The SkyPilot backend: a launch request rendered as a SkyPilot task, validated, and launched with autodown.

Tasks are built as SkyPilot task YAML (a dict). SkyPilot itself runs in its own environment and is
driven as a separate process (``nexa.infra.sky_process`` runs ``sky_driver.py`` in SkyPilot's
interpreter): it validates tasks (``sky.Task.from_yaml_config``; offline, with a seeded catalog, also
the optimizer's per-cloud instance lookup), launches, lists and tears down clusters. A cheap first
check against a *vendored copy* of SkyPilot 0.14.1's task schema (``sky_task.schema.json``) runs
in-process on every task; it is the only check where no SkyPilot interpreter is found, and the
dry run says so. Launching for real needs SkyPilot, the provider's credentials and the explicit
opt-in ``NEXA_ALLOW_CLOUD=1``; every cluster is launched with ``down=True`` and an idle timeout
(autodown: Lambda and RunPod cannot stop, only tear down), and every way out of a launch tears the
cluster down.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nexa.infra import sky_process, tailscale
from nexa.infra.catalog import SKY_CLOUDS, parse_gpus
from nexa.infra.clusters import ClusterRecord, list_records, process_alive, save_record
from nexa.infra.launch import LaunchRefused, LaunchRequest, LaunchResult, estimate_usd, hourly_price

SCHEMA_FILE = Path(__file__).with_name("sky_task.schema.json")
OPT_IN = "NEXA_ALLOW_CLOUD"
CLUSTER_PREFIX = "nexa-"
REMOTE_LAB = "~/lab"
REMOTE_SRC = "~/nexacompute"
# Where SkyPilot itself looks for each provider's credentials (env var or file), as its `sky check` does.
CREDENTIALS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "lambda": ((), ("~/.lambda_cloud/lambda_keys",)),
    "runpod": (("RUNPOD_API_KEY",), ("~/.runpod/config.toml",)),
    "coreweave": (("KUBECONFIG",), ("~/.kube/config",)),
    "primeintellect": (("PRIME_API_KEY",), ("~/.prime/config.json",)),
    "aws": (("AWS_ACCESS_KEY_ID",), ("~/.aws/credentials",)),
    "gcp": (("GOOGLE_APPLICATION_CREDENTIALS",), ("~/.config/gcloud/application_default_credentials.json",)),
}
# Secrets the node needs to write the durable tier, by URL scheme (names only; values are attached at launch).
DURABLE_SECRETS: dict[str, tuple[str, ...]] = {
    "s3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), "gs": ("GOOGLE_APPLICATION_CREDENTIALS",),
}


class MissingCredentials(LaunchRefused):
    """The provider's credentials are not on this machine; the message says which and where."""


def check_credentials(provider: str) -> None:
    """Raise naming the env var or file SkyPilot would read when none of them is present."""
    env_vars, files = CREDENTIALS[provider]
    if any(os.environ.get(v) for v in env_vars) or any(Path(f).expanduser().is_file() for f in files):
        return
    wanted = [f"${v}" for v in env_vars] + list(files)
    raise MissingCredentials(f"no {provider} credentials: set {' or '.join(wanted)} (see `sky check {SKY_CLOUDS[provider]}`); "
                             "nothing was launched")


def build_task(request: LaunchRequest, use_tailscale: bool = False) -> dict[str, Any]:
    """The SkyPilot task YAML (as a dict) for ``request``; holds secret *names* only, never values."""
    gpu, count = parse_gpus(request.gpus or "")
    provider = request.provider or ""
    if "://" not in request.durable_url or request.durable_url.startswith("file://"):
        raise LaunchRefused(f"a cloud node cannot write the local durable tier {request.durable_url}; pass --durable s3://BUCKET/PREFIX")
    lab_target = request.target.resolve().relative_to(request.lab.root) if request.target.resolve().is_relative_to(request.lab.root) \
        else Path("pipelines") / request.target.name
    node_command = (f"nexa run {REMOTE_LAB}/{lab_target.as_posix()} --lab {REMOTE_LAB} --json" if request.target_kind == "pipeline"
                    else f"nexa train --config {REMOTE_LAB}/{lab_target.as_posix()} --lab {REMOTE_LAB} --json")
    envs = {"NEXA_DURABLE": request.durable_url, "NEXA_PROVIDER": provider, "NEXA_SPOT": "1" if request.spot else "0",
            "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    if request.budget_usd is not None:
        envs["NEXA_BUDGET_USD"] = str(request.budget_usd)
    scheme = request.durable_url.split("://")[0]
    secrets: dict[str, None] = {name: None for name in DURABLE_SECRETS.get(scheme, ())}
    run_lines = ["set -euo pipefail", f"cd {REMOTE_LAB}"]
    setup_lines = ["set -euo pipefail", f'pip install -q "{REMOTE_SRC.replace("~", "$HOME")}[s3]"']
    task: dict[str, Any] = {
        "name": request.cluster_name,
        "file_mounts": {REMOTE_LAB: str(request.lab.root), REMOTE_SRC: str(source_root())},
        "resources": {
            "infra": SKY_CLOUDS[provider],
            "accelerators": f"{gpu}:{count}",
            "use_spot": request.spot,
            "autostop": {"idle_minutes": request.idle_minutes, "down": True},
        },
        "envs": envs,
    }
    if use_tailscale:
        secrets[tailscale.AUTH_KEY_SECRET] = None
        setup_lines.append(tailscale.INSTALL)
        run_lines.append(tailscale.join_script(request.cluster_name))
        task["config"] = {"hooks": [{"events": ["stop", "preemption", "down"], "run": tailscale.LOGOUT}]}
    run_lines.append(node_command)
    task["setup"] = "\n".join(setup_lines) + "\n"
    task["run"] = "\n".join(run_lines) + "\n"
    if secrets:
        task["secrets"] = secrets
    validate_task(task)
    return task


def validate_task(task: dict[str, Any]) -> None:
    """Check ``task`` against the VENDORED copy of SkyPilot 0.14.1's task schema (no SkyPilot needed).

    A fast first check on every task and the fallback where no SkyPilot interpreter is found; the real
    check is :func:`validate_with_skypilot`. A bad field raises naming its path.
    """
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(task), key=lambda e: list(e.path))
    if errors:
        raise ValueError("invalid SkyPilot task: " + "; ".join(f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors))
    accelerators = task["resources"].get("accelerators", "")
    if isinstance(accelerators, str) and accelerators:
        parse_gpus(accelerators)


def task_yaml(task: dict[str, Any]) -> str:
    """The task as SkyPilot YAML, multi-line scripts in block style so they read like scripts."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _text(dumper, value: str):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    _Dumper.add_representer(str, _text)
    return yaml.dump(task, Dumper=_Dumper, sort_keys=False)


def source_root() -> Path:
    """The nexacompute source tree to install on the node (the checkout this code runs from)."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "pyproject.toml").is_file():
        raise LaunchRefused(f"cannot find the nexacompute source tree to ship to the node (looked in {root})")
    return root


def validate_with_skypilot(tasks: list[dict[str, Any]], check_catalog: bool = False, python: Path | None = None,
                           secrets: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The tasks as the real SkyPilot reads them (cloud, accelerators, spot, autostop, secret names, the
    ``secret_refs`` still without a value; with ``check_catalog`` the instance types its catalog offers);
    ``secrets`` values are applied as ``sky launch --secret`` does. A task SkyPilot rejects raises SkyDriverError."""
    payload = {"tasks": tasks, "check_catalog": check_catalog, "secrets": secrets or {}}
    return sky_process.call("validate", payload, python=python)["tasks"]


def dry_run_task(request: LaunchRequest, use_tailscale: bool = False) -> tuple[str, bool]:
    """``--dry-run``: the task YAML, and whether the real SkyPilot checked it (where one is found; else only the
    vendored task schema did)."""
    task = build_task(request, use_tailscale)
    python = sky_process.find_sky_python()
    if python is not None:
        validate_with_skypilot([task], python=python)
    return task_yaml(task), python is not None


def launch_skypilot(request: LaunchRequest, use_tailscale: bool = False) -> LaunchResult:
    """Launch for real: opt-in, SkyPilot and credentials required; any failure tears the cluster down."""
    build_task(request, use_tailscale)  # refuses a bad request before credentials are looked at
    check_credentials(request.provider or "")
    secret_values = _secret_values(request, use_tailscale)
    task_config = build_task(request, use_tailscale)
    if os.environ.get(OPT_IN) != "1":
        raise LaunchRefused(f"real cloud launches are opt-in: set {OPT_IN}=1 (use --dry-run to see the task)")
    python = sky_process.require_sky_python()
    validate_with_skypilot([task_config], python=python)
    record = ClusterRecord(cluster=request.cluster_name, backend="skypilot", target=str(request.target), target_kind=request.target_kind,
                           durable=request.durable_url, provider=request.provider or "", gpus=request.gpus or "", spot=request.spot,
                           usd_per_hour=hourly_price(request), budget_usd=request.budget_usd, status="launching",
                           launcher_pid=os.getpid())
    save_record(request.lab, record)
    try:
        answer = sky_process.call("launch", {"task": task_config, "secrets": secret_values, "cluster": record.cluster,
                                             "idle_minutes": request.idle_minutes}, python=python, timeout=None)
        record.status = "succeeded" if answer["exit_code"] == 0 else "failed"
        record.teardown = answer["teardown"]
    except BaseException as exc:
        record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if not record.teardown:  # the driver died or was interrupted before its own `sky down`
            sky_process.call("down", {"cluster": record.cluster}, python=python)
            record.teardown = True
        save_record(request.lab, record)
    return LaunchResult(record.cluster, "skypilot", record.run_id, record.status, record.durable, estimate_usd(request), True)


def _secret_values(request: LaunchRequest, use_tailscale: bool) -> dict[str, str]:
    """Values for the task's secrets, read from this machine's environment at launch time only."""
    scheme = request.durable_url.split("://")[0]
    names = list(DURABLE_SECRETS.get(scheme, ()))
    values = {n: os.environ[n] for n in names if os.environ.get(n)}
    missing = [n for n in names if n not in values]
    if missing:
        raise MissingCredentials(f"the node needs {', '.join('$' + n for n in missing)} to write {request.durable_url}; nothing was launched")
    if use_tailscale:
        values[tailscale.AUTH_KEY_SECRET] = tailscale.auth_key_from_env()
    return values


def orphaned_sky_clusters(lab) -> list[str] | None:
    """SkyPilot clusters named ``nexa-*`` that this lab has no live record of (left behind by a crash).

    SkyPilot is asked only when the lab has launched on it (a record is written before every launch), so
    a local-only lab never starts SkyPilot's API server. ``None``: the lab has SkyPilot records but no
    SkyPilot interpreter is found, so nothing could be checked (``status`` says so).
    """
    records = [r for r in list_records(lab) if r.backend == "skypilot"]
    if not records:
        return []
    python = sky_process.find_sky_python()
    if python is None:
        return None
    live = {r.cluster for r in records if r.status in ("launching", "running") and process_alive(r.launcher_pid)}
    clusters = sky_process.call("status", {"prefix": CLUSTER_PREFIX}, python=python)["clusters"]
    return sorted(c["name"] for c in clusters if c["name"] not in live)


def down_sky_cluster(name: str) -> bool:
    """``sky down NAME`` through the driver; False when SkyPilot has no such cluster (already gone)."""
    return sky_process.call("down", {"cluster": name})["down"]
