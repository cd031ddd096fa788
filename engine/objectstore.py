"""Object storage: a data directory or a table at ``s3://bucket/prefix`` (AWS S3 or any
S3-compatible store).

Two clients reach the same objects: delta-rs (``storage_options``) reads and commits the Delta
log, with S3's conditional PUT (``If-None-Match: *``) making a commit fail when another writer
took its version; pyarrow's S3 filesystem lists, uploads and downloads data files. Both take
credentials from the standard AWS chain; the options Colonnade passes hold no secret. Every
failure becomes one of three stable errors (``storage_unavailable``, ``access_denied``,
``version_unavailable``), with known secret values scrubbed from the text, and every request
has a connect and a read timeout, so a dead endpoint is an error, never a hang.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import AccessDenied, ColonnadeError, StorageUnavailable, VersionUnavailable

if TYPE_CHECKING:
    from pyarrow import fs as pafs

    from engine.config import StorageSettings

_SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")
_DENIED = re.compile(
    r"AccessDenied|ACCESS_DENIED|Access Denied|InvalidAccessKeyId|INVALID_ACCESS_KEY|SignatureDoesNotMatch|"
    r"SIGNATURE_DOES_NOT_MATCH|\b403\b|Forbidden|InvalidToken|ExpiredToken",
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # delta-rs colours its error chains
_NO_BUCKET = re.compile(r"NoSuchBucket|NO_SUCH_BUCKET|bucket does not exist|Bucket .* does not exist", re.I)
_NOT_FOUND = re.compile(r"NoSuchKey|NO_SUCH_KEY|\b404\b|Not Found|not found|does not exist", re.I)


@dataclass(frozen=True)
class ObjectURI:
    bucket: str
    key: str  # no leading or trailing slash; "" for the bucket itself

    @classmethod
    def parse(cls, uri: str) -> ObjectURI:
        scheme, sep, rest = uri.partition("://")
        if not sep or scheme.lower() not in ("s3", "s3a"):
            raise StorageUnavailable(f"{uri!r} is not an object-store URI (s3://bucket/prefix)")
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise StorageUnavailable(f"{uri!r} names no bucket (s3://bucket/prefix)")
        return cls(bucket, key.strip("/"))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"

    @property
    def path(self) -> str:
        """The ``bucket/key`` form pyarrow's filesystem takes."""
        return f"{self.bucket}/{self.key}" if self.key else self.bucket

    def child(self, name: str) -> ObjectURI:
        return ObjectURI(self.bucket, f"{self.key}/{name}".strip("/"))


def local_dir(location: str, storage: StorageSettings) -> Path:
    """The local directory that holds an object-store data directory's local state."""
    if storage.local_dir:
        return Path(storage.local_dir).expanduser().resolve()
    uri = ObjectURI.parse(location)
    digest = hashlib.sha1(str(uri).encode()).hexdigest()[:10]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return (cache / "colonnade" / f"{uri.bucket}-{digest}").resolve()


def redact_secrets(text: str) -> str:
    """``text`` with every credential value of this process's environment masked."""
    for var in _SECRET_VARS:
        value = os.environ.get(var)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


_STORE_FAILURE = re.compile(
    r"error sending request|connect|timed out|timeout|dns error|Connection refused|Generic S3 error|ObjectStore|"
    r"NoSuchBucket|NO_SUCH_BUCKET|AccessDenied|ACCESS_DENIED|InvalidAccessKeyId|SignatureDoesNotMatch|"
    r"\b40[34]\b|\b5\d\d\b|AWS Error|curlCode",
    re.I,
)


def is_storage_failure(exc: BaseException) -> bool:
    """Whether an error from delta-rs or pyarrow came from the object store (not the data)."""
    return bool(_STORE_FAILURE.search(str(exc)))


