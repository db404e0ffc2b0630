"""The suite's golden runs, made in the background while the rest of the suite runs.

The golden tests need one complete run of the golden pipeline, the shared ``nexa demo`` (then rerun, all
cached); the launch on the local backend that is SIGKILLed midway and launched again against an S3 server,
which starts from the demo's heavy stages copied to S3 and computes the rest; and a tiny variant killed at
three points. Made one after the other in the foreground (when the S3 launch was a second full run) they were 15
of the suite's 22 minutes on 2 cores, with one core mostly idle: each run is one process at one torch
thread. So they start, in their own subprocesses, when the session starts; the golden tests are ordered
last and wait for their results (fresh clone: 22 min 7 s -> 15 min 10 s with the first two in the background).
What the golden tests then run in the demo's lab (the documented commands, the bundle re-verified with 1 and 2
threads) is made here too, as soon as the demo is done, instead of alone on one core at the suite's end.

Every run uses one torch thread explicitly, so the deterministic stages hash the same (what the
kill/relaunch test compares) however the suite was started.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import yaml
from s3_server import S3_ENV, free_port

NEXA = [sys.executable, "-m", "nexa.cli"]
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
GOLDEN_DIR = Path(__file__).parent / "golden"
ROOT = Path(__file__).resolve().parents[1]


def golden_last(items) -> None:
    """Order the golden tests after every other test, so the suite works while their runs are made."""
    items.sort(key=_is_golden)  # stable: the order within each group is kept


def _is_golden(item) -> bool:
    return GOLDEN_DIR in Path(str(item.path)).parents


class BackgroundRuns:
    """Started runs by name; a test asks for a result and waits only if the run is still going."""

    def __init__(self, root: Path):
        self.root = root
        self.processes: list[subprocess.Popen] = []
        self._pool = ThreadPoolExecutor(max_workers=len(RUNS), thread_name_prefix="golden")
        self._runs: dict[str, Future] = {}

    def start(self, name: str, run: Callable[["BackgroundRuns", Path], dict]) -> None:
        workdir = self.root / name
        workdir.mkdir(parents=True)
        self._runs[name] = self._pool.submit(run, self, workdir)

    def result(self, name: str) -> dict:
        if name not in self._runs:  # a run nobody selected at session start (e.g. pytest -k): make it now
            self.start(name, RUNS[name])
        return self._runs[name].result()

    def popen(self, args: list[str], **kwargs) -> subprocess.Popen:
        """Start ``args`` in its own session; output is piped (read it with communicate) unless redirected."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        proc = subprocess.Popen(args, start_new_session=True, text=True, **kwargs)
        self.processes.append(proc)
        return proc

    def stop(self) -> None:
        """End whatever is still running (an aborted session): SIGTERM first, so a launcher tears its node down
        (a node runs in a session of its own), then SIGKILL what is left."""
        running = [proc for proc in self.processes if proc.poll() is None]
        for proc in running:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._pool.shutdown(wait=False, cancel_futures=True)


# The documented commands run in the demo's lab (tests/golden/test_golden_docs.py asserts on them); long jobs with
# their smallest settings: each preset trains 2 steps (its copy's optim.max_steps), a sweep runs 1 trial.
DOCUMENTED_RUN = [
    "nexa --help",
    "nexa data list --lab nexa-demo",
    "nexa runs list --lab nexa-demo",
    "nexa pack --dataset golden-reasoning@v1 --tokenizer nexa-demo/tokenizer.json --seq-len 128 --lab nexa-demo",
    "nexa train --config configs/sft_tiny.yaml --lab nexa-demo",
    "nexa train --config configs/kd_sequence.yaml --lab nexa-demo",
    "nexa sweep launch --config configs/sft_tiny.yaml --space configs/spaces/sft_tiny.yaml --trials 20 --lab nexa-demo",
    "nexa sweep analyze --study sft-tiny --lab nexa-demo",
]
SMALLEST = {"--trials": "1"}  # options whose documented value starts a long job: replaced by these


def demo_twice(runs: BackgroundRuns, workdir: Path) -> dict:
    """``nexa demo --jobs 2 --json`` in a fresh lab (two one-thread stage workers, as ``make demo`` runs on 2 cores),
    then again in the same lab (everything cached)."""
    lab = workdir / "lab"
    first, first_seconds = _demo(runs, lab)
    second, second_seconds = _demo(runs, lab)
    return {"lab": lab, "first": first, "second": second, "t1": first_seconds, "t2": second_seconds}


def _demo(runs: BackgroundRuns, lab: Path) -> tuple[dict, float]:
    started = time.perf_counter()
    proc = runs.popen([*NEXA, "demo", "--lab", str(lab), "--jobs", "2", "--json"], env={**os.environ, **ONE_THREAD})
    out, err = proc.communicate(timeout=1800)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out), time.perf_counter() - started


