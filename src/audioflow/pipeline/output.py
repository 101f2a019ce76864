"""Where a run's outputs go: a local folder, or any place fsspec writes (``s3://``, ``gs://``, ``az://``...).

Stages always write into a local folder (``RunContext.output_dir``). For a local output that folder is the
output itself, as before. For a remote output each input gets a private staging folder, and once the input
is done every file in it is uploaded with one PUT per object (an object store shows an object whole or not
at all: no temp key, no rename), the result JSON last, so a result never names a file that is not there yet.
On a Ray node other than the driver's, with a local output, the files travel back to the driver in the
manifest entry instead (nothing relies on a disk the nodes share).

The manifest of a remote output is append-only in parts (``manifest.parts/<run>-<n>.jsonl``, flushed every
few seconds) because objects cannot be appended to; the parts are merged into ``manifest.jsonl`` when the run
ends, and a run killed before that leaves them to be read (and merged) by the next ``--resume``."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import AudioflowError, ParameterError
from .stage import write_bytes_atomic, write_text_atomic

PARTS = "manifest.parts"
_FLUSH_SECONDS = 2.0


def is_remote(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


class Output:
    """A run's output location (picklable: it crosses to worker processes and Ray actors).

    Args:
        location: a local folder, ``file://`` path, or an fsspec URL.
        storage_options: for fsspec (credentials, ``client_kwargs={"endpoint_url": ...}``).
        collect: return written files in the manifest entry instead of writing them (a Ray actor on another
            node than the driver, with a local output).
    """

    def __init__(self, location: str | os.PathLike[str], storage_options: dict[str, Any] | None = None,
                 collect: bool = False) -> None:
        text = os.fspath(location).removeprefix("file://")
        self.remote = is_remote(text)
        # absolute: Ray's workers (and any process the output is pickled to) have another working directory
        self.location = text.rstrip("/") if self.remote else os.path.abspath(text)
        self.storage_options = storage_options or {}
        self.collect = collect
        self._fs: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fs": None}

    def __repr__(self) -> str:
        return f"Output({self.location!r})"

    @property
    def fs(self) -> Any:
        if self._fs is None:
            import fsspec

            try:
                self._fs, _ = fsspec.core.url_to_fs(self.location, **self.storage_options)
            except ImportError as e:
                raise ParameterError(f"no filesystem for this URL scheme ({e}); install audioflow[remote]",
                                     self.location) from None
        return self._fs

    def _key(self, name: str) -> str:
        return f"{self.fs._strip_protocol(self.location).rstrip('/')}/{name}"

    def path(self, name: str) -> str:
        """Where ``name`` (relative to the output) is, for messages and for local readers."""
        return f"{self.location}/{name}" if self.remote else os.path.join(self.location, name)

    def prepare(self) -> None:
        """Check the output can be written before any work: local folders are made; a bucket is probed."""
        if not self.remote:
            os.makedirs(self.location, exist_ok=True)
            return
        self._guard("write", lambda: self.fs.pipe_file(self._key(".audioflow-write-check"), b"ok"))
        self._guard("write", lambda: self.fs.rm_file(self._key(".audioflow-write-check")))

    def _guard(self, doing: str, action: Any) -> Any:
        try:
            return action()
        except AudioflowError:
            raise
        except Exception as e:  # the backend's own types: one line with the cause
            from ..io.source import remote_error

            raise remote_error(e, self.location, doing) from None

    # -- one input's files --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def staging(self) -> Iterator[str]:
        """The local folder one input's stages write into: the output itself when local (and written here),
        else a private temporary folder, removed afterwards."""
        if not self.remote and not self.collect:
            yield self.location
            return
        folder = tempfile.mkdtemp(prefix="audioflow-out-")
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def publish(self, folder: str, last: str | None = None) -> dict[str, bytes]:
        """Every file under a staging ``folder`` to the output, ``last`` (the result JSON) after the others.
        Returns ``{relative path: bytes}`` instead when collecting for the driver; nothing for a local output."""
        if not self.remote and not self.collect:
            return {}
        names = sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())
        if last in names:
            names.remove(last)
            names.append(last)
        if self.collect:
            return {name: (Path(folder) / name).read_bytes() for name in names}
        for name in names:
            self._guard("write", lambda n=name: self.fs.put_file(os.path.join(folder, n), self._key(n)))
        return {}

    def write_collected(self, files: dict[str, bytes]) -> None:
        """Files an actor on another node sent back, written here atomically (temp name + rename)."""
        for name, data in files.items():
            write_bytes_atomic(os.path.join(self.location, name), data)

    # -- whole files ----------------------------------------------------------------------------------------

    def write_text(self, name: str, text: str) -> None:
        """``name`` replaced whole: renamed into place locally, one PUT remotely."""
        if self.remote:
            self._guard("write", lambda: self.fs.pipe_file(self._key(name), text.encode()))
        else:
            write_text_atomic(os.path.join(self.location, name), text)

    def write_file(self, name: str, local_path: str) -> None:
        if self.remote:
            self._guard("write", lambda: self.fs.put_file(local_path, self._key(name)))
        else:
            os.replace(local_path, os.path.join(self.location, name))

    def read_text(self, name: str) -> str | None:
        """The text of ``name``, or None when there is none."""
        if not self.remote:
            try:
                return Path(self.location, name).read_text()
            except FileNotFoundError:
                return None
        try:
            return self.fs.cat_file(self._key(name)).decode()
        except FileNotFoundError:
            return None
        except Exception as e:
            from ..io.source import remote_error

            raise remote_error(e, self.path(name), "read") from None

    def read_texts(self, names: list[str]) -> dict[str, str]:
        """The texts of ``names`` that exist; from a remote output in concurrent GETs (fsspec's batched
        ``cat``), not one round trip after another."""
        if not self.remote:
            return {name: text for name in names if (text := self.read_text(name)) is not None}
        keys = {self._key(name): name for name in names}
        try:
            found = self.fs.cat(list(keys), on_error="omit")
        except Exception as e:
            from ..io.source import remote_error

            raise remote_error(e, self.location, "read") from None
        return {keys[key]: data.decode() for key, data in found.items() if isinstance(data, bytes)}

    def list(self, folder: str, suffix: str = "") -> list[str]:
        """Names (relative to the output) of the files directly in ``folder``, sorted."""
        if not self.remote:
            base = Path(self.location, folder)
            return sorted(f"{folder}/{p.name}" for p in base.glob(f"*{suffix}")) if base.is_dir() else []
        try:
            self.fs.invalidate_cache(self._key(folder))  # other processes (workers, a killed run) wrote there
            found = self.fs.ls(self._key(folder), detail=False)
        except FileNotFoundError:
            return []
        return sorted(f"{folder}/{os.path.basename(f)}" for f in found if f.endswith(suffix))

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.remote:
                self.fs.rm_file(self._key(name))
            else:
                os.remove(os.path.join(self.location, name))


class ManifestWriter:
    """``manifest.jsonl`` as inputs finish. Local: appended, flushed and fsynced per line (a killed run keeps
    every line written). Remote: buffered into append-only part objects, one at least every couple of
    seconds, merged into ``manifest.jsonl`` by :meth:`close`."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.run = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self._file = None if output.remote else open(output.path("manifest.jsonl"), "a")  # noqa: SIM115
        self._pending: list[str] = []
        self._parts = 0
        self._flushed = time.monotonic()

    def write(self, line: str) -> None:
        if self._file is not None:
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            return
        self._pending.append(line)
        if time.monotonic() - self._flushed >= _FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.output.write_text(f"{PARTS}/{self.run}-{self._parts:06d}.jsonl", "\n".join(self._pending) + "\n")
            self._parts += 1
            self._pending = []
        self._flushed = time.monotonic()

    def close(self) -> None:
        """Local: close the file. Remote: the last part, then every part (this run's and any a killed run left)
        merged after the old manifest into ``manifest.jsonl``, then the parts removed."""
        if self._file is not None:
            self._file.close()
            return
        self.flush()
        parts = self.output.list(PARTS, ".jsonl")
        if not parts:
            return
        text = "".join(manifest_texts(self.output))
        self.output.write_text("manifest.jsonl", text)
        for part in parts:
            self.output.remove(part)


def manifest_texts(output: Output) -> list[str]:
    """The manifest's text: ``manifest.jsonl`` then its parts in order (each ending with a newline)."""
    texts = [output.read_text("manifest.jsonl") or ""]
    texts += [output.read_text(part) or "" for part in output.list(PARTS, ".jsonl")]
    return [t if t.endswith("\n") or not t else t + "\n" for t in texts]


def read_manifest(output: str | os.PathLike[str] | Output) -> dict[str, dict[str, Any]]:
    """Finished inputs of earlier runs into ``output``: ``{input: entry}``, the last entry of an input
    winning (a torn last line, from a run killed while writing it, is ignored)."""
    output = output if isinstance(output, Output) else Output(output)
    done: dict[str, dict[str, Any]] = {}
    for text in manifest_texts(output):
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and "input" in entry:
                done[entry["input"]] = entry
    return done
