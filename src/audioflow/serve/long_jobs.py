"""Jobs for inputs too long for one request: ``POST /v1/jobs`` answers an id at once, and the job runs later
through the pipeline's chunked path (``process_file``, as ``audioflow process`` runs it: memory bounded by
a chunk), in a child process of its own, one job at a time.

Everything about a job lives in its folder under ``jobs_dir``: ``job.json`` (what was asked, by whom, its
state; written by the server alone), the input, ``out/`` (what ``audioflow process`` would write:
``results/input.json`` and the stages' files), and the child's ``progress.json`` and ``outcome.json``. A
server that stops finds its jobs again when it starts: a job that was running starts over, queued ones
keep their turn. A job belongs to the API key that made it (only a hash of the key is kept); other keys
are told it does not exist."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ..io.atomic import write_text_atomic
from .inputs import Problem, Upload
from .settings import ServeSettings

# options that only shape the files a job writes into its own folder: a job may set them, a request may not
JOB_FILE_OPTIONS = frozenset({"write", "format", "formats", "npy"})
POLL_S = 0.25


def default_jobs_dir() -> str:
    """Where jobs live when the operator does not say: ``$XDG_STATE_HOME/audioflow/jobs``."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "audioflow", "jobs")


def job_steps(text: str, settings: ServeSettings) -> list[tuple[str, dict[str, Any]]]:
    """A job's steps from the step language (``vad,diarize,transcribe:beam_size=1``): every name and option
    checked now (400), options the server keeps to itself refused (model paths: only the files a job writes
    may be shaped), and the server's Whisper model given to transcription."""
    from ..errors import AudioflowError
    from ..pipeline.registry import STAGES
    from ..pipeline.stage import build_steps, check_installed, split_steps

    try:
        pairs = split_steps(text)
        for name, options in pairs:
            declared = STAGES.find(name).options
            for key in options:
                if key in declared and not declared[key].remote and key not in JOB_FILE_OPTIONS:
                    raise Problem(400, f"{name}:{key} is set by the server, not by a job", param="steps")
        if settings.whisper_model:
            pairs = [(n, {**o, "model": settings.whisper_model} if n == "transcribe" else o) for n, o in pairs]
        build_steps(pairs)
        for name, options in pairs:
            check_installed(name, options)
    except AudioflowError as e:
        from .inputs import problem_for

        raise problem_for(e) from None
    if not pairs:
        raise Problem(400, "a job needs at least one step", param="steps")
    return pairs


