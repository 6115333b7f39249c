"""The bucket side of an ``s3://`` data dir: immutable objects, committed by a manifest written last.

On local disk every write goes to a temporary name and is renamed into place (``lake.atomic``).
S3 has no rename, and a PUT under a key that readers use would be visible whatever the run does
next, so a bucket prefix is laid out as:

- ``objects/<relative path>/<sha256>``: every file of the data dir, uploaded once under a key
  derived from its content. A key is never given other bytes, so whoever holds a key always reads
  the same file; an upload cut short (``kill -9``, a lost connection) is an incomplete multipart
  upload, which S3 never shows. Content keys also make re-runs idempotent: a partition rewritten
  with the same bytes keeps its key, nothing is uploaded and its manifest entry is unchanged.
- ``manifest.json``: relative path (``lake/candles/date=D/part-0.parquet``, ``warehouse.duckdb``)
  -> object (key, sha256, size), plus the data dir's source (``simulator`` or ``live``). It is
  written **last**, in one PUT (S3 replaces an object whole: a reader sees the old manifest or the
  new one, never a mix), and it is the only thing readers and runs trust: an object it does not
  list is invisible, so a run killed before its commit leaves nothing half-visible.

A commit merges the run's changes (new or changed paths, removed paths) into the manifest as it
is *now*, re-read just before writing, so the entries other runs committed survive; it then
reads the manifest back and merges again if another writer replaced it in between (bounded).
That narrows, but cannot close, the window in which two writers of one prefix lose each other's
entries (S3 offers no compare-and-swap through pyarrow): one writer per prefix at a time is the
rule (README, "Growing beyond one machine").

Objects no manifest lists (superseded versions, a killed run's uploads) are garbage:
``collect_garbage`` (``variance-warehouse gc``) deletes those older than a grace period, so an
upload whose commit is still coming is never taken.

``pyarrow.fs.S3FileSystem`` rather than s3fs or boto3: it ships with pyarrow (no new dependency),
speaks any S3-compatible endpoint, and streams multipart uploads. Credentials come from the
environment (``S3Credentials.from_env``; the Dagster resource passes them as ``dg.EnvVar``) and
live only in the file system object: never in ``Settings``, a log line, metadata or a file, and
scrubbed from every error this module raises.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from variance_pipeline.lake.atomic import atomic_path, is_disk_full
from variance_pipeline.lake.layout import DataDirConflict
from variance_pipeline.settings import ConfigurationError, RemoteDataDir

MANIFEST = "manifest.json"
OBJECTS = "objects"
MANIFEST_FORMAT = 1
COMMIT_ATTEMPTS = 5
CHUNK = 8 * 2**20
DEFAULT_REGION = "us-east-1"  # what the AWS SDKs assume when AWS_REGION is unset
DEFAULT_GC_GRACE_SECONDS = 24 * 3600.0
KEY_VARIABLE, SECRET_VARIABLE, TOKEN_VARIABLE = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"


class ObjectStoreError(RuntimeError):
    """Reading or writing the bucket failed; the message names the object and the cause."""


@dataclass(frozen=True)
class S3Credentials:
    """The standard AWS variables; ``repr`` shows none of them."""

    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # Never empty: pyarrow would fall back to the AWS SDK's default chain, which asks the
        # instance metadata service of a cloud machine this may not be.
        if not self.access_key_id or not self.secret_access_key:
            raise ConfigurationError(f"{KEY_VARIABLE} and {SECRET_VARIABLE} are both needed for an s3:// data dir")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "S3Credentials":
        env = os.environ if env is None else env
        key, secret = (env.get(KEY_VARIABLE) or "").strip(), (env.get(SECRET_VARIABLE) or "").strip()
        missing = [name for name, value in ((KEY_VARIABLE, key), (SECRET_VARIABLE, secret)) if not value]
        if missing:
            raise ConfigurationError(
                f"{' and '.join(missing)} not set: an s3:// data dir (VARIANCE_DATA_DIR) reads its credentials "
                f"from {KEY_VARIABLE} and {SECRET_VARIABLE} (and {TOKEN_VARIABLE} for temporary ones)"
            )
        return cls(key, secret, (env.get(TOKEN_VARIABLE) or "").strip() or None)

    def scrub(self, text: str) -> str:
        """``text`` with every credential replaced, for error messages that quote a server."""
        for value in (self.access_key_id, self.secret_access_key, self.session_token):
            if value:
                text = text.replace(value, "<redacted>")
        return text


@dataclass(frozen=True)
class Entry:
    """One committed file: its object key, content hash and size."""

    key: str
    sha256: str
    size: int

    def to_json(self) -> dict:
        return {"key": self.key, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class Manifest:
    """What is committed under a prefix; ``exists`` is False for a prefix nothing was committed to."""

    files: dict[str, Entry]
    source: str | None = None
    exists: bool = False
    commit: str | None = None  # a random id per commit (which writer's manifest is this?)
    run_id: str | None = None
    committed_at: str | None = None

    def to_json(self) -> dict:
        return {
            "format": MANIFEST_FORMAT,
            "source": self.source,
            "commit": self.commit,
            "run_id": self.run_id,
            "committed_at": self.committed_at,
            "files": {rel: entry.to_json() for rel, entry in sorted(self.files.items())},
        }


def file_digest(path: Path) -> tuple[str, int]:
    """sha256 (hex) and size of a local file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def object_key(relative: str, sha256: str) -> str:
    return f"{OBJECTS}/{relative}/{sha256}"


