"""benchmarks/serve_load.py against a real ``nexa serve`` subprocess: no errors, and each malformed case's 4xx."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import httpx
from typer.testing import CliRunner

from nexa.cli import app

ROOT = Path(__file__).resolve().parents[3]


def _load_script():
    spec = importlib.util.spec_from_file_location("serve_load", ROOT / "benchmarks" / "serve_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_load_script_against_spawned_server(bundle):
    script = _load_script()
    with script.served(bundle, "load-token") as url:
        result = script.measure(url, "load-token", n=16, concurrency=4, seed=42)
        assert httpx.get(f"{url}/healthz").status_code == 200
    assert result["requests"] == 16 and result["errors"] == 0, result["error_samples"]
    assert 0 < result["p50_ms"] <= result["p95_ms"] and result["rps"] > 0
    assert result["malformed"] == {"bad_json": 400, "wrong_types": 400, "huge_max_tokens": 400, "missing_auth": 401}
    assert result["malformed_ok"] and result["model"] == "tiny"
    assert result["server_requests_served"] == 17  # 16 measured + the warm-up
    try:
        httpx.get(f"{url}/healthz", timeout=2)
        raise AssertionError("the spawned server is still running after the context exited")
    except httpx.TransportError:
        pass


def test_cli_rejects_a_folder_that_is_not_a_bundle(tmp_path):
    result = CliRunner().invoke(app, ["serve", str(tmp_path), "--port", "1"], env={"COLUMNS": "400"})
    assert result.exit_code == 2 and "not a bundle" in result.output and result.exception is not None
    assert not isinstance(result.exception, (ValueError, OSError))  # a usage error, not a crash


def test_percentile_is_nearest_rank():
    script = _load_script()
    values = [float(v) for v in range(1, 101)]
    assert (script.percentile(values, 50), script.percentile(values, 95), script.percentile([3.0], 95)) == (50.0, 95.0, 3.0)
    assert json.dumps(script.EXPECTED) == '{"bad_json": 400, "wrong_types": 400, "huge_max_tokens": 400, "missing_auth": 401}'
