"""`nexa data prepare|show` import only what they need, and `show` still checks what it reads."""

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "src"

# Runs the CLI in this fresh interpreter, then reports which heavy modules the command imported.
_PROBE = """
import json, sys
from nexa.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    print(json.dumps({m: m in sys.modules for m in ("pandas", "jsonschema", "torch", "pyarrow.compute")}), file=sys.stderr)
"""


def _cli(*args: str, cwd: Path) -> tuple[dict, dict]:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", _PROBE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout), json.loads(done.stderr.strip().splitlines()[-1])


def test_prepare_and_show_run_without_pandas_or_jsonschema(lab, mixed_jsonl):
    out, imported = _cli("data", "prepare", "--input", str(mixed_jsonl), "--schema", "qa", "--dataset", "lean",
                         "--filters", "exact", "--lab", str(lab.root), "--json", cwd=lab.root)
    assert out["counts"]["read"] == 200 and out["counts"]["quarantined"] == 6 and out["counts"]["written"] == 194
    assert not imported["pandas"] and not imported["jsonschema"] and not imported["torch"]
    shown, imported = _cli("data", "show", "lean@v1", "--lab", str(lab.root), "--json", cwd=lab.root)
    assert shown["manifest"]["rows"] == 194 and len(shown["samples"]) == 3
    assert not imported["pandas"] and not imported["torch"]
    assert not imported["pyarrow.compute"]  # its ~300 kernel wrappers cost ≈ 60 ms of start-up; reading needs none
    # the same version from a process that has pandas loaded (pyarrow's usual path) has the same content hash
    from nexa.data.prepare import prepare
    from nexa.data.schema import load_schema

    import pandas  # noqa: F401

    again = prepare(lab, [str(mixed_jsonl)], load_schema("qa"), "lean-pandas", filters=["exact"])
    assert again.manifest.content_hash == out["outputs"][0]["sha256"]


def test_show_checks_the_file_hash_and_verify_checks_the_rows(lab, mixed_jsonl):
    from typer.testing import CliRunner

    from nexa.cli import app

    def show(*extra):
        return CliRunner().invoke(app, ["data", "show", "v@v1", "--lab", str(lab.root), "--json", *extra])

    prepared = CliRunner().invoke(app, ["data", "prepare", "--input", str(mixed_jsonl), "--schema", "qa", "--dataset", "v",
                                        "--filters", "exact", "--lab", str(lab.root), "--json"])
    parquet = Path(json.loads(prepared.stdout)["path"])
    assert show().exit_code == 0 and show("--verify").exit_code == 0
    data = bytearray(parquet.read_bytes())
    data[len(data) // 2] ^= 0xFF
    parquet.write_bytes(bytes(data))
    for result in (show(), show("--verify")):
        assert result.exit_code != 0 and "Traceback" not in result.output



def test_the_nexa_entry_point_ends_prepare_without_teardown_and_keeps_every_output_and_exit_code(lab, mixed_jsonl):
    """``nexa data prepare`` ends the process with ``os._exit`` once done: the JSON, the version and the exit code survive."""
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    probe = "import sys, atexit; atexit.register(print, 'teardown ran', file=sys.stderr); from nexa.cli import main; main()"

    def nexa(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", probe, *args, "--lab", str(lab.root)], cwd=lab.root, env=env,
                              capture_output=True, text=True, timeout=120)

    done = nexa("data", "prepare", "--input", str(mixed_jsonl), "--schema", "qa", "--dataset", "fast", "--filters", "exact", "--json")
    assert done.returncode == 0 and "teardown ran" not in done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "succeeded" and out["counts"]["written"] == 194 and Path(out["path"]).exists()
    strict = nexa("data", "prepare", "--input", str(mixed_jsonl), "--schema", "qa", "--dataset", "fast2", "--strict", "--json")
    assert strict.returncode == 1 and json.loads(strict.stdout)["status"] == "failed"
    assert "teardown ran" not in strict.stderr
    listed = nexa("data", "list")  # a command that does not ask to skip it: the usual exit
    assert listed.returncode == 0 and "teardown ran" in listed.stderr and "fast" in listed.stderr