def check_relative(relative: str) -> str:
    """A manifest path must stay inside the data dir: no absolute path, '..' or empty segment."""
    parts = PurePosixPath(relative).parts
    if not parts or relative.startswith("/") or any(p in ("", ".", "..") for p in relative.split("/")) \
            or "\\" in relative:
        raise ObjectStoreError(f"manifest entry {relative!r} is not a path inside the data dir; refusing it")
    return relative


def s3_filesystem(remote: RemoteDataDir, credentials: S3Credentials) -> pafs.S3FileSystem:
    """The bucket's file system: the endpoint and region of ``remote``, bounded time-outs and retries."""
    scheme, endpoint = "https", None
    if remote.endpoint:
        parts = urlsplit(remote.endpoint)
        scheme, endpoint = parts.scheme, parts.netloc
    return pafs.S3FileSystem(
        access_key=credentials.access_key_id,
        secret_key=credentials.secret_access_key,
        session_token=credentials.session_token,
        region=remote.region or DEFAULT_REGION,
        scheme=scheme,
        endpoint_override=endpoint,
        connect_timeout=10,
        request_timeout=120,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=4),
    )


class ObjectStore:
    """One data dir's prefix in a bucket: read and commit its manifest, put and get its objects."""

    def __init__(
        self, remote: RemoteDataDir, credentials: S3Credentials, *, filesystem: pafs.FileSystem | None = None
    ) -> None:
        self.remote = remote
        self._credentials = credentials
        self._fs = filesystem or s3_filesystem(remote, credentials)
        self._root = f"{remote.bucket}/{remote.prefix}".rstrip("/")

    def __repr__(self) -> str:
        return f"ObjectStore({self.url!r})"

    @property
    def url(self) -> str:
        return self.remote.url

    def where(self, key: str) -> str:
        """``s3://bucket/prefix/key`` and the endpoint, for messages."""
        at = f" at {self.remote.endpoint}" if self.remote.endpoint else ""
        return f"{self.url}/{key}{at}"

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}"

    def _failed(self, doing: str, key: str, exc: BaseException) -> ObjectStoreError:
        return ObjectStoreError(f"{doing} {self.where(key)} failed: {self._credentials.scrub(str(exc))}")

    # -- the manifest ---------------------------------------------------------------------------

    def read_manifest(self) -> Manifest:
        """The committed manifest; an empty one (``exists`` False) where nothing was committed."""
        try:
            with self._fs.open_input_stream(self._path(MANIFEST)) as source:
                raw = source.read()
        except FileNotFoundError:
            self._check_bucket()
            return Manifest(files={})
        except OSError as exc:
            raise self._failed("reading", MANIFEST, exc) from None
        try:
            doc = json.loads(raw)
            if doc.get("format", 0) > MANIFEST_FORMAT:
                raise ObjectStoreError(
                    f"{self.where(MANIFEST)} has format {doc['format']}, newer than this version reads "
                    f"({MANIFEST_FORMAT}): upgrade variance-pipeline"
                )
            files = {
                check_relative(rel): Entry(str(e["key"]), str(e["sha256"]), int(e["size"]))
                for rel, e in doc["files"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ObjectStoreError(
                f"{self.where(MANIFEST)} is not a valid manifest ({type(exc).__name__}: {exc}); it is only ever "
                "written whole, so something else wrote it: restore it from the bucket's versioning or delete the "
                "prefix and re-run"
            ) from None
        return Manifest(
            files=files, source=doc.get("source"), exists=True, commit=doc.get("commit"),
            run_id=doc.get("run_id"), committed_at=doc.get("committed_at"),
        )

    def _check_bucket(self) -> None:
        """A prefix without a manifest is new; a bucket that does not exist is a mistake."""
        try:
            found = self._fs.get_file_info(self.remote.bucket).type != pafs.FileType.NotFound
        except OSError as exc:
            raise self._failed("looking up the bucket of", MANIFEST, exc) from None
        if not found:
            raise ObjectStoreError(
                f"{self.where(MANIFEST)}: the bucket {self.remote.bucket!r} does not exist. Create it (e.g. "
                f"aws s3 mb s3://{self.remote.bucket}) or fix VARIANCE_DATA_DIR."
            )

    def check_source(self, manifest: Manifest, source: str) -> None:
        """Simulated and live data never share a data dir, in a bucket as on disk."""
        if manifest.source is not None and manifest.source != source:
            raise DataDirConflict(
                f"{self.url} holds {manifest.source!r} data; refusing to write {source!r} data there. "
                f"Point VARIANCE_DATA_DIR elsewhere (e.g. another prefix of the bucket)."
            )

    def _write_manifest(self, manifest: Manifest) -> None:
        body = json.dumps(manifest.to_json(), indent=1).encode()
        try:
            with self._fs.open_output_stream(self._path(MANIFEST), metadata={"Content-Type": "application/json"}) as out:
                out.write(body)
        except OSError as exc:
            raise self._failed("writing", MANIFEST, exc) from None

    def commit(
        self, *, source: str, puts: Mapping[str, Entry], deletes: Iterable[str] = (), run_id: str | None = None
    ) -> Manifest:
        """Merge ``puts`` and ``deletes`` into the manifest as it is now and write it (the commit).

        Every object in ``puts`` must already be uploaded. After writing, the manifest is read
        back: if another writer replaced it without our entries, they are merged again.
        """
        deletes = set(deletes)
        for _ in range(COMMIT_ATTEMPTS):
            current = self.read_manifest()
            self.check_source(current, source)
            files = {rel: entry for rel, entry in current.files.items() if rel not in deletes}
            files.update(puts)
            mine = Manifest(
                files=files, source=source, exists=True, commit=secrets.token_hex(8), run_id=run_id,
                committed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            )
            self._write_manifest(mine)
            back = self.read_manifest()
            if back.commit == mine.commit or all(back.files.get(rel) == entry for rel, entry in puts.items()):
                return back
        raise ObjectStoreError(
            f"{self.where(MANIFEST)} was replaced by another writer {COMMIT_ATTEMPTS} times while this run "
            "committed; its objects are uploaded but not listed. Run one writer per data dir at a time and re-run."
        )

    # -- objects ----------------------------------------------------------------------------------

    def put_file(self, local: Path, relative: str, *, committed_keys: set[str] = frozenset()) -> Entry:
        """Upload ``local`` as the object of ``relative``; nothing is sent when a committed object
        already holds these bytes. An uncommitted one is sent again, which renews its age for the
        garbage collector's grace period (its bytes are the same: the key is their hash)."""
        sha256, size = file_digest(local)
        entry = Entry(object_key(check_relative(relative), sha256), sha256, size)
        if entry.key in committed_keys:
            return entry
        try:
            with local.open("rb") as source, self._fs.open_output_stream(self._path(entry.key)) as out:
                while chunk := source.read(CHUNK):
                    out.write(chunk)
            uploaded = self._fs.get_file_info(self._path(entry.key))
        except OSError as exc:
            raise self._failed(f"uploading {local} to", entry.key, exc) from None
        if uploaded.size != size:
            raise ObjectStoreError(
                f"uploading {local} to {self.where(entry.key)}: the bucket holds {uploaded.size} bytes, not {size}; "
                "nothing was committed"
            )
        return entry

    def get_file(self, entry: Entry, target: Path) -> None:
        """Download ``entry`` to ``target`` atomically, checking its size and sha256 first."""
        digest, size = hashlib.sha256(), 0
        with atomic_path(target) as tmp:
            try:
                with self._fs.open_input_stream(self._path(entry.key)) as source, tmp.open("wb") as out:
                    while chunk := source.read(CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
            except FileNotFoundError:
                raise ObjectStoreError(
                    f"{self.where(entry.key)} is listed in {MANIFEST} for {target.name} but missing from the bucket "
                    "(deleted by hand, or by a garbage collection that raced a commit): re-run the sessions "
                    "that wrote it, or restore it from the bucket's versioning"
                ) from None
            except OSError as exc:
                if is_disk_full(exc):
                    raise  # atomic_path names the file and the free space
                raise self._failed(f"downloading {target} from", entry.key, exc) from None
            if size != entry.size or digest.hexdigest() != entry.sha256:
                raise ObjectStoreError(
                    f"{self.where(entry.key)} does not match {MANIFEST} ({size} bytes, sha256 {digest.hexdigest()[:12]}..., "
                    f"listed as {entry.size} bytes, {entry.sha256[:12]}...): it was changed or cut after its commit; "
                    f"{target} was not replaced"
                )

    # -- garbage ----------------------------------------------------------------------------------

    def garbage(self, *, grace_seconds: float = DEFAULT_GC_GRACE_SECONDS) -> list[str]:
        """Keys under ``objects/`` that the manifest does not list and that are older than the grace."""
        committed = {entry.key for entry in self.read_manifest().files.values()}
        selector = pafs.FileSelector(self._path(OBJECTS), recursive=True, allow_not_found=True)
        try:
            infos = self._fs.get_file_info(selector)
        except OSError as exc:
            raise self._failed("listing", OBJECTS, exc) from None
        cutoff = time.time() - grace_seconds
        found = []
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            key = info.path[len(self._root) + 1:]
            if key not in committed and info.mtime is not None and info.mtime.timestamp() < cutoff:
                found.append(key)
        return sorted(found)

    def collect_garbage(self, *, grace_seconds: float = DEFAULT_GC_GRACE_SECONDS, dry_run: bool = False) -> list[str]:
        """Delete ``garbage()``; returns the keys (the ones that would go, with ``dry_run``)."""
        keys = self.garbage(grace_seconds=grace_seconds)
        for key in [] if dry_run else keys:
            try:
                self._fs.delete_file(self._path(key))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise self._failed("deleting", key, exc) from None
        return keys
