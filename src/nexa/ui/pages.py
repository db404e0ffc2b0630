"""Server-rendered HTML of the dashboard and the report: tables, sections and the page frame.

Every value goes through :func:`html.escape`; links point only at the dashboard's own routes, so the
same sections render in the app (links live) and in an exported report (links shown as text).
"""

from __future__ import annotations

import html
import json
from typing import Any, Callable
from urllib.parse import quote, urlencode

from nexa.ledger.manifests import RunManifest
from nexa.ui import plots
from nexa.ui.labview import Artifact, LabView, Missing, intervals

LEADERBOARD_COLUMNS = ["model", "role", "capability", "metric", "score", "n", "latency_ms", "cost_usd",
                       "judge_model_id", "run_id"]
STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;color:#222;padding:0 1em}
nav a{margin-right:1.2em}table{border-collapse:collapse;margin:.8em 0}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}th{background:#f3f3f3}
th a{color:#222}.msg{padding:.6em 1em;border-radius:4px;margin:1em 0}.msg.error{background:#fde2e1;border:1px solid #d1495b}
.msg.info{background:#e7f0fb;border:1px solid #6b9bd2}.msg.ok{background:#e3f6e8;border:1px solid #2a9d55}
.pass{color:#2a9d55;font-weight:bold}.fail{color:#d1495b;font-weight:bold}.plots{display:grid;grid-template-columns:1fr 1fr;gap:8px}
ul.tree{list-style:none;padding-left:1.2em;border-left:1px dotted #aaa}pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:12px}
form.inline{display:inline}textarea{width:18em;height:2.2em}.dim{color:#777}
"""


def esc(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape("" if value is None else str(value))


def message(text: str, kind: str = "info") -> str:
    """A visible note (``info``, ``ok`` or ``error``) with a stable class the tests look for."""
    return f'<div class="msg {kind}" role="status">{esc(text)}</div>'


def page(title: str, body: str, scripts: str, nav: bool = True) -> str:
    """The whole HTML document; ``scripts`` loads plotly.js (a local URL in the app, inline in a report)."""
    links = ('<nav><a href="/">Leaderboard</a><a href="/runs">Runs</a><a href="/verify">Verify</a>'
             '<a href="/feedback">Feedback</a><a href="/review">Review queue</a></nav>') if nav else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{STYLE}</style>"
            f"{scripts}</head><body>{links}<h1>{esc(title)}</h1>{body}</body></html>")


def table(rows: list[dict[str, Any]], columns: list[str], table_id: str = "",
          links: dict[str, Callable[[Any], str]] | None = None, header: Callable[[str], str] | None = None) -> str:
    """A plain table; ``links`` turns a column's cells into links, ``header`` renders each column head."""
    links = links or {}
    head = "".join(f"<th>{header(c) if header else esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c), links.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any, link: Callable[[Any], str] | None) -> str:
    if link is None or value is None:
        return esc(value)
    return f'<a href="{esc(link(value))}">{esc(value)}</a>'


def run_link(run_id: str) -> str:
    return f"/runs/{quote(str(run_id))}"


def dataset_link(ref: str) -> str:
    return f"/datasets/{quote(str(ref))}"


# -- leaderboard ----------------------------------------------------------------------------------
def leaderboard(rows: list[dict], all_rows: list[dict], query: dict[str, str], interactive: bool = True) -> str:
    """Filters, the table (one ``<tr>`` per row, sortable heads) and the three plots of the front page.

    ``interactive=False`` (an exported report) leaves out the filter form and the sort links.
    """
    if not all_rows:
        return message("No leaderboard in this lab yet: run an evaluation (`nexa eval run` or `nexa demo`) "
                       "and reload.", "info")
    sort, desc = query.get("sort", ""), query.get("desc", "") == "1"

    def head(column: str) -> str:
        flip = "0" if column == sort and desc else "1"
        arrow = (" ▼" if desc else " ▲") if column == sort else ""
        return f'<a href="/?{esc(urlencode({**query, "sort": column, "desc": flip}))}">{esc(column)}{arrow}</a>'

    shown = message(f"{len(rows)} of {len(all_rows)} rows match the filters.", "info") if len(rows) != len(all_rows) else ""
    empty = message("No row matches these filters.", "info") if not rows else ""
    return ((_filters(all_rows, query) if interactive else "") + shown + empty
            + table(rows, LEADERBOARD_COLUMNS, "leaderboard", {"run_id": run_link}, head if interactive else None)
            + _zero_cost_note(rows) + '<div class="plots">'
            + "".join(plots.div(f(rows), name) for name, f in (("cost_quality", plots.cost_quality),
                      ("capability", plots.capability_scores), ("over_time", plots.scores_over_time)))
            + "</div>")


def _filters(rows: list[dict], query: dict[str, str]) -> str:
    selects = []
    for field, label in (("capability", "capability"), ("role", "role"), ("run", "run")):
        column = "run_id" if field == "run" else field
        options = "".join(f'<option value="{esc(v)}"{" selected" if query.get(field) == v else ""}>{esc(v)}</option>'
                          for v in sorted({str(r[column]) for r in rows}))
        selects.append(f'<label>{label} <select name="{field}" id="filter-{field}"><option value="">all</option>{options}</select></label> ')
    return f'<form method="get" action="/" id="filters">{"".join(selects)}<button type="submit">Filter</button> <a href="/">clear</a></form>'


def _zero_cost_note(rows: list[dict]) -> str:
    if rows and not any(r.get("cost_usd") for r in rows):
        return message("Every cost is $0: these evals ran on the `local` provider, which is free. "
                       "Set `provider` and `prices` in nexa.yaml to price the hardware.", "info")
    return ""


# -- runs -----------------------------------------------------------------------------------------
def runs_table(view: LabView) -> str:
    if not view.runs:
        return message("This lab has no runs yet: `nexa demo --lab DIR` makes a full set.", "info")
    rows = [{"run_id": r.run_id, "type": r.run_type, "status": r.status, "started": r.started_at.isoformat(timespec="seconds"),
             "cost_usd": r.cost_estimate_usd_total, "parent": r.parent_run_id} for r in reversed(view.runs)]
    return table(rows, list(rows[0]), "runs", {"run_id": run_link, "parent": run_link})


def run_page(view: LabView, run: RunManifest, stages: list[dict], lineage: dict | Missing, missing: list[Missing]) -> str:
    """Manifest, stage timings and cost, config, lineage (clickable), children and missing artifacts."""
    parts = [message(f"{m.what}: {m.reason}", "error") for m in missing]
    if run.error:
        parts.append(message(f"this run failed: {run.error}", "error"))
    summary = {"run_id": run.run_id, "run_type": run.run_type, "status": run.status,
               "started_at": run.started_at.isoformat(timespec="seconds"),
               "ended_at": run.ended_at.isoformat(timespec="seconds") if run.ended_at else None,
               "cost_usd": run.cost_estimate_usd_total, "provider": run.provider, "gpu_type": run.gpu_type,
               "code_version": run.code_version, "config_hash": (run.config_hash or "")[:16],
               "dataset_id": run.dataset_id, "parent_run_id": run.parent_run_id, "seed": run.seed}
    parts.append("<h2>Manifest</h2>" + table([summary], list(summary), "manifest", {"parent_run_id": run_link}))
    if stages:
        total = sum(s["cost_usd"] or 0 for s in stages)
        parts.append(f"<h2>Stages ({sum(s['seconds'] for s in stages):.1f} s, ${total:.6f})</h2>"
                     + table(stages, list(stages[0]), "stages", {"run_id": run_link}))
    parts.append(f'<h2>Config</h2><details id="config"><summary>sha256 {esc(run.config_hash)} (show)</summary>'
                 f"<pre>{esc(json.dumps(run.config, indent=2, sort_keys=True, default=str))}</pre></details>")
    parts.append("<h2>Cost</h2>" + table([run.cost.model_dump()], list(run.cost.model_dump()), "cost"))
    refs = [{"direction": d, **a.model_dump(include={"kind", "ref", "path"})} for d, refs in (("in", run.inputs), ("out", run.outputs)) for a in refs]
    parts.append("<h2>Inputs and outputs</h2>" + (table(refs, ["direction", "kind", "ref", "path"], "artifacts") if refs
                 else message("this run recorded no input or output artifact", "info")))
    parts.append("<h2>Lineage</h2>" + (message(f"lineage: {lineage.reason}", "error") if isinstance(lineage, Missing)
                                       else f'<div id="lineage"><ul class="tree">{_tree(lineage)}</ul></div>'))
    children = view.children(run.run_id)
    if children:
        parts.append("<h2>Child runs</h2>" + table(
            [{"run_id": c.run_id, "type": c.run_type, "status": c.status, "cost_usd": c.cost.total_usd} for c in children],
            ["run_id", "type", "status", "cost_usd"], "children", {"run_id": run_link}))
    return "".join(parts)


def _tree(node: dict) -> str:
    link = {"run": run_link, "dataset": dataset_link}.get(node["kind"])
    label = f'<a href="{esc(link(node["ref"]))}">{esc(node["ref"])}</a>' if link else esc(node["ref"])
    parents = "".join(_tree(p) for p in node["parents"])
    if node["kind"] == "run":
        label += f' (<a href="{esc(run_link(node["ref"]))}#config">config</a>)'
    return (f'<li><span class="dim">{esc(node["kind"])}</span> {label} {esc(node["detail"])}'
            + (f'<ul class="tree">{parents}</ul>' if parents else "") + "</li>")


def dataset_page(manifest, rows_preview: list[dict]) -> str:
    info = {"ref": manifest.ref, "rows": manifest.rows, "schema": manifest.row_schema, "content_hash": manifest.content_hash[:16],
            "created_by": manifest.created_by, "created_at": manifest.created_at.isoformat(timespec="seconds"), "notes": manifest.notes}
    parents = "".join(f'<li><a href="{esc(dataset_link(p))}">{esc(p)}</a></li>' for p in manifest.parents) or "<li>none (raw data)</li>"
    filters = [f.model_dump() for f in manifest.filters]
    return ("<h2>Manifest</h2>" + table([info], list(info), "dataset", {"created_by": run_link})
            + f"<h2>Parents</h2><ul id='parents'>{parents}</ul>"
            + (f"<h2>Splits</h2>{table([manifest.splits], list(manifest.splits))}" if manifest.splits else "")
            + ("<h2>Filters</h2>" + table(filters, ["name", "version", "removed", "params"]) if filters else "")
            + f"<h2>First rows</h2>{table(rows_preview, list(rows_preview[0]) if rows_preview else [])}")


# -- verify and feedback --------------------------------------------------------------------------
def verify_section(artifact: Artifact, report: dict | Missing) -> str:
    """The gate verdict, per-capability scores and retention (with intervals when the report has them)."""
    where = f'<p class="dim">from {esc(artifact.name)} of run <a href="{esc(run_link(artifact.run_id))}">{esc(artifact.run_id)}</a></p>'
    if isinstance(report, Missing):
        return where + message(f"verify report unreadable: {report.reason}", "error")
    gate = report.get("retain_fraction")
    verdict = '<span class="pass">PASSED</span>' if report.get("passed") else '<span class="fail">FAILED</span>'
    cis = intervals(report)
    rows = []
    for capability, kept in sorted(report.get("retention", {}).items()):
        row = {"capability": capability, "teacher": report.get("teacher_scores", {}).get(capability),
               "student": report.get("student_scores", {}).get(capability), "retention": kept,
               "gate": gate, "passes": "yes" if gate is None or kept >= gate else "no"}
        row.update({name: _interval(values.get(capability)) for name, values in cis.items()})
        rows.append(row)
    columns = ["capability", "teacher", "student", "retention", *cis, "gate", "passes"]
    first_ci = next(iter(cis.values()), None)
    checks = report.get("checks", {})
    return (where + f"<h3>Gate: {verdict} (every capability ≥ {esc(gate)} × teacher)</h3>"
            + table(rows, columns, "verify") + plots.div(plots.retention(report, first_ci), "retention")
            + ("<h3>Checks</h3>" + table([{k: json.dumps(v) for k, v in checks.items()}], list(checks)) if checks else ""))


def _interval(value: Any) -> str:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f"[{value[0]:.3f}, {value[1]:.3f}]"
    return "" if value is None else str(value)


def feedback_section(artifact: Artifact, result: dict | Missing) -> str:
    where = f'<p class="dim">from {esc(artifact.name)} of run <a href="{esc(run_link(artifact.run_id))}">{esc(artifact.run_id)}</a></p>'
    if isinstance(result, Missing):
        return where + message(f"feedback result unreadable: {result.reason}", "error")
    rows = [{"capability": c, "before": v.get("before"), "after": v.get("after"),
             "change": None if v.get("after") is None or v.get("before") is None else round(v["after"] - v["before"], 4)}
            for c, v in sorted(result.items())]
    return where + table(rows, ["capability", "before", "after", "change"], "feedback") + plots.div(plots.feedback(result), "feedback")


# -- review queue ---------------------------------------------------------------------------------
def review_page(queues: list, sample_runs: list[str]) -> str:
    """Every queue's items with approve / reject / edit forms that carry the revision the reviewer saw."""
    sample = ""
    if sample_runs:
        options = "".join(f'<option value="{esc(r)}">{esc(r)}</option>' for r in sample_runs)
        sample = ('<form method="post" action="/review/sample" id="sample-form"><label>sample outputs of run '
                  f'<select name="run_id">{options}</select></label> <label>n <input name="n" value="10" size="3"></label> '
                  '<button type="submit">New queue</button></form>')
    if not queues:
        return sample + message("No review queue yet: sample one above or with `nexa feedback review sample --run ID`.", "info")
    return sample + "".join(_queue(q) for q in queues)


def _queue(queue) -> str:
    rows = "".join(_review_row(queue.queue_id, item) for item in queue.items)
    return (f'<h2>Queue {esc(queue.queue_id)} <span class="dim">from run <a href="{esc(run_link(queue.source_run))}">'
            f'{esc(queue.source_run)}</a></span></h2><table class="review" data-queue="{esc(queue.queue_id)}"><thead><tr>'
            "<th>item</th><th>capability</th><th>prompt</th><th>output</th><th>reference</th><th>decision</th>"
            f"<th>review</th></tr></thead><tbody>{rows}</tbody></table>")


def _review_row(queue_id: str, item) -> str:
    action = f"/review/{quote(queue_id)}/{quote(item.item_id)}"
    decided = esc(item.decision) + (f" (edited: {esc(item.edited_output)})" if item.edited_output is not None else "")
    who = f' <span class="dim">by {esc(item.reviewer)}</span>' if item.reviewer else ""
    form = (f'<form method="post" action="{esc(action)}" class="inline">'
            f'<input type="hidden" name="revision" value="{item.revision}">'
            '<input name="reviewer" placeholder="reviewer" size="8"> '
            '<button name="decision" value="accept" type="submit">Approve</button> '
            '<button name="decision" value="exclude" type="submit">Reject</button> '
            f'<textarea name="edited_output" placeholder="corrected answer">{esc(item.output)}</textarea> '
            '<button name="decision" value="edit" type="submit">Save edit</button></form>')
    return (f'<tr id="item-{esc(item.item_id)}" data-decision="{esc(item.decision)}"><td>{esc(item.item_id)}</td>'
            f"<td>{esc(item.capability)}</td><td>{esc(item.prompt)}</td><td>{esc(item.output)}</td><td>{esc(item.reference)}</td>"
            f'<td class="decision">{decided}{who}</td><td>{form}</td></tr>')
