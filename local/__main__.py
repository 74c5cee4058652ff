"""``python -m local`` (``make run``): serve the template's API, start the extras, wait for Ctrl-C.

Environment: ``HOST`` (default 127.0.0.1), ``PORT`` (default 3000), ``MEDSERVE_MODELS_DIR``
(default ``layers/models``), ``MEDSERVE_LOCAL_EXTRAS`` (see :mod:`local.extras`),
``MEDSERVE_AUDIT_FILE`` (default ``.local/audit.jsonl``: where the audit records are appended).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType

from local import extras
from local.server import DEFAULT_TEMPLATE, LocalApi


def banner(api: LocalApi, failures: dict[str, BaseException], extra_lines: list[str]) -> str:
    """The startup banner: URL, routes, models dir, auth note, extras, how to stop."""
    lines = [f"MedServe local API on {api.url}  (template: {api.template.path.name})", ""]
    width = max((len(r.path) for r in api.routes.routes), default=10)
    lines.append(f"  {'METHOD':<7} {'PATH':<{width}}  {'FUNCTION':<18} AUTH ON AWS")
    for route in api.routes.routes:
        auth = "none" if route.auth == "NONE" else route.auth
        target = route.function_id if route.mock is None else "(API Gateway)"
        lines.append(f"  {route.method:<7} {route.path:<{width}}  {target:<18} {auth}")
    lines.append("")
    lines.append(f"models dir: {api.models_dir}")
    lines.append("auth:       no auth locally (IAM / SigV4 on AWS, except where the table says none)")
    if os.environ.get("MEDSERVE_AUDIT_FILE"):
        lines.append(f"audit:      {os.environ['MEDSERVE_AUDIT_FILE']} (one FHIR AuditEvent per line)")
    for fid, exc in failures.items():
        lines.append(f"INIT FAILED: {fid}: {exc.__cause__!r} (its routes answer 502; see the log above)")
    lines.extend(extra_lines)
    lines.append("Ctrl-C to stop")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the local API until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__)
    parser.add_argument("--template", default=str(DEFAULT_TEMPLATE), help="SAM template (default: %(default)s)")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s local %(levelname)s %(message)s")
    stop_event = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_event.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    # Where medserve.audit appends its AuditEvents locally (deployed: stdout -> CloudWatch -> the audit bucket).
    os.environ.setdefault("MEDSERVE_AUDIT_FILE", os.path.abspath(os.path.join(".local", "audit.jsonl")))
    api = LocalApi(args.template, host=args.host, port=args.port, eager=False)
    failures = api.init_functions()
    try:
        api.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc} (set PORT to use another port)", file=sys.stderr)
        return 1
    ctx = extras.ExtraContext(api=api, stop_event=stop_event)
    try:
        started = extras.start_extras(ctx)
    except Exception:
        logging.getLogger("local").exception("an extra failed to start")
        api.stop()
        return 1
    print(banner(api, failures, ctx.banner), flush=True)
    try:
        while not stop_event.wait(0.5):
            pass
    finally:
        print("stopping ...", file=sys.stderr, flush=True)
        extras.stop_extras(started)
        api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
