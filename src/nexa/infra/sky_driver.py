"""SkyPilot driver: run by SkyPilot's own interpreter, one JSON request on stdin, one JSON answer on stdout.

SkyPilot (0.9-0.14) pins ``click<8.2`` while the lab's dependencies need click >= 8.2, so SkyPilot lives
in its own environment (``.venv-sky``, ``NEXA_SKYPILOT_PYTHON`` or a pipx ``sky``) and nexa drives it
through this file as a separate process (``nexa.infra.sky_process``). It imports only ``sky`` and the
standard library: never ``nexa``, which is not installed there. Secrets arrive in the request on stdin,
never on the command line, in the environment or in a file.

Operations (``{"op": NAME, ...}`` -> ``{"ok": true, ...}`` or ``{"ok": false, "error", "kind"}``):
``version``; ``validate`` (tasks parsed by ``sky.Task.from_yaml_config``, with ``secrets`` values applied as
``--secret`` would; ``secret_refs`` lists secrets still without a value; with ``check_catalog`` each
task's resources matched against SkyPilot's catalog as its optimizer does, cloud by cloud); ``seed_catalog``
(write catalog rows into SkyPilot's catalog cache, for offline checks only); ``launch`` (autodown, and
``sky down`` on every way out); ``status``; ``down``; ``api_stop``; ``batch`` (several in one process).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import traceback

# GCP prices a GPU apart from the VM it is attached to; these are SkyPilot's host VMs per (GPU, count).
_GCP_HOSTS = {("A100", 1): "a2-highgpu-1g", ("A100", 8): "a2-highgpu-8g", ("H100", 1): "a3-highgpu-1g",
              ("H100", 8): "a3-highgpu-8g", ("L4", 1): "g2-standard-8", ("L4", 8): "g2-standard-96"}
_REGIONS = {"aws": "us-east-1", "gcp": "us-central1", "lambda": "us-east-1", "runpod": "US", "primeintellect": "us-east"}
_CATALOG_COLUMNS = ["InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "Price", "SpotPrice",
                    "Region", "AvailabilityZone", "GpuInfo"]


def op_version(request: dict) -> dict:
    import sky

    return {"version": sky.__version__, "python": sys.executable}


def op_validate(request: dict) -> dict:
    """Each task as SkyPilot reads it; with ``check_catalog``, the instance types its catalog offers for it."""
    import sky

    secrets = request.get("secrets")
    return {"tasks": [_describe(_task(config, secrets), request.get("check_catalog", False)) for config in request["tasks"]]}


def _task(config: dict, secrets: dict | None):
    """``sky.Task`` from our YAML; secret values as ``sky launch --secret NAME`` gives them.

    In SkyPilot 0.14 a ``secrets: {NAME: null}`` entry is a reference that must get its value at launch
    (``--secret`` / ``secrets_overrides``) or from a managed-secrets provider; ``Task.update_secrets``
    afterwards would leave the reference unresolved and the launch would fail.
    """
    import sky

    overrides = list((secrets or {}).items()) or None
    return sky.Task.from_yaml_config(config, secrets_overrides=overrides)


def _describe(task, check_catalog: bool) -> dict:
    resources = []
    for res in task.resources:
        row = {"cloud": str(res.cloud).lower() if res.cloud else None, "accelerators": res.accelerators,
               "use_spot": res.use_spot, "autostop": _autostop(res)}
        if check_catalog:
            row["catalog"] = _feasible(res)
        resources.append(row)
    return {"name": task.name, "resources": resources, "secrets": sorted(task.secrets), "envs": sorted(task.envs),
            "secret_refs": sorted(ref.name for ref in task.managed_secret_refs),
            "setup": task.setup, "run": task.run, "file_mounts": dict(task.file_mounts or {})}


def _autostop(res) -> dict | None:
    config = getattr(res, "autostop_config", None)
    if config is None:
        return None
    return {"enabled": config.enabled, "idle_minutes": config.idle_minutes, "down": config.down}


def _feasible(res) -> dict:
    """What SkyPilot's optimizer would consider for ``res`` on its cloud: instance types and their $/h.

    Kubernetes (CoreWeave) has no catalog: its offers come from the cluster itself, so it is not checked offline.
    """
    if res.cloud is None:
        return {"checked": False, "why": "no cloud named"}
    if str(res.cloud).lower() == "kubernetes":
        return {"checked": False, "why": "kubernetes offers come from the cluster, not a catalog"}
    found = res.cloud._get_feasible_launchable_resources(res)  # the optimizer's own per-cloud step
    offers = [{"instance_type": r.instance_type, "usd_per_hour": r.get_cost(3600)} for r in found.resources_list]
    return {"checked": True, "offers": offers, "hint": found.hint}


def op_seed_catalog(request: dict) -> dict:
    """Write ``rows`` (provider, gpu, usd_per_hour, spot_usd_per_hour, memory_gb) as SkyPilot catalogs.

    Only for offline checks in a SkyPilot home of their own: the instance types are made up (``nexa-h100x1``),
    so a home that launches for real must keep the catalogs SkyPilot fetches. An existing file is never replaced.
    """
    from sky.catalog import common

    root = common._ABSOLUTE_VERSIONED_CATALOG_DIR
    clouds: dict[str, str] = request["clouds"]
    written = []
    for provider, cloud in clouds.items():
        if cloud not in _REGIONS:
            continue
        path = os.path.join(root, cloud, "vms.csv")
        if os.path.exists(path):
            raise FileExistsError(f"{path} exists; seed only an empty SkyPilot home")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(_CATALOG_COLUMNS)
            for row in request["rows"]:
                if row["provider"] == provider:
                    writer.writerows(_catalog_rows(cloud, row))
        written.append(path)
    return {"written": written}


def _catalog_rows(cloud: str, row: dict) -> list[list]:
    gpu, price, spot, memory = row["gpu"], float(row["usd_per_hour"]), row["spot_usd_per_hour"], int(row["memory_gb"])
    region = _REGIONS[cloud]
    zone = region + "a" if cloud in ("aws", "gcp") else ""
    rows = []
    for count in (1, 8):
        info = {"Gpus": [{"Name": gpu, "Manufacturer": "NVIDIA", "Count": count, "MemoryInfo": {"SizeInMiB": memory * 1024}}],
                "TotalGpuMemoryInMiB": memory * 1024 * count}
        spot_price = float(spot) * count if spot not in (None, "") else ""
        if cloud == "gcp":  # the GPU row has no VM; its host VM is a row of its own, priced 0 (ours is all-in)
            host = _GCP_HOSTS.get((gpu, count))
            if host is None:
                continue
            rows.append(["", gpu, count, "", "", price * count, spot_price, region, zone, str(info)])
            rows.append([host, "", "", 8 * count, 64 * count, 0.0, 0.0 if spot_price != "" else "", region, zone, ""])
        else:
            rows.append([f"nexa-{gpu.lower()}x{count}", gpu, count, 8 * count, 64 * count, price * count, spot_price,
                         region, zone, str(info)])
    return rows


def op_launch(request: dict) -> dict:
    """Launch with autodown; follow the job; ``sky down`` on success, failure and interruption alike."""
    import sky

    task = _task(request["task"], request.get("secrets"))
    if task.managed_secret_refs:
        raise ValueError(f"no value for secret(s) {', '.join(sorted(r.name for r in task.managed_secret_refs))}")
    cluster = request["cluster"]
    result = {"cluster": cluster, "job_id": None, "exit_code": None, "teardown": False}
    try:
        job_id, _ = sky.stream_and_get(sky.launch(task, cluster_name=cluster, down=True,
                                                  idle_minutes_to_autostop=request["idle_minutes"]))
        result["job_id"] = job_id
        result["exit_code"] = sky.tail_logs(cluster, job_id, follow=True)
    finally:
        sky.stream_and_get(sky.down(cluster))
        result["teardown"] = True
    return result


def op_status(request: dict) -> dict:
    import sky

    prefix = request.get("prefix", "")
    clusters = sky.stream_and_get(sky.status())
    return {"clusters": [{"name": c["name"], "status": str(c.get("status"))} for c in clusters if c["name"].startswith(prefix)]}


def op_down(request: dict) -> dict:
    import sky
    from sky import exceptions

    try:
        sky.stream_and_get(sky.down(request["cluster"]))
    except exceptions.ClusterDoesNotExist:
        return {"cluster": request["cluster"], "down": False, "missing": True}
    return {"cluster": request["cluster"], "down": True, "missing": False}


def op_api_stop(request: dict) -> dict:
    import sky

    sky.api_stop()
    return {"stopped": True}


def op_batch(request: dict) -> dict:
    """Several requests in one process (SkyPilot's import costs seconds): one answer each, a failure in one
    answered as ``{"ok": false, ...}`` without stopping the others."""
    return {"answers": [_answer(item) for item in request["requests"]]}


OPS = {"version": op_version, "validate": op_validate, "seed_catalog": op_seed_catalog, "launch": op_launch,
       "status": op_status, "down": op_down, "api_stop": op_api_stop, "batch": op_batch}


def _answer(request: dict) -> dict:
    op = OPS.get(request.get("op"))
    if op is None:
        return {"ok": False, "kind": "UnknownOp", "error": f"unknown op {request.get('op')!r}; known: {', '.join(OPS)}"}
    try:
        return {"ok": True, **op(request)}
    except Exception as exc:  # reported to nexa, which raises it there; the traceback goes to stderr
        traceback.print_exc(file=sys.stderr)
        return {"ok": False, "kind": type(exc).__name__, "error": str(exc)}


def main() -> int:
    """One request in, one JSON line out; SkyPilot's own printing goes to stderr so stdout stays parseable."""
    answer_to = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever SkyPilot or a process it starts writes to fd 1 lands on stderr
    answer = _answer(json.loads(sys.stdin.read()))
    answer_to.write(json.dumps(answer, default=str) + "\n")
    answer_to.flush()
    return 0 if answer["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
