"""The lab's clusters as ``nexa infra status`` and ``nexa infra down`` see them, for either backend.

An orphan is a cluster no launcher looks after any more: a local node whose launcher process is gone, or a
SkyPilot cluster with no record in the lab. Both backends are torn down through the one function here.
"""

from __future__ import annotations

from nexa.infra.clusters import ClusterRecord, is_orphaned, list_records, save_record
from nexa.ledger import Lab


def cluster_status(lab: Lab, remove_orphans: bool = False) -> dict:
    """``{"clusters": rows, "orphans": names, "removed": bool, "skypilot_checked": bool}``.

    With ``remove_orphans`` every orphan is torn down first. SkyPilot is asked (through its driver
    process) only when the lab has SkyPilot records; ``skypilot_checked`` is False when it has them but
    no SkyPilot interpreter was found, so its cloud orphans could not be looked for.
    """
    from nexa.infra.local import down as down_local
    from nexa.infra.skypilot import down_sky_cluster, orphaned_sky_clusters

    records = list_records(lab)
    orphans = [r.cluster for r in records if is_orphaned(r)]
    found = orphaned_sky_clusters(lab)
    sky_orphans = found or []
    if remove_orphans:
        for record in records:
            if record.cluster in orphans:
                down_local(lab, record)
        for name in sky_orphans:
            down_sky_cluster(name)
            record = next((r for r in records if r.cluster == name), None)
            if record is not None:
                record.status, record.teardown = "down", True
                save_record(lab, record)
    known = {r.cluster for r in records}
    rows = [{"cluster": r.cluster, "backend": r.backend, "status": "orphaned" if r.cluster in orphans + sky_orphans else r.status,
             "run_id": r.run_id, "cost_usd": round(r.cost_usd, 6), "teardown": r.teardown} for r in records]
    rows += [{"cluster": n, "backend": "skypilot", "status": "orphaned", "run_id": None, "cost_usd": None, "teardown": False}
             for n in sky_orphans if n not in known]
    return {"clusters": rows, "orphans": orphans + sky_orphans, "removed": remove_orphans, "skypilot_checked": found is not None}


def tear_down(lab: Lab, record: ClusterRecord) -> ClusterRecord:
    """Stop a cluster (local: its node, log synced, scratch removed; SkyPilot: ``sky down``) and record it."""
    from nexa.infra.local import down as down_local
    from nexa.infra.skypilot import down_sky_cluster

    if record.backend == "local":
        return down_local(lab, record)
    down_sky_cluster(record.cluster)
    record.status, record.teardown = "down", True
    save_record(lab, record)
    return record


def status_notes(result: dict, remove_orphans: bool) -> list[str]:
    """What a person reading ``nexa infra status`` must be told beside the table: SkyPilot clusters that could not
    be checked, and orphans left running (with the command that removes them)."""
    notes = [] if result["skypilot_checked"] else ["SkyPilot not found: the lab's SkyPilot clusters could not be checked for orphans"]
    if result["orphans"] and not remove_orphans:
        notes.append(f"orphaned: {', '.join(result['orphans'])}; remove them with `nexa infra status --remove-orphans`")
    return notes
