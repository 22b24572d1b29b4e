"""Raw MIND in object storage: NEWS_AI_MIND_DIR=s3://bucket/prefix, the split folders under the prefix.

Every machine reads the files through a local mirror (NEWS_AI_MIND_MIRROR): the bucket's listing
decides which split folders and files there are, and each object is downloaded once per version
(ETag, size, last-modified), its SHA-256 computed while it is read. From the mirror on, a split is
a local folder like any other, so staging, validation, rejects and line accounting are the same code
(staging then re-stages a file only when its content changed: storage/staging.py). Credentials and
the endpoint come from the environment, as boto3 reads them (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION), the same variables the Delta storage reads.

A missing or unreadable bucket, prefix, split file or object fails before anything is written,
naming the object; an object replaced while it is downloaded fails the run (the download is
conditional on the ETag listed), never mixing two versions.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from news_ai_assets.mind.entities import VECTOR_FILES
from news_ai_assets.mind.reader import SPLIT_DIR, MindInputError

REQUIRED_FILES = ("behaviors.tsv", "news.tsv")
MIRRORED_FILES = (*REQUIRED_FILES, *VECTOR_FILES.values())
VERSION_SUFFIX = ".version.json"
READ_BYTES = 16 * 1024 * 1024


def is_object_uri(value: str) -> bool:
    return value.startswith("s3://")


@dataclass(frozen=True)
class ObjectVersion:
    """What the listing says of an object: a new ETag, size or last-modified is a new version."""

    key: str
    etag: str
    size: int
    last_modified: str

    def same_as(self, recorded: dict) -> bool:
        return (recorded.get("etag"), recorded.get("size"), recorded.get("last_modified")) == (
            self.etag, self.size, self.last_modified)


def _mirrored(folder: Path, names) -> set[str]:
    """The entries of a mirror folder this mirror writes: `names` (split folders or files) and, for files,
    their version records. Anything else there (a user's file, a lock, a download in progress) is left."""
    return {name for name in os.listdir(folder) if names(name.removesuffix(VERSION_SUFFIX))}


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on `path` (created): runs syncing at once take turns on an object, so one of them
    downloads it and the others find it there; a file is never replaced by the same version while a run
    reads it. The kernel releases the lock of a process that dies."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


class S3Mirror:
    """The MIND splits under an s3:// prefix, mirrored into `folder` (one subfolder per split folder)."""

    def __init__(self, uri: str, folder: Path):
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        self.uri, self.bucket, self.prefix, self.folder = uri.rstrip("/"), bucket, prefix.strip("/"), folder

    def _client(self):
        import boto3  # only where raw files are in object storage

        return boto3.client("s3")

    def _object_uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def listing(self, client) -> dict[str, dict[str, ObjectVersion]]:
        """split folder name -> file name -> version, for the files a split can have."""
        from botocore.exceptions import BotoCoreError, ClientError

        start = f"{self.prefix}/" if self.prefix else ""
        found: dict[str, dict[str, ObjectVersion]] = {}
        try:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", []):
                    folder, _, name = item["Key"][len(start):].partition("/")
                    if SPLIT_DIR.match(folder) and name in MIRRORED_FILES:
                        found.setdefault(folder, {})[name] = ObjectVersion(
                            item["Key"], item["ETag"], item["Size"], item["LastModified"].isoformat())
        except (ClientError, BotoCoreError) as err:
            raise MindInputError(f"MIND folder {self.uri} cannot be listed (NEWS_AI_MIND_DIR): {err}") from err
        if not found:
            raise MindInputError(
                f"{self.uri} holds no MIND split folder (expected names like MINDsmall_train, MINDlarge_test)")
        for folder, files in sorted(found.items()):
            missing = [name for name in REQUIRED_FILES if name not in files]
            if missing:
                raise MindInputError(f"MIND split folder {self.uri}/{folder} has no {' and no '.join(missing)}")
        return found

    def check(self) -> None:
        """The listing holds split folders, each with behaviors.tsv and news.tsv (MindInputError if not)."""
        self.listing(self._client())

    def sync(self, log=None) -> Path:
        """The mirror folder, made to hold exactly the listed splits' files at their listed versions."""
        client = self._client()
        listed = self.listing(client)
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in _mirrored(self.folder, SPLIT_DIR.match) - set(listed):  # a split folder removed from the bucket
            shutil.rmtree(self.folder / stale, ignore_errors=True)
        for folder, files in sorted(listed.items()):
            local = self.folder / folder
            local.mkdir(exist_ok=True)
            for stale in _mirrored(local, MIRRORED_FILES.__contains__) - {name + suffix for name in files
                                                                          for suffix in ("", VERSION_SUFFIX)}:
                (local / stale).unlink(missing_ok=True)
            for name, version in sorted(files.items()):
                self._mirror(client, version, local / name, log)
        return self.folder

    def _mirror(self, client, version: ObjectVersion, path: Path, log) -> None:
        """Downloads the object unless `path` holds this version of it already."""
        with _locked(path.with_name(f".{path.name}.lock")):
            record = path.with_name(path.name + VERSION_SUFFIX)
            try:
                recorded = json.loads(record.read_text())
            except (OSError, ValueError):
                recorded = {}
            if not (version.same_as(recorded) and path.is_file() and path.stat().st_size == version.size):
                self._download(client, version, path, record, log)

    def _download(self, client, version: ObjectVersion, path: Path, record: Path, log) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        uri = self._object_uri(version.key)
        if log:
            log.info(f"downloading {uri} ({version.size / 2**20:.0f} MiB, ETag {version.etag}) into {path}")
        digest = hashlib.sha256()
        handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                body = client.get_object(Bucket=self.bucket, Key=version.key, IfMatch=version.etag)["Body"]
                while chunk := body.read(READ_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
            if os.path.getsize(partial) != version.size:
                raise MindInputError(f"{uri}: read {os.path.getsize(partial)} bytes of the {version.size} listed")
            os.replace(partial, path)
        except (ClientError, BotoCoreError) as err:
            code = getattr(err, "response", {}).get("Error", {}).get("Code")
            why = "it was replaced while being read; run again" if code in ("PreconditionFailed", "412") else str(err)
            raise MindInputError(f"{uri} cannot be read: {why}") from err
        finally:
            Path(partial).unlink(missing_ok=True)
        record.write_text(json.dumps({"uri": uri, "etag": version.etag, "size": version.size,
                                      "last_modified": version.last_modified, "sha256": digest.hexdigest()}))