def after_the_demo(runs: BackgroundRuns, workdir: Path) -> dict:
    """What the golden tests run in the demo's lab once it is made: every documented command (one at a time, in
    order: the sweep's analysis reads its launch), then the bundle re-verified with 1 and with 2 torch threads.
    Made here, not in the tests, so that this work overlaps the rest of the suite instead of running alone on one
    core at its end."""
    from nexa.bundle.verify import verify_bundle

    demo = runs.result("demo")
    folder = _docs_folder(workdir, demo["lab"])
    env = {**os.environ, **ONE_THREAD, "WANDB_MODE": "offline"}
    commands = {}
    for line in DOCUMENTED_RUN:
        words = shlex.split(line)
        words = [SMALLEST.get(words[i - 1], word) if i else word for i, word in enumerate(words)]
        as_json = ["--json"] if "--lab" in words else []
        proc = runs.popen([*NEXA, *words[1:], *as_json], cwd=folder, env=env)
        out, err = proc.communicate(timeout=300)
        commands[line] = {"returncode": proc.returncode, "stdout": out, "stderr": err, "json": bool(as_json)}
    report = json.loads(Path(demo["first"]["verify_report"]).read_text())
    verdicts = {}
    for threads in (1, 2):
        copy = workdir / f"bundle-{threads}"
        shutil.copytree(demo["first"]["bundle"], copy)
        verdicts[threads] = verify_bundle(copy, report["retain_fraction"], threads=threads)
    return {"folder": folder, "commands": commands, "verdicts": verdicts}


def _docs_folder(workdir: Path, lab: Path) -> Path:
    """A fresh folder where ``nexa-demo`` is the golden lab and ``configs/`` the shipped presets, each cut to 2 steps."""
    folder = workdir / "docs"
    folder.mkdir()
    (folder / "nexa-demo").symlink_to(lab, target_is_directory=True)
    for source in (ROOT / "configs").rglob("*"):
        target = folder / source.relative_to(ROOT)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix == ".yaml" and source.parent.name == "configs":
            config = yaml.safe_load(source.read_text())
            config["optim"] = {**config.get("optim", {}), "max_steps": 2, "warmup_steps": 0, "save_steps": 0}
            target.write_text(yaml.safe_dump(config))
        else:
            target.write_bytes(source.read_bytes())
    return folder


# The demo's stages the S3 launch finds already on durable: the pipeline's heavy middle, teacher to verify, as one
# block (verify pruned the demo's teacher weights, so no stage that needs them may run again). Same code, parameters
# and upstream hashes, so the same keys: the node reuses them (fetched from S3, every file hash-checked) instead of
# training them again.
SEEDED = ["teacher", "distill", "pack", "teacher_registry", "router", "profile", "synthesize", "student_niwt", "student_kd",
          "baseline", "eval", "bundle", "verify"]


def launch_killed_then_relaunched(runs: BackgroundRuns, workdir: Path) -> dict:
    """The golden pipeline on the local backend, durable tier on an S3 server, SIGKILLed midway and launched again;
    hands every observation to the test that asserts on them.

    The bucket starts with the demo's committed ``SEEDED`` stages (as a durable tier filled by an earlier run of the
    same pipeline would), so the golden pipeline is not trained a second time here: the node runs data and tokenizer
    itself, reuses teacher..verify from S3, runs the feedback round and is SIGKILLed inside ``student_before``
    (after ``weak_data`` committed); the relaunch, on a fresh node, must reuse every committed stage and finish."""
    from nexa.ledger import Lab
    from nexa.pipeline.spec import install_builtin_pipelines

    demo = runs.result("demo")
    endpoint = _s3_server(runs, workdir)
    env = {**os.environ, **ONE_THREAD, **S3_ENV, "AWS_ENDPOINT_URL": endpoint}
    s3 = _s3_client(endpoint)
    bucket = _new_bucket(s3)
    _seed_from_demo(s3, bucket, demo["lab"])
    lab = Lab.init(workdir / "lab")
    install_builtin_pipelines(lab)
    config = yaml.safe_load((lab.root / "nexa.yaml").read_text())
    config["prices"] = {"compute": {"local": {"cpu": 0.9}}}  # what an equivalent cloud CPU node would bill
    (lab.root / "nexa.yaml").write_text(yaml.safe_dump(config))
    durable = f"s3://{bucket}/lab"
    launch = [*NEXA, "infra", "launch", "--pipeline", "pipelines/golden.yaml", "--backend", "local",
              "--durable", durable, "--budget", "50", "--json"]

    first = runs.popen(launch, cwd=lab.root, env=env)
    deadline = time.monotonic() + 600
    while not _committed(s3, bucket, "weak_data") and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.5)
    node = json.loads((lab.root / "runs" / "clusters" / "nexa-golden.json").read_text())
    os.killpg(node["pid"], signal.SIGKILL)  # the node, inside student_before (it follows weak_data)
    killed_out, killed_err = first.communicate(timeout=120)
    killed_scratch_left = Path(node["scratch"]).parent.exists()

    second = runs.popen(launch, cwd=lab.root, env=env)
    try:
        out, err = second.communicate(timeout=1800)
    finally:
        if second.poll() is None:  # timed out or interrupted: the node (its own session) must not outlive the suite
            _kill_node(lab.root)
    record = json.loads((lab.root / "runs" / "clusters" / "nexa-golden.json").read_text())
    return {"lab": lab.root, "endpoint": endpoint, "durable": durable,
            "killed": {"returncode": first.returncode, "stdout": killed_out, "stderr": killed_err,
                       "scratch_left": killed_scratch_left},
            "relaunched": {"returncode": second.returncode, "stdout": out, "stderr": err,
                           "scratch_left": Path(record["scratch"]).parent.exists()}}


