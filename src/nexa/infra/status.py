"""The lab's clusters as ``nexa infra status`` and ``nexa infra down`` see them, for either backend.

An orphan is a cluster no launcher looks after any more: a local node whose launcher process is gone, or a
SkyPilot cluster with no record in the lab. Both backends are torn down through the one function here.
"""

from __future__ import annotations

from nexa.infra.clusters import ClusterRecord, is_orphaned, list_records, save_record
from nexa.ledger import Lab


def cluster_status(lab: Lab, remove_orphans: bool = False) -> dict:
    """``{"clusters": rows, "orphans": names, "removed": bool}``; with ``remove_orphans`` every orphan is torn down first."""
    from nexa.infra.local import down as down_local
    from nexa.infra.skypilot import down_sky_cluster, orphaned_sky_clusters

    records = list_records(lab)
    orphans = [r.cluster for r in records if is_orphaned(r)]
    sky_orphans = orphaned_sky_clusters(lab)
    if remove_orphans:
        for record in records:
            if record.cluster in orphans:
                down_local(lab, record)
        for name in sky_orphans:
            down_sky_cluster(name)
    rows = [{"cluster": r.cluster, "backend": r.backend, "status": "orphaned" if r.cluster in orphans else r.status,
             "run_id": r.run_id, "cost_usd": round(r.cost_usd, 6), "teardown": r.teardown} for r in records]
    rows += [{"cluster": n, "backend": "skypilot", "status": "orphaned", "run_id": None, "cost_usd": None, "teardown": False}
             for n in sky_orphans]
    return {"clusters": rows, "orphans": orphans + sky_orphans, "removed": remove_orphans}


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
