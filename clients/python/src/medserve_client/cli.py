"""The ``medserve`` command: ``models``, ``models show``, ``predict``, ``batch``.

Only the standard library is imported at start; botocore/boto3 (signing, S3) and Pillow
(``--heatmap``) load when a command needs them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medserve_client import __version__, render
from medserve_client.client import DEFAULT_ENDPOINT, ENDPOINT_ENV, Client, stack_outputs
from medserve_client.errors import MedServeError

EXIT_ERROR = 1
EXIT_USAGE = 2


def _connection_options(parser: argparse.ArgumentParser, top: bool) -> None:
    # On the top parser the options have real defaults; on subcommands they are SUPPRESSed so
    # that `medserve --endpoint X models` and `medserve models --endpoint X` both work.
    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("connection")
    group.add_argument(
        "--endpoint",
        default=default(None),
        help=f"API base URL (default ${ENDPOINT_ENV} or {DEFAULT_ENDPOINT}); execute-api URLs are SigV4-signed",
    )
    group.add_argument(
        "--stack", default=default(None), help="a deployed stack's name: read its outputs (URL, buckets)"
    )
    group.add_argument(
        "--profile", default=default(None), help="AWS profile for signing and S3 (standard chain otherwise)"
    )
    group.add_argument("--region", default=default(None), help="AWS region (else from the URL or the profile)")
    group.add_argument(
        "--sign",
        action=argparse.BooleanOptionalAction,
        default=default(None),
        help="SigV4-sign requests (default: only for execute-api URLs and --stack)",
    )
    group.add_argument("--timeout", type=float, default=default(60.0), help="seconds to wait for an answer (60)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="medserve",
        description="Try MedServe models from the terminal: list them, read their cards, predict, run batches.",
        epilog="Research use only. Not for clinical use.",
    )
    parser.add_argument("--version", action="version", version=f"medserve {__version__}")
    _connection_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = sub.add_parser("models", help="list the served models; `models show ID` prints a model card")
    _connection_options(models, top=False)
    models.add_argument("--json", action="store_true", help="print the raw answer")
    models_sub = models.add_subparsers(dest="models_command", metavar="show")
    show = models_sub.add_parser("show", help="a model's details and card, rendered for the terminal")
    show.add_argument("model_id")
    show.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the raw answer")
    _connection_options(show, top=False)

    predict = sub.add_parser(
        "predict",
        help="predict from a file",
        description="risk: CSV (header of input names, optional id column) or JSON rows; imaging: PNG, JPEG or "
        "DICOM; vitals: CSV or JSON observations in time order. The task comes from the model.",
    )
    predict.add_argument("model_id")
    predict.add_argument("file", type=Path)
    predict.add_argument("--explain", action="store_true", help="show the top contributions")
    predict.add_argument("--top", type=int, default=3, help="how many contributions to show (3)")
    out = predict.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the raw JSON answer")
    out.add_argument("--fhir", action="store_true", help="print the FHIR R4 Bundle")
    predict.add_argument("--heatmap", type=Path, metavar="OUT.png", help="imaging: save the CAM overlay on the image")
    predict.add_argument("--version", dest="model_version", metavar="X.Y.Z", help="pin a model version")
    _connection_options(predict, top=False)

    batch = sub.add_parser(
        "batch",
        help="upload files to the batch bucket, wait for the outcomes, download them",
        description="Uploads each file to incoming/<model_id>/<name>, waits for results/ or errors/, writes them "
        "under --out and prints a summary. Ctrl-C stops waiting; what was uploaded is still processed.",
    )
    batch.add_argument("model_id")
    batch.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_FOLDER")
    batch.add_argument("--out", type=Path, help="where to write results/ and errors/ (./medserve-batch/<model_id>)")
    batch.add_argument("--version", dest="model_version", metavar="X.Y.Z", help="pin a model version")
    batch.add_argument(
        "--s3-endpoint",
        default=os.environ.get("MEDSERVE_S3_ENDPOINT"),
        help="S3 endpoint URL (default: the local runner's http://127.0.0.1:4566 unless --stack or the "
        "buckets are given; $MEDSERVE_S3_ENDPOINT)",
    )
    batch.add_argument("--input-bucket", help="the input bucket (from --stack; medserve-input locally)")
    batch.add_argument("--output-bucket", help="the output bucket (from --stack; medserve-output locally)")
    batch.add_argument("--wait", type=float, default=900.0, help="seconds to wait for the outcomes (900)")
    batch.add_argument("--poll", type=float, default=1.0, help="seconds between polls (1)")
    _connection_options(batch, top=False)
    return parser


def _outputs(args: argparse.Namespace) -> dict[str, str]:
    if not args.stack:
        return {}
    cached = getattr(args, "_stack_outputs", None)
    if cached is None:
        cached = stack_outputs(args.stack, profile=args.profile, region=args.region)
        args._stack_outputs = cached
    return cached


def _client(args: argparse.Namespace) -> Client:
    if args.stack and not args.endpoint:
        url = _outputs(args).get("ApiUrl")
        if not url:
            raise MedServeError(f"stack {args.stack!r} has no ApiUrl output", hint="is it a MedServe stack?")
        return Client(
            url,
            sign=True if args.sign is None else args.sign,
            profile=args.profile,
            region=args.region,
            timeout=args.timeout,
        )
    return Client(args.endpoint, sign=args.sign, profile=args.profile, region=args.region, timeout=args.timeout)


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, ensure_ascii=False))


def cmd_models(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.models_command == "show":
        detail = client.model(args.model_id)
        if args.json:
            _print_json(detail)
        else:
            print(render.model_detail(detail), end="")
        return 0
    models = client.models()
    if args.json:
        _print_json({"models": models})
    else:
        print(render.models_table([dict(m) for m in models]))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from medserve_client import inputs

    client = _client(args)
    task = client.model(args.model_id).get("task")
    if args.heatmap and task != "imaging":
        raise MedServeError(f"--heatmap is for imaging models; {args.model_id} is a {task} model")
    ids: list[str] | None = None
    media = ""
    raw = b""
    data: Any
    if task == "imaging":
        raw, media = inputs.read_image(args.file)
        data = raw
    elif task in ("risk", "vitals"):
        rows, ids = inputs.read_rows(args.file, "instances" if task == "risk" else "observations")
        data = rows
    else:
        raise MedServeError(f"model {args.model_id!r} has a task this client does not know: {task!r}")
    explain = args.explain or bool(args.heatmap)
    answer = client.predict(
        args.model_id,
        data,
        task=task,
        explain=explain,
        version=args.model_version,
        fhir=args.fhir,
        content_type=media or None,
    )
    if args.heatmap:
        from medserve_client.heatmap import save_overlay

        saved = save_overlay(answer, raw, media, args.heatmap)
        print(f"heatmap   {saved}", file=sys.stderr)
    if args.json or args.fhir:
        _print_json(answer)
    else:
        print(render.prediction(answer, str(task), ids=ids if task == "risk" else None, top=args.top), end="")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from medserve_client.batch import (
        LOCAL_INPUT_BUCKET,
        LOCAL_OUTPUT_BUCKET,
        LOCAL_S3_ENDPOINT,
        BatchRun,
        Progress,
        collect_files,
        s3_client,
    )

    files = collect_files(args.paths)
    outputs = _outputs(args)
    deployed = bool(args.stack or args.input_bucket)
    input_bucket = args.input_bucket or outputs.get("InputBucketName") or (None if deployed else LOCAL_INPUT_BUCKET)
    output_bucket = args.output_bucket or outputs.get("OutputBucketName") or (None if deployed else LOCAL_OUTPUT_BUCKET)
    if not input_bucket or not output_bucket:
        raise MedServeError("no buckets", hint="pass --stack NAME, or both --input-bucket and --output-bucket")
    endpoint = args.s3_endpoint or (None if deployed else LOCAL_S3_ENDPOINT)
    out_dir = args.out or Path("medserve-batch") / args.model_id
    s3 = s3_client(endpoint, profile=args.profile, region=args.region)
    print(
        f"uploading {len(files)} file(s) to s3://{input_bucket}/incoming/{args.model_id}/ ; outcomes into {out_dir}/",
        file=sys.stderr,
    )
    run = BatchRun(
        s3,
        input_bucket,
        output_bucket,
        args.model_id,
        out_dir,
        version=args.model_version,
        poll_interval=args.poll,
        wait_s=args.wait,
        progress=Progress(len(files)),
    )
    report = run.run(files)
    if report.interrupted:
        print(
            "interrupted: nothing is half-done. Files already uploaded stay in the input bucket and will still be "
            "processed; their outcomes land in the output bucket whether or not this command waits.",
            file=sys.stderr,
        )
    if report.timed_out:
        print(f"gave up waiting after {args.wait:.0f} s", file=sys.stderr)
    print(report.summary())
    return report.exit_code


def report_error(exc: MedServeError) -> None:
    """Print an error for a person: the problem's title, detail and field errors, then the hint."""
    if exc.problem:
        print(render.problem(exc.problem, str(exc)), file=sys.stderr)
    else:
        print(f"error: {exc}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; the exit status (0 ok, 1 error, 2 usage or missing outcomes, 130 Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.endpoint and args.stack:
        parser.error("--endpoint and --stack exclude each other")
    if args.command == "predict" and args.heatmap and args.fhir:
        parser.error("--heatmap needs the JSON answer; it cannot be combined with --fhir")
    handlers = {"models": cmd_models, "predict": cmd_predict, "batch": cmd_batch}
    try:
        return handlers[args.command](args)
    except MedServeError as exc:
        report_error(exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
