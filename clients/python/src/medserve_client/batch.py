"""``medserve batch``: upload to the input bucket, wait for every outcome, download them.

An object at ``incoming/<model_id>/<name>`` gets exactly one outcome,
``results/<model_id>/<name>.json`` or ``errors/<model_id>/<name>.json``. An outcome counts
for this run only when it is new since the run began (its ETag is not one listed before
the upload) and its ``source.etag`` is the ETag of the object this run uploaded, so an
older result for the same name is never taken for the new one.

Ctrl-C is safe at any point: objects already uploaded stay and will still be processed;
every downloaded file is complete (written aside, then renamed).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from medserve_client.errors import InputFileError, MedServeError

LOCAL_S3_ENDPOINT = "http://127.0.0.1:4566"
LOCAL_INPUT_BUCKET = "medserve-input"
LOCAL_OUTPUT_BUCKET = "medserve-output"


def s3_client(endpoint: str | None, *, profile: str | None = None, region: str | None = None) -> Any:
    """A boto3 S3 client; a local endpoint (``make run``) gets path-style addressing and dummy credentials."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": "path"})
    if endpoint:
        host = urllib.parse.urlsplit(endpoint).hostname or ""
        if host in ("127.0.0.1", "localhost", "::1"):
            return boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name=region or "us-east-1",
                aws_access_key_id="medserve-local",
                aws_secret_access_key="medserve-local",  # noqa: S106 - the local endpoint takes any credentials
                config=config,
            )
    session = boto3.Session(profile_name=profile, region_name=region)
    return session.client("s3", endpoint_url=endpoint, config=config)


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and the regular non-hidden files directly inside each folder named, sorted."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            files.append(path)
        else:
            raise InputFileError(f"no such file or folder: {path}")
    names: dict[str, Path] = {}
    for f in files:
        if f.name in names:
            raise InputFileError(f"two files are named {f.name!r} ({names[f.name]} and {f}); object names must differ")
        names[f.name] = f
    if not files:
        raise InputFileError("no files to upload")
    return files


class Progress:
    """A one-line progress bar on a terminal (``\\r``); one line per change otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self._last = ""

    def show(self, done: int, label: str, extra: str = "") -> None:
        """Draw ``done``/``total``."""
        filled = int(self.width * done / self.total) if self.total else self.width
        bar = "#" * filled + "." * (self.width - filled)
        line = f"{label:<9} [{bar}] {done}/{self.total} {extra}".rstrip()
        if line == self._last:
            return
        self._last = line
        elapsed = f" {time.monotonic() - self.start:4.0f}s"
        if self.tty:
            self.stream.write("\r" + line + elapsed + "\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def end(self) -> None:
        """Finish the bar's line."""
        if self.tty and self._last:
            self.stream.write("\n")
            self.stream.flush()
        self._last = ""


@dataclass
class Outcome:
    """What one uploaded file came to."""

    name: str
    kind: str  # "result" or "error"
    path: Path
    document: dict[str, Any]


@dataclass
class BatchReport:
    """The run's outcome: uploaded names, downloaded outcomes, what is still pending."""

    model_id: str
    out_dir: Path
    files: list[str]
    output_location: str = ""
    uploaded: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    interrupted: bool = False
    timed_out: bool = False

    @property
    def pending(self) -> list[str]:
        """Uploaded names with no outcome downloaded yet."""
        return [n for n in self.uploaded if n not in self.outcomes]

    @property
    def not_uploaded(self) -> list[str]:
        """Names this run did not upload (Ctrl-C during the uploads)."""
        return [n for n in self.files if n not in self.uploaded]

    @property
    def exit_code(self) -> int:
        """0: every file has a result; 1: some error document; 2: outcomes missing; 130: interrupted."""
        if self.interrupted:
            return 130
        if self.timed_out or self.pending:
            return 2
        return 1 if any(o.kind == "error" for o in self.outcomes.values()) else 0

    def summary(self) -> str:
        """Counts of files, results (rows ok/failed), errors, pending; where they were written."""
        results = [o for o in self.outcomes.values() if o.kind == "result"]
        errors = [o for o in self.outcomes.values() if o.kind == "error"]
        rows_ok = sum(int(o.document.get("summary", {}).get("ok", 0)) for o in results)
        rows_failed = sum(int(o.document.get("summary", {}).get("failed", 0)) for o in results)
        lines = [
            f"{len(self.files)} file(s) for {self.model_id}: {len(self.uploaded)} uploaded, "
            f"{len(results)} result(s) ({rows_ok} row(s) ok, {rows_failed} failed), {len(errors)} error(s), "
            f"{len(self.pending)} pending",
        ]
        for o in sorted(errors, key=lambda o: o.name):
            detail = str(o.document.get("detail") or o.document.get("title") or "")
            detail = detail if len(detail) <= 160 else detail[:159] + "…"
            lines.append(f"  error  {o.name}: {detail}")
        if self.outcomes:
            lines.append(f"downloaded to {self.out_dir}/ (results/ and errors/)")
        if self.pending:
            lines.append(
                f"{len(self.pending)} uploaded file(s) have no outcome yet; they are in the input bucket and "
                f"will still be processed: their outcomes will be at {self.output_location}"
            )
        if self.not_uploaded:
            lines.append(
                f"{len(self.not_uploaded)} file(s) were not uploaded (the one being sent at Ctrl-C may or may "
                "not have arrived): run the command again for those"
            )
        return "\n".join(lines)