def storage_error(exc: BaseException, what: str, *, missing_is_version: bool = False) -> ColonnadeError:
    """An object-store failure as the error a user should see. ``what`` says what was being
    done (never a secret); the library's words follow, scrubbed of secrets, on one line."""
    if isinstance(exc, ColonnadeError):
        return exc
    text = redact_secrets(" ".join(_ANSI.sub("", str(exc)).split()))[:400]
    if _DENIED.search(text):
        return AccessDenied(f"{what}: access denied by the object store (check credentials and permissions): {text}")
    if _NO_BUCKET.search(text):
        return StorageUnavailable(f"{what}: the bucket does not exist: {text}")
    if missing_is_version and (isinstance(exc, FileNotFoundError) or _NOT_FOUND.search(text)):
        return VersionUnavailable(f"{what}: a data file of this version is gone from the object store")
    return StorageUnavailable(f"{what}: the object store cannot be used: {text}")


def _glob_regex(pattern: str) -> str:
    """A glob over object keys as a regex: ``**/`` any depth, ``*`` and ``?`` within one level."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 1)) > i:
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


class ObjectStore:
    """One bucket prefix (a data directory on object storage) and the clients that reach it."""

    def __init__(self, location: str, settings: StorageSettings) -> None:
        self.root = ObjectURI.parse(location)
        self.settings = settings
        # [storage] endpoint_url, else the AWS variables the SDKs read (AWS_ENDPOINT_URL_S3 first)
        endpoint = settings.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        self.endpoint = (endpoint or "").rstrip("/")
        self.region = settings.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""
        self.region = self.region or "us-east-1"
        self._fs: pafs.S3FileSystem | None = None
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return str(self.root)

    def table_uri(self, name: str) -> str:
        return str(self.root.child(name))

    @property
    def delta_options(self) -> dict[str, str]:
        """``storage_options`` for delta-rs: where and how long to wait, never who (credentials
        come from the environment chain, so no secret sits in Colonnade's objects)."""
        s = self.settings
        options = {
            "AWS_REGION": self.region,
            "timeout": f"{max(1, round(s.request_timeout_s))}s",
            "connect_timeout": f"{max(1, round(s.connect_timeout_s))}s",
            "max_retries": str(max(0, s.max_retries)),
            "retry_timeout": f"{max(1, round(s.request_timeout_s))}s",
        }
        if self.endpoint:
            options["AWS_ENDPOINT_URL"] = self.endpoint
            if self.endpoint.startswith("http://"):
                options["AWS_ALLOW_HTTP"] = "true"
            options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
        return options

    @property
    def fs(self) -> pafs.S3FileSystem:
        with self._lock:
            if self._fs is None:
                from pyarrow import fs as pafs

                s = self.settings
                kwargs: dict[str, Any] = {
                    "region": self.region,
                    "connect_timeout": s.connect_timeout_s,
                    "request_timeout": s.request_timeout_s,
                    "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=max(1, s.max_retries + 1)),
                    "allow_bucket_creation": False,
                    "allow_bucket_deletion": False,
                    "check_directory_existence_before_creation": False,
                }
                if self.endpoint:
                    scheme, _, host = self.endpoint.partition("://")
                    kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
                    kwargs["force_virtual_addressing"] = False
                self._fs = pafs.S3FileSystem(**kwargs)
            return self._fs

    # -- reads -----------------------------------------------------------------------------

    def check(self) -> None:
        """The bucket exists and these credentials may list the prefix, or a clear error. Only
        the prefix is listed: credentials limited to it may not ask about the bucket itself."""
        from pyarrow import fs as pafs

        try:
            found = self.fs.get_file_info(pafs.FileSelector(self.root.path, allow_not_found=True, recursive=False))
            if not found and self.fs.get_file_info(self.root.bucket).type == pafs.FileType.NotFound:
                raise StorageUnavailable(f"{self.uri}: the bucket {self.root.bucket!r} does not exist")
        except ColonnadeError:
            raise
        except Exception as exc:
            if not self.root.key or not _DENIED.search(str(exc)) or "HeadBucket" not in str(exc):
                raise storage_error(exc, f"cannot open {self.uri}") from None
            # An empty prefix, and no right to ask about the bucket: writes will tell.

    def list_dirs(self, uri: ObjectURI) -> list[str]:
        """The names of the "directories" (common prefixes) right under ``uri``."""
        from pyarrow import fs as pafs

        try:
            infos = self.fs.get_file_info(pafs.FileSelector(uri.path, allow_not_found=True, recursive=False))
        except Exception as exc:
            raise storage_error(exc, f"cannot list {uri}") from None
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def list_files(self, uri: ObjectURI, recursive: bool = True) -> list[tuple[str, int, int]]:
        """(s3 URI, size, mtime ns) of every object under ``uri``."""
        from pyarrow import fs as pafs

        try:
            infos = self.fs.get_file_info(pafs.FileSelector(uri.path, allow_not_found=True, recursive=recursive))
        except Exception as exc:
            raise storage_error(exc, f"cannot list {uri}") from None
        return sorted(
            (f"s3://{i.path}", int(i.size or 0), int(i.mtime_ns or 0)) for i in infos if i.type == pafs.FileType.File
        )

    def info(self, uri: str) -> tuple[int, int] | None:
        """(size, mtime ns) of one object, or None when there is none."""
        from pyarrow import fs as pafs

        try:
            info = self.fs.get_file_info(ObjectURI.parse(uri).path)
        except Exception as exc:
            raise storage_error(exc, f"cannot read {uri}") from None
        return None if info.type != pafs.FileType.File else (int(info.size or 0), int(info.mtime_ns or 0))

    def match(self, pattern: str, suffixes: set[str]) -> tuple[str, list[tuple[str, int, int]]]:
        """(the base URI, every object a URI names): one object, every object of a suffix under a
        prefix, or those a glob (``*``, ``?``, ``[…]``, ``**``) matches, below its base."""
        uri = ObjectURI.parse(pattern)
        parts = uri.key.split("/") if uri.key else []
        globbed = next((i for i, part in enumerate(parts) if any(ch in part for ch in "*?[")), None)
        if globbed is None:
            one = self.info(str(uri))
            if one is not None:
                return str(uri).rsplit("/", 1)[0], [(str(uri), *one)]
            found = [f for f in self.list_files(uri) if Path(f[0]).suffix.lower() in suffixes]
            return str(uri), found
        base = ObjectURI(uri.bucket, "/".join(parts[:globbed]))
        regex = re.compile(_glob_regex("/".join(parts[globbed:])))
        prefix = f"{base}/"
        return str(base), [f for f in self.list_files(base) if regex.fullmatch(f[0][len(prefix) :])]

    def exists(self, uri: str) -> bool:
        return self.info(uri) is not None

    def download(self, uri: str, target: Path, *, what: str) -> int:
        """Copy one object to ``target`` (written beside it, then renamed: a reader never sees
        part of a file); return its size."""
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.part")
        try:
            with self.fs.open_input_stream(ObjectURI.parse(uri).path) as src, open(partial, "wb") as out:
                while chunk := src.read(8 * 1024**2):
                    out.write(chunk)
            os.replace(partial, target)
        except Exception as exc:
            partial.unlink(missing_ok=True)
            raise storage_error(exc, what, missing_is_version=True) from None
        return target.stat().st_size

    # -- writes ----------------------------------------------------------------------------

    def upload(self, source: Path, uri: str) -> None:
        try:
            with open(source, "rb") as src, self.fs.open_output_stream(ObjectURI.parse(uri).path) as out:
                while chunk := src.read(8 * 1024**2):
                    out.write(chunk)
        except Exception as exc:
            raise storage_error(exc, f"cannot write {uri}") from None

    def delete(self, uris: list[str]) -> None:
        """Delete objects; those already gone are fine."""
        for uri in uris:
            try:
                self.fs.delete_file(ObjectURI.parse(uri).path)
            except FileNotFoundError:
                pass
            except Exception as exc:
                raise storage_error(exc, f"cannot delete {uri}") from None
