"""The local S3 endpoint and batch pipeline of ``make run`` (an extra of :mod:`local.extras`).

``start(ctx)`` serves moto's S3 and SQS on ``http://127.0.0.1:4566`` (``S3_PORT``
overrides the port, ``S3_HOST`` the address), then builds what the template declares:

- the buckets named in ``Metadata.MedServe.Local`` (``medserve-input``,
  ``medserve-output``), versioned as in the template;
- the batch queue and its DLQ with the template's ``VisibilityTimeout``,
  ``MessageRetentionPeriod`` and ``RedrivePolicy.maxReceiveCount``
  (``LOCAL_SQS_VISIBILITY_TIMEOUT`` overrides the visibility timeout, e.g. ``5`` to
  watch a failing message reach the DLQ in seconds instead of minutes);
- the input bucket's ``NotificationConfiguration`` (``s3:ObjectCreated:*`` under
  ``incoming/`` -> the queue): moto itself then sends S3's event message for every
  put, in S3's shape (and an ``s3:TestEvent`` when the configuration is set);
- a poller playing the function's SQS event source mapping (``BatchSize``,
  ``MaximumBatchingWindowInSeconds``, ``ReportBatchItemFailures``), see
  :mod:`local.batch_poller`.

The batch function runs in the runner's process like the API functions, with
``MEDSERVE_OUTPUT_BUCKET`` set to the local output bucket and boto3 pointed at this
endpoint (``AWS_ENDPOINT_URL_S3``/``_SQS``) with fake credentials. Any credentials
work against the endpoint::

    aws --endpoint-url http://127.0.0.1:4566 s3 cp scan.dcm s3://medserve-input/incoming/chest-xray/
    aws --endpoint-url http://127.0.0.1:4566 s3 cp s3://medserve-output/results/chest-xray/scan.dcm.json -
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from local.batch_poller import SqsPoller

if TYPE_CHECKING:
    from local.extras import ExtraContext
    from local.functions import FunctionRuntime
    from local.template import Template

log = logging.getLogger("local")

DEFAULT_PORT = 4566
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "medserve-local",
    "AWS_SECRET_ACCESS_KEY": "medserve-local",
    "AWS_SESSION_TOKEN": "medserve-local",
}


@dataclass(frozen=True)
class QueueSpec:
    """A queue as the template declares it."""

    logical_id: str
    visibility_timeout: int
    retention: int | None
    dlq_logical_id: str | None
    max_receive_count: int | None


@dataclass(frozen=True)
class BatchWiring:
    """What the local pipeline needs from the template."""

    function_id: str
    input_bucket: str
    output_bucket: str
    queue: QueueSpec
    dlq: QueueSpec | None
    batch_size: int
    window_s: float
    report_failures: bool
    notifications: list[dict[str, Any]]
    versioned: dict[str, bool]


def _getatt_id(value: Any) -> str | None:
    """The logical id of ``!GetAtt X.Arn`` / ``!Ref X`` in raw template data."""
    if isinstance(value, Mapping):
        if "Fn::GetAtt" in value:
            att = value["Fn::GetAtt"]
            return str(att[0] if isinstance(att, list) else str(att).split(".")[0])
        if "Ref" in value:
            return str(value["Ref"])
    return None


def _queue_spec(resources: Mapping[str, Any], logical_id: str, resolve: Callable[[Any], Any]) -> QueueSpec:
    props = resolve(resources[logical_id].get("Properties") or {})
    raw_redrive = (resources[logical_id].get("Properties") or {}).get("RedrivePolicy") or {}
    redrive = props.get("RedrivePolicy") or {}
    if isinstance(redrive, str):
        redrive = json.loads(redrive)
    return QueueSpec(
        logical_id=logical_id,
        visibility_timeout=int(props.get("VisibilityTimeout", 30)),
        retention=int(props["MessageRetentionPeriod"]) if "MessageRetentionPeriod" in props else None,
        dlq_logical_id=_getatt_id(raw_redrive.get("deadLetterTargetArn")) if isinstance(raw_redrive, Mapping) else None,
        max_receive_count=int(redrive["maxReceiveCount"]) if "maxReceiveCount" in redrive else None,
    )


def read_wiring(template: Template) -> BatchWiring:
    """Read the batch function, its queue (+ DLQ), the buckets and the notification from the template."""
    raw = template.raw
    resources: Mapping[str, Any] = raw.get("Resources") or {}
    resolve = template.resolver.resolve
    local_meta = ((raw.get("Metadata") or {}).get("MedServe") or {}).get("Local") or {}
    fns = template.functions_with_event("SQS")
    if not fns:
        raise ValueError("the template has no function with an SQS event")
    fn = fns[0]
    event_name, ev_props = next(iter(fn.events_of_type("SQS").items()))
    raw_event = resources[fn.logical_id]["Properties"]["Events"][event_name]["Properties"]
    queue_id = _getatt_id(raw_event.get("Queue"))
    if queue_id is None or queue_id not in resources:
        raise ValueError(f"{fn.logical_id}.{event_name}: Queue is not a !GetAtt of a queue in this template")
    queue = _queue_spec(resources, queue_id, resolve)
    dlq = _queue_spec(resources, queue.dlq_logical_id, resolve) if queue.dlq_logical_id else None
    # The input bucket is the one whose notifications feed that queue.
    input_id, notifications = None, []
    for logical_id, res in resources.items():
        if res.get("Type") != "AWS::S3::Bucket":
            continue
        configs = ((res.get("Properties") or {}).get("NotificationConfiguration") or {}).get("QueueConfigurations")
        for conf in configs or []:
            if _getatt_id(conf.get("Queue")) == queue_id:
                input_id = logical_id
                rules = ((conf.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
                entry: dict[str, Any] = {"Events": [resolve(conf["Event"])]}
                if rules:
                    entry["Filter"] = {
                        "Key": {
                            "FilterRules": [{"Name": resolve(r["Name"]), "Value": resolve(r["Value"])} for r in rules]
                        }
                    }
                notifications.append(entry)
    env_bucket = resources[fn.logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    output_id = _getatt_id(env_bucket.get("MEDSERVE_OUTPUT_BUCKET"))
    versioned = {}
    for name, logical_id in (("input", input_id), ("output", output_id)):
        res_props = (resources.get(logical_id or "") or {}).get("Properties") or {}
        versioned[name] = (res_props.get("VersioningConfiguration") or {}).get("Status") == "Enabled"
    return BatchWiring(
        function_id=fn.logical_id,
        input_bucket=str(local_meta.get("InputBucket", "medserve-input")),
        output_bucket=str(local_meta.get("OutputBucket", "medserve-output")),
        queue=queue,
        dlq=dlq,
        batch_size=int(ev_props.get("BatchSize", 10)),
        window_s=float(ev_props.get("MaximumBatchingWindowInSeconds", 0)),
        report_failures="ReportBatchItemFailures" in (ev_props.get("FunctionResponseTypes") or []),
        notifications=notifications,
        versioned=versioned,
    )


def _check_port(host: str, port: int) -> None:
    """Fail fast (moto's server would hang) when the port is taken."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OSError(exc.errno, f"port {port} is in use; set S3_PORT to another port") from exc
            raise


class LocalS3:
    """moto's S3 + SQS server, the template's buckets/queues/notification, and the SQS poller.

    Parameters
    ----------
    template
        The parsed SAM template.
    runtime
        The batch function (a :class:`local.functions.FunctionRuntime`).
    host, port
        Where to serve (``port=0``: a free port).
    region
        Region of the queues and clients.
    """

    def __init__(self, template: Template, runtime: FunctionRuntime, *, host: str, port: int, region: str) -> None:
        self.wiring = read_wiring(template)
        self.runtime = runtime
        self.host, self.region = host, region
        self._requested_port = port
        self._server: Any = None
        self.poller: SqsPoller | None = None
        self.endpoint = ""

    def client(self, service: str) -> Any:
        """A boto3 client for this endpoint (fake credentials)."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def function_env(self) -> dict[str, str]:
        """What every local function gets so boto3 talks to this endpoint."""
        return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_ENDPOINT_URL_SQS": self.endpoint}

    def start(self) -> LocalS3:
        """Serve, create the resources, load the function and start polling."""
        from moto.server import ThreadedMotoServer

        _check_port(self.host, self._requested_port)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
        self._server = ThreadedMotoServer(ip_address=self.host, port=self._requested_port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        shown = f"[{host}]" if ":" in host else host
        self.endpoint = f"http://{shown}:{port}"
        w = self.wiring
        s3, sqs = self.client("s3"), self.client("sqs")
        kwargs = (
            {} if self.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
        )
        for kind, bucket in (("input", w.input_bucket), ("output", w.output_bucket)):
            s3.create_bucket(Bucket=bucket, **kwargs)
            if w.versioned.get(kind):
                s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        queue_url, queue_arn = self._create_queue(sqs)
        s3.put_bucket_notification_configuration(
            Bucket=w.input_bucket,
            NotificationConfiguration={"QueueConfigurations": [{**n, "QueueArn": queue_arn} for n in w.notifications]},
        )
        self.runtime.local_env.update({**self.function_env(), "MEDSERVE_OUTPUT_BUCKET": w.output_bucket})
        try:
            self.runtime.load()  # Lambda init now, so a broken function shows at startup
        except Exception:
            log.exception("init of %s failed; batch messages will be retried until it loads", w.function_id)
        self.poller = SqsPoller(
            sqs,
            queue_url=queue_url,
            queue_arn=queue_arn,
            region=self.region,
            invoke=self.runtime.invoke,
            batch_size=w.batch_size,
            window_s=w.window_s,
            report_failures=w.report_failures,
        ).start()
        return self

    def _create_queue(self, sqs: Any) -> tuple[str, str]:
        w = self.wiring
        attrs: dict[str, str] = {}
        visibility = os.environ.get("LOCAL_SQS_VISIBILITY_TIMEOUT") or str(w.queue.visibility_timeout)
        attrs["VisibilityTimeout"] = str(int(visibility))
        if w.queue.retention:
            attrs["MessageRetentionPeriod"] = str(w.queue.retention)
        if w.dlq is not None:
            dlq_attrs = {"MessageRetentionPeriod": str(w.dlq.retention)} if w.dlq.retention else {}
            dlq_url = sqs.create_queue(QueueName=w.dlq.logical_id, Attributes=dlq_attrs)["QueueUrl"]
            dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            if w.queue.max_receive_count:
                attrs["RedrivePolicy"] = json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": w.queue.max_receive_count}
                )
        url = sqs.create_queue(QueueName=w.queue.logical_id, Attributes=attrs)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, arn

    def stop(self) -> None:
        """Stop polling (finishing the current batch), then the server."""
        if self.poller is not None:
            self.poller.stop()
            self.poller = None
        if self._server is not None:
            self._server.stop()
            self._server = None

    def banner(self) -> list[str]:
        """Lines for the runner's startup banner."""
        w = self.wiring
        dlq = f", DLQ {w.dlq.logical_id} after {w.queue.max_receive_count} receives" if w.dlq else ""
        return [
            f"S3 (and SQS) on {self.endpoint}  (any credentials; aws --endpoint-url {self.endpoint} ...)",
            f"  put  s3://{w.input_bucket}/incoming/<model_id>/<name>",
            f"  get  s3://{w.output_bucket}/results/<model_id>/<name>.json  or  errors/<model_id>/<name>.json",
            f"  queue {w.queue.logical_id} -> {w.function_id} (batch {w.batch_size}, window {w.window_s:g} s{dlq})",
        ]


def start(ctx: ExtraContext) -> Callable[[], None]:
    """The :mod:`local.extras` hook: start the S3 endpoint and the batch pipeline; return the stopper."""
    api = ctx.api
    wiring = read_wiring(api.template)
    port = int(os.environ.get("S3_PORT", str(DEFAULT_PORT)))
    host = os.environ.get("S3_HOST", "127.0.0.1")
    local = LocalS3(api.template, api.functions[wiring.function_id], host=host, port=port, region=api.region)
    local.start()
    # Every function sees the same endpoint and fake credentials, so no invocation of one
    # function restores another's AWS settings mid-request (os.environ is process-wide).
    for runtime in api.functions.values():
        runtime.local_env.update(local.function_env())
    ctx.banner.extend(local.banner())
    return local.stop