class BatchRun:
    """One ``medserve batch`` run against a pair of buckets.

    Parameters
    ----------
    s3
        A boto3 S3 client.
    input_bucket, output_bucket
        The buckets (``InputBucketName``/``OutputBucketName`` of a stack; ``medserve-input``/``-output`` locally).
    model_id
        The model; ``version`` pins one (``incoming/<model_id>@<version>/``).
    out_dir
        Where ``results/<name>.json`` and ``errors/<name>.json`` are written.
    """

    def __init__(
        self,
        s3: Any,
        input_bucket: str,
        output_bucket: str,
        model_id: str,
        out_dir: Path,
        *,
        version: str | None = None,
        poll_interval: float = 1.0,
        wait_s: float = 900.0,
        progress: Progress | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.s3 = s3
        self.input_bucket = input_bucket
        self.output_bucket = output_bucket
        self.model_id = model_id
        self.segment = f"{model_id}@{version}" if version else model_id
        self.out_dir = out_dir
        self.poll_interval = poll_interval
        self.wait_s = wait_s
        self.progress = progress
        self.sleep = sleep

    def run(self, files: Sequence[Path]) -> BatchReport:
        """Upload ``files``, wait for their outcomes, download them; Ctrl-C stops cleanly."""
        location = f"s3://{self.output_bucket}/results/{self.segment}/ (or errors/{self.segment}/)"
        report = BatchReport(self.model_id, self.out_dir, [f.name for f in files], location)
        progress = self.progress or Progress(len(files))
        try:
            before = self._list_outcomes()
            for i, f in enumerate(files):
                progress.show(i, "uploading")
                report.uploaded[f.name] = self._upload(f)
            progress.show(len(files), "uploading")
            progress.end()
            deadline = time.monotonic() + self.wait_s
            while report.pending:
                self._collect(report, before)
                ok = sum(o.kind == "result" for o in report.outcomes.values())
                progress.show(len(report.outcomes), "outcomes", f"ok {ok} errors {len(report.outcomes) - ok}")
                if not report.pending:
                    break
                if time.monotonic() > deadline:
                    report.timed_out = True
                    break
                self.sleep(self.poll_interval)
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            progress.end()
        return report

    def _upload(self, path: Path) -> str:
        key = f"incoming/{self.segment}/{path.name}"
        try:
            with path.open("rb") as body:
                answer = self.s3.put_object(Bucket=self.input_bucket, Key=key, Body=body)
        except OSError as exc:
            raise InputFileError(f"cannot read {path}: {exc}") from exc
        except Exception as exc:
            raise _s3_error(exc, f"uploading to s3://{self.input_bucket}/") from exc
        return str(answer.get("ETag", "")).strip('"')

    def _list_outcomes(self) -> dict[str, str]:
        """Every outcome key of this model and its ETag."""
        found: dict[str, str] = {}
        try:
            paginator = self.s3.get_paginator("list_objects_v2")
            for kind in ("results", "errors"):
                for page in paginator.paginate(Bucket=self.output_bucket, Prefix=f"{kind}/{self.segment}/"):
                    for obj in page.get("Contents", []):
                        found[obj["Key"]] = str(obj.get("ETag", "")).strip('"')
        except Exception as exc:
            raise _s3_error(exc, f"listing s3://{self.output_bucket}/") from exc
        return found

    def _collect(self, report: BatchReport, before: dict[str, str]) -> None:
        now = self._list_outcomes()
        for name in report.pending:
            for kind, folder in (("result", "results"), ("error", "errors")):
                key = f"{folder}/{self.segment}/{name}.json"
                if key not in now or before.get(key) == now[key]:
                    continue
                doc = self._get_json(key)
                source_etag = str((doc.get("source") or {}).get("etag", "")).strip('"')
                if source_etag and source_etag != report.uploaded[name]:
                    continue  # an outcome of another upload of the same name
                report.outcomes[name] = Outcome(name, kind, self._save(folder, name, doc), doc)
                break

    def _get_json(self, key: str) -> dict[str, Any]:
        try:
            raw = self.s3.get_object(Bucket=self.output_bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise _s3_error(exc, f"reading s3://{self.output_bucket}/") from exc
        doc = json.loads(raw)
        return doc if isinstance(doc, dict) else {"document": doc}

    def _save(self, folder: str, name: str, doc: dict[str, Any]) -> Path:
        target = self.out_dir / folder / f"{name}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        os.replace(partial, target)  # a Ctrl-C never leaves half a file
        return target


def _s3_error(exc: Exception, doing: str) -> MedServeError:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    from medserve_client.errors import AccessDeniedError, EndpointUnreachableError
    from medserve_client.errors import NoCredentialsError as MissingCredentials

    if isinstance(exc, NoCredentialsError):
        return MissingCredentials(f"{doing}: no AWS credentials found", hint="run `aws configure` or pass --profile")
    if isinstance(exc, EndpointConnectionError):
        return EndpointUnreachableError(f"{doing}: {exc}", hint="is `make run` up? otherwise check --s3-endpoint")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
            return AccessDeniedError(f"{doing}: {code}", hint="check your credentials and the bucket policy")
        if code in ("NoSuchBucket", "404"):
            return MedServeError(f"{doing}: no such bucket", hint="check --stack or --input-bucket/--output-bucket")
        return MedServeError(f"{doing}: {code or exc}")
    return MedServeError(f"{doing}: {exc}")