class JobBoard:
    """The jobs of one server: submitted, listed, read, cancelled; run one at a time by a thread that starts
    a child process per job (a crash or a kill costs that job only)."""

    def __init__(self, settings: ServeSettings, device: str) -> None:
        self.settings, self.device = settings, device
        self.folder = Path(settings.jobs_dir or default_jobs_dir())
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False
        self.thread: threading.Thread | None = None
        self.child: subprocess.Popen[bytes] | None = None
        self.running: str | None = None

    # ---- the server's side ------------------------------------------------------------------------

    def start(self) -> None:
        """Find the jobs a previous server left (a running one starts over) and start the dispatcher."""
        if self.folder.is_dir():
            for record in self._records():
                if record["status"] == "running":
                    self._update(record["id"], status="queued", started=None, note="the server restarted: "
                                 "started over")
        self.stopping = False
        self.thread = threading.Thread(target=self._dispatch, name="audioflow-jobs", daemon=True)
        self.thread.start()

    def shutdown(self) -> None:
        """Stop the dispatcher; a running job's child is stopped and the job left to start over."""
        self.stopping = True
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=30)

    def submit(self, upload: Upload, steps: list[tuple[str, dict[str, Any]]], owner: str) -> dict[str, Any]:
        with self.lock:
            waiting = [r for r in self._records() if r["status"] in ("queued", "running")]
            if len(waiting) >= self.settings.max_jobs:
                raise Problem(429, f"{len(waiting)} jobs are waiting or running, the most this server keeps; "
                                   "retry when one ends", kind="rate_limit_error", headers={"Retry-After": "60"})
            job_id = uuid.uuid4().hex
            folder = self.folder / job_id
            folder.mkdir(parents=True, mode=0o700)
            suffix = Path(upload.name).suffix.lower() if upload.name != "upload" else ""
            shutil.move(upload.path, folder / f"input{suffix if suffix.isascii() and len(suffix) <= 6 else ''}")
            record = {"id": job_id, "owner": owner, "status": "queued", "name": upload.name,
                      "steps": steps, "created": time.time(), "started": None, "finished": None,
                      "seconds_done": 0.0, "seconds_total": None, "error": None}
            self._write(record)
        self.wake.set()
        return self.public(record)

    def get(self, job_id: str, owner: str) -> dict[str, Any]:
        record = self._owned(job_id, owner)
        return self.public(self._with_progress(record))

    def list(self, owner: str) -> list[dict[str, Any]]:
        return [self.public(self._with_progress(r)) for r in self._records() if r["owner"] == owner]

    def result(self, job_id: str, owner: str) -> dict[str, Any]:
        record = self._owned(job_id, owner)
        if record["status"] != "done":
            raise Problem(409, f"job {job_id} is {record['status']}: its result comes when it is done",
                          param="id")
        return json.loads((self.folder / job_id / "out" / "results" / "input.json").read_text())

    def file(self, job_id: str, owner: str, name: str) -> Path:
        """A file the job wrote (a path from its result's ``files``), never anything outside its folder."""
        record = self._owned(job_id, owner)
        out = (self.folder / job_id / "out").resolve()
        path = (out / name).resolve()
        if record["status"] != "done" or out not in path.parents or not path.is_file():
            raise Problem(404, f"job {job_id} has no file {name!r}", param="name")
        return path

    def cancel(self, job_id: str, owner: str) -> dict[str, Any]:
        """Stop a queued or running job (cancelled); a finished one is deleted with its files."""
        record = self._owned(job_id, owner)
        if record["status"] in ("queued", "running"):
            with self.lock:
                record = self._update(job_id, status="cancelled", finished=time.time())
                if self.running == job_id and self.child is not None:
                    _stop(self.child)
            return self.public(record)
        shutil.rmtree(self.folder / job_id, ignore_errors=True)
        return {**self.public(record), "deleted": True}

    @staticmethod
    def public(record: dict[str, Any]) -> dict[str, Any]:
        """What a client sees of a job: not its owner's hash, the progress as a fraction too."""
        shown = {k: v for k, v in record.items() if k != "owner"}
        shown["steps"] = ",".join(_step_text(name, options) for name, options in record["steps"])
        total = record.get("seconds_total")
        shown["progress"] = 1.0 if record["status"] == "done" else \
            round(min(1.0, record.get("seconds_done", 0.0) / total), 4) if total else 0.0
        shown["url"] = f"/v1/jobs/{record['id']}"
        return shown

    # ---- records ----------------------------------------------------------------------------------

    def _records(self) -> list[dict[str, Any]]:
        records = []
        for path in sorted(self.folder.glob("*/job.json")) if self.folder.is_dir() else []:
            with contextlib.suppress(OSError, ValueError):
                records.append(json.loads(path.read_text()))
        return sorted(records, key=lambda r: r["created"])

    def _owned(self, job_id: str, owner: str) -> dict[str, Any]:
        path = self.folder / job_id / "job.json"
        record = None
        if job_id.isalnum() and path.is_file():
            with contextlib.suppress(OSError, ValueError):
                record = json.loads(path.read_text())
        if record is None or record["owner"] != owner:
            raise Problem(404, f"no job {job_id}", param="id")
        return record

    def _write(self, record: dict[str, Any]) -> None:
        write_text_atomic(self.folder / record["id"] / "job.json", json.dumps(record, indent=1))

    def _update(self, job_id: str, **changes: Any) -> dict[str, Any]:
        path = self.folder / job_id / "job.json"
        record = {**json.loads(path.read_text()), **changes}
        self._write(record)
        return record

    def _with_progress(self, record: dict[str, Any]) -> dict[str, Any]:
        if record["status"] == "running":
            with contextlib.suppress(OSError, ValueError):
                done, total = json.loads((self.folder / record["id"] / "progress.json").read_text())
                record = {**record, "seconds_done": done, "seconds_total": total}
        return record

    # ---- running ----------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while not self.stopping:
            with self.lock:
                queued = [r for r in self._records() if r["status"] == "queued"]
                record = self._update(queued[0]["id"], status="running", started=time.time()) if queued else None
            if record is None:
                self.wake.wait(timeout=5.0)
                self.wake.clear()
                continue
            self._run(record)

    def _run(self, record: dict[str, Any]) -> None:
        folder = self.folder / record["id"]
        for name in ("progress.json", "outcome.json"):
            with contextlib.suppress(OSError):
                (folder / name).unlink()
        shutil.rmtree(folder / "out", ignore_errors=True)
        command = [sys.executable, "-m", "audioflow.serve.long_jobs", str(folder), self.device,
                   str(self.settings.job_chunk_duration)]
        # glibc gives native threads (CTranslate2's, ONNX Runtime's) arenas of their own, and a stage's freed
        # memory then stays where the next stage does not reuse it. Measured on 30 min of speech in 600 s chunks
        # of vad,diarize,transcribe: peak RSS 1644 MB by default (one chunk), with 2 arenas 1357 -> 1413 MB
        # growing chunk by chunk (1622 MB after two hours), with 1 arena a flat 1427 MB at +10 % time (1557 MB
        # after two hours: benchmarks/bench_jobs.py)
        env = {**os.environ, "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "1")}
        with self.lock:
            self.running = record["id"]
            self.child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env,
                                          stderr=open(folder / "child.log", "wb"), start_new_session=True)  # noqa: SIM115
        child = self.child
        while child.poll() is None:
            if self.stopping:
                _stop(child)
                with self.lock:
                    self._update(record["id"], status="queued", started=None)
                    self.running, self.child = None, None
                return
            time.sleep(POLL_S)
        with self.lock:
            self.running, self.child = None, None
            current = json.loads((folder / "job.json").read_text())
            if current["status"] == "cancelled":
                return
            outcome = _read_json(folder / "outcome.json") or {
                "status": "failed", "error": f"the job's process ended with code {child.returncode} "
                                             f"({_signal_name(child.returncode)})"}
            progress = _read_json(folder / "progress.json") or [0.0, None]
            self._update(record["id"], status=outcome["status"], error=outcome.get("error"), finished=time.time(),
                         seconds_done=progress[0], seconds_total=progress[1],
                         peak_rss_mb=outcome.get("peak_rss_mb"))