def _seed_from_demo(s3, bucket: str, demo_lab: Path) -> None:
    """Copy the demo's committed ``SEEDED`` stages into the bucket's durable tier, byte for byte (files, listings,
    sidecars, the teacher's ``pruned.json``)."""
    stages = demo_lab / ".nexa" / "durable" / "stages"
    for name in SEEDED:
        for file in sorted(p for p in (stages / name).rglob("*") if p.is_file()):
            s3.upload_file(str(file), bucket, f"lab/stages/{file.relative_to(stages).as_posix()}")


def _kill_node(lab: Path) -> None:
    node = json.loads((lab / "runs" / "clusters" / "nexa-golden.json").read_text())
    try:
        os.killpg(node["pid"], signal.SIGKILL)
    except ProcessLookupError:
        pass  # it had already ended


def killed_at_three_points_then_finished(runs: BackgroundRuns, workdir: Path) -> dict:
    """A tiny variant of the golden pipeline SIGKILLed 4, 9 and 14 s into three runs, then run to the end."""
    lab = workdir / "lab"
    env = {**os.environ, **ONE_THREAD}
    init = runs.popen([*NEXA, "init", str(lab)], env=env)
    init.communicate(timeout=120)
    assert init.returncode == 0, f"nexa init {lab} failed"
    pipeline = _tiny_pipeline(lab)
    for delay in (4.0, 9.0, 14.0):
        proc = runs.popen([*NEXA, "run", str(pipeline), "--json"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    final = runs.popen([*NEXA, "run", str(pipeline), "--json"], env=env)
    out, err = final.communicate(timeout=900)
    return {"lab": lab, "final": {"returncode": final.returncode, "stdout": out, "stderr": err}}


def _tiny_pipeline(lab: Path) -> Path:
    spec = yaml.safe_load((ROOT / "src" / "nexa" / "pipeline" / "builtin" / "golden.yaml").read_text())
    for stage in spec["stages"]:
        params = stage.get("with", {})
        if "optim" in params:
            params["optim"]["max_steps"] = 12
        if stage["name"] == "data":
            params["capabilities"] = {k: {"train": 120} for k in params["capabilities"]}
            params["eval_rows"] = 20
        if stage["name"] == "verify":
            params["retain_fraction"] = 0.0  # crash safety is under test here, not quality
            params["teacher_floor"] = 0.0  # a 12-step teacher knows nothing yet
        if stage["name"] == "teacher_registry":
            params["default_retain"] = 0.01
        if stage["name"] == "profile":
            params["config"] = {"samples": 48, "pilot_samples": 8, "components": 8}
        if stage["name"] == "student_niwt":
            params.update(config={"phase1_steps": 6, "phase2_steps": 6, "check_every": 5, "teacher_floor": 0.0}, retry_steps=4)
    path = lab / "pipelines" / "tiny.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _s3_server(runs: BackgroundRuns, workdir: Path) -> str:
    """moto's S3 server in its own process (not a thread of this one, whose GIL the suite keeps busy); it logs
    every request, so its output goes to a file (a pipe nobody reads would fill and stall every request)."""
    port = free_port()
    with (workdir / "moto.log").open("w") as log:  # the server keeps its own copy of the file
        runs.popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return f"http://127.0.0.1:{port}"
        time.sleep(0.2)
    raise RuntimeError(f"moto's S3 server did not listen on port {port} within 60 s")


def _s3_client(endpoint: str):
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=S3_ENV["AWS_DEFAULT_REGION"],
                                         aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                                         aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"])


def _new_bucket(s3) -> str:
    name = f"nexa-golden-{os.getpid()}"
    s3.create_bucket(Bucket=name)
    return name


def _committed(s3, bucket: str, stage: str) -> bool:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"lab/stages/{stage}/")
    return any(o["Key"].endswith("/stage.json.sha256") for o in listing.get("Contents", []))


RUNS: dict[str, Callable[[BackgroundRuns, Path], dict]] = {"demo": demo_twice, "after_demo": after_the_demo,
                                                          "infra_relaunch": launch_killed_then_relaunched,
                                                          "sigkill": killed_at_three_points_then_finished}
# The fixture through which tests receive each run; a session that selects no test using it does not start the run.
FIXTURES = {"golden": "demo", "golden_after_demo": "after_demo", "golden_relaunch": "infra_relaunch",
            "golden_sigkill": "sigkill"}


def runs_needed(items) -> list[str]:
    used = {name for item in items for name in getattr(item, "fixturenames", ())}
    return [run for fixture, run in FIXTURES.items() if fixture in used]
