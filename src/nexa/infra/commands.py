"""``nexa infra launch|status|logs|sync|down`` and ``nexa cost report``: parse, call nexa.infra, print."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from nexa.infra.clusters import load_record  # an unknown cluster is a user's mistake: `error: ...`, exit 2
from nexa.infra.launch import LaunchRequest, check_budget, launch_request, validate_request
from nexa.ledger import Lab
from nexa.ledger.console import FOUND_LAB, JSON, console, emit_result, model_options, table, with_options

app = typer.Typer(help="Ephemeral compute: launch a pipeline or training config on a node, sync, tear down.", no_args_is_help=True)
cost_app = typer.Typer(help="What the lab's runs cost, from their manifests.", no_args_is_help=True)
NEAR_LAB = typer.Option(None, "--lab", help="Lab folder (default: the one holding the launched file).")


@app.command("launch")
@with_options(model_options(LaunchRequest, backend="--backend", gpus="--gpus", provider="--provider", spot="--spot",
                            max_price="--max-price", idle_minutes="--idle-minutes", budget_usd="--budget", hours="--hours",
                            durable="--durable", cluster="--cluster"))
def launch(pipeline: Optional[Path] = typer.Option(None, "--pipeline", help="Pipeline YAML to run on the node."),
           config: Optional[Path] = typer.Option(None, "--config", help="`nexa train` config to run on the node."),
           use_tailscale: bool = typer.Option(False, "--tailscale", help="Join the tailnet with the key in $TS_AUTHKEY (skypilot)."),
           dry_run: bool = typer.Option(False, "--dry-run", help="skypilot: print the validated task YAML, launch nothing."),
           lab_dir: Optional[Path] = NEAR_LAB, json_out: bool = JSON, **settings) -> None:
    """Launch a pipeline or a training config on a node; it syncs to durable storage and is torn down at the end."""
    request = LaunchRequest.for_target(pipeline, config, lab_dir, **settings)
    validate_request(request)  # a refused launch, unknown GPU or price is a user's mistake: `error: ...`, exit 2
    estimate = check_budget(request)
    if request.backend == "skypilot" and dry_run:
        from nexa.infra.skypilot import dry_run_task

        text, checked = dry_run_task(request, use_tailscale)
        if not checked:
            console.print("[yellow]SkyPilot not found: checked against the vendored task schema only[/yellow]")
        sys.stdout.write(text)
        return
    if request.backend == "local":
        console.print(f"launching [bold]{request.cluster_name}[/bold] (local, estimate ${estimate:.2f}) -> {request.durable_url}")
    result = launch_request(request, use_tailscale)
    emit_result(result.as_json(), json_out)
    if result.status != "succeeded":
        raise typer.Exit(1)


@app.command("status")
def status(remove_orphans: bool = typer.Option(False, "--remove-orphans", help="Tear down clusters no launcher looks after."),
           lab: Lab = FOUND_LAB, json_out: bool = JSON) -> None:
    """List the lab's clusters; find orphans (launcher gone, or a SkyPilot cluster with no record) and offer to remove them."""
    from nexa.infra.status import cluster_status, status_notes

    result = cluster_status(lab, remove_orphans)
    emit_result(result, json_out, table("clusters", ["cluster", "backend", "status", "run_id", "cost $", "torn down"],
                                        [list(r.values()) for r in result["clusters"]]), *status_notes(result, remove_orphans))


@app.command("logs")
def logs(cluster: str, lines: int = typer.Option(200, "--lines", min=1), lab: Lab = FOUND_LAB) -> None:
    """Print the end of a cluster's node log (from the lab, or from durable storage once synced)."""
    sys.stdout.write(load_record(lab, cluster).log_tail(lines))


@app.command("sync")
def sync(cluster: str, lab: Lab = FOUND_LAB, json_out: bool = JSON) -> None:
    """Copy a cluster's node log and its runs' logs to durable storage now (stage outputs sync as they commit)."""
    from nexa.infra.local import sync as sync_local

    record = load_record(lab, cluster)
    written = sync_local(lab, record)
    emit_result({"cluster": cluster, "durable": record.durable, "synced": written}, json_out)


@app.command("down")
def down(cluster: str, lab: Lab = FOUND_LAB, json_out: bool = JSON) -> None:
    """Tear a cluster down: stop its node, sync its log, remove its scratch (SkyPilot: `sky down`)."""
    from nexa.infra.status import tear_down

    record = tear_down(lab, load_record(lab, cluster))
    emit_result({"cluster": cluster, "status": record.status, "teardown": record.teardown}, json_out)


@cost_app.command("report")
def report(by: str = typer.Option("stage", "--by", help="stage | run | provider | day"),
           lab: Lab = FOUND_LAB, json_out: bool = JSON) -> None:
    """What the lab's runs cost (compute hours x price + API tokens x price), grouped by stage, run, provider or day."""
    from nexa.infra.report import cost_report

    result = cost_report(lab, by=by)
    emit_result(result, json_out, table(f"cost by {by} (total ${result['total_usd']:.4f})", ["run_id", "stage", "provider", "hours", "usd"],
                                        [list(r.values()) for r in result["rows"]]))