def _stop(child: subprocess.Popen[bytes]) -> None:
    """Stop a job's process group: asked first, killed after 5 s."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def _signal_name(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return "no outcome written"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _step_text(name: str, options: dict[str, Any]) -> str:
    shown = {k: v for k, v in options.items() if k != "model"}
    return name + (":" + ",".join(f"{k}={v}" for k, v in shown.items()) if shown else "")


# ---- the child process ------------------------------------------------------------------------------


def run_job(folder: str, device: str, chunk_duration: float) -> None:
    """Run the job in ``folder`` as ``audioflow process`` would (``process_file`` with the same chunking),
    writing ``progress.json`` after each chunk and ``outcome.json`` at the end."""
    from ..errors import AudioflowError
    from ..pipeline.files import process_file
    from ..pipeline.output import Output
    from ..pipeline.stage import build_steps

    base = Path(folder)
    record = json.loads((base / "job.json").read_text())
    source = next(p for p in base.iterdir() if p.name.startswith("input"))

    def progress(done: float, total: float) -> None:
        write_text_atomic(base / "progress.json", json.dumps([round(done, 3), round(total, 3)]))

    try:
        from .. import runtime
        from ..models import ModelManager

        stages = build_steps([(name, options) for name, options in record["steps"]])
        models = ModelManager(runtime.device_name(device))
        for stage in stages:
            stage.setup(models)
        output = Output(str(base / "out"))
        output.prepare()
        entry = process_file({"path": str(source), "id": "input"}, stages, output, chunk_duration=chunk_duration,
                             progress=progress)
        if entry["status"] == "ok":
            outcome = {"status": "done"}
        else:  # the pipeline's message names the spooled file: the client knows it by its upload's name
            outcome = {"status": "failed", "error": entry["error"].replace(str(source), record["name"])}
    except AudioflowError as e:
        outcome = {"status": "failed", "error": str(e).replace(str(source), record["name"])}
    import resource

    outcome["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB
    write_text_atomic(base / "outcome.json", json.dumps(outcome))


if __name__ == "__main__":
    run_job(sys.argv[1], sys.argv[2], float(sys.argv[3]))
