"""The ``crucible`` command: one entry point for every component.

    crucible aggregator | participant | operator     run a service
    crucible certs init | issue | secret             the federation's certificates
    crucible run start | get | watch | cancel        administer runs (operator certificate)
    crucible model pull                              download a run's global model
    crucible demo                                    the whole federation on one machine
    crucible predict                                 predict rupture life with a model

This module is the composition root: the only place that imports the services and the
operator. Errors meant for people leave with exit code 2 and one line naming the
problem; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from crucible import telemetry
from crucible.errors import CrucibleError


def _certs(args: argparse.Namespace) -> int:
    from crucible import certificates

    directory = Path(args.dir)
    if args.certs_command == "init":
        path = certificates.init_ca(directory, name=args.name, days=args.days)
        print(path)
        return 0
    files = certificates.issue(
        directory,
        args.name,
        role=args.role,
        dns_names=args.dns,
        ip_addresses=args.ip,
        days=args.days,
        out=Path(args.out) if args.out else None,
    )
    print(
        json.dumps(
            {
                "certificate": str(files.certificate),
                "key": str(files.key),
                "ca": str(files.ca),
            }
        )
    )
    return 0


def _certs_secret(args: argparse.Namespace) -> int:
    """Print a Kubernetes Secret with an issued certificate, its key and the CA."""
    import base64

    import yaml

    from crucible.errors import InputError

    directory = Path(args.dir)
    issued = Path(args.out) if args.out else directory
    files = {
        "tls.crt": issued / f"{args.name}.crt",
        "tls.key": issued / f"{args.name}.key",
        "ca.crt": directory / "ca.crt",
    }
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise InputError(
            f"certs secret {args.name}: expected {', '.join(missing)}, found nothing; "
            f"issue it first with `crucible certs issue {args.name} --dir {args.dir}`"
        )
    metadata = {"name": args.secret_name}
    if args.namespace:
        metadata["namespace"] = args.namespace
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": metadata,
        "data": {
            key: base64.b64encode(path.read_bytes()).decode()
            for key, path in files.items()
        },
    }
    print(yaml.safe_dump(secret, sort_keys=False), end="")
    return 0


def _aggregator(args: argparse.Namespace) -> int:
    from crucible.settings import AggregatorSettings
    from services.aggregator.server import serve

    settings = AggregatorSettings.load(
        state_dir=args.state_dir, listen=args.listen, metrics_listen=args.metrics_listen
    )
    serve(settings)
    return 0


def _participant(args: argparse.Namespace) -> int:
    from crucible.settings import ParticipantSettings
    from services.participant.agent import serve

    settings = ParticipantSettings.load(
        aggregator=args.aggregator, once=args.once or None
    )
    return serve(settings)


def _operator(args: argparse.Namespace) -> int:
    from crucible.settings import OperatorSettings
    from operators.main import run

    run(OperatorSettings.load())
    return 0


def _admin_client(args: argparse.Namespace):
    from crucible.client import AdminClient
    from crucible.settings import TlsSettings

    tls = TlsSettings(certificate=args.cert, key=args.key, ca=args.ca)
    return AdminClient(args.aggregator, tls.files(), server_name=args.server_name)


def _run(args: argparse.Namespace) -> int:
    import yaml
    from google.protobuf.json_format import MessageToDict

    from crucible import spec as specs

    def show(status: object) -> None:
        print(
            json.dumps(
                MessageToDict(status), indent=None if args.run_command == "watch" else 2
            )
        )

    with _admin_client(args) as client:
        if args.run_command == "start":
            document = yaml.safe_load(Path(args.spec).read_text())
            body = (
                document.get("spec", document)
                if isinstance(document, dict)
                else document
            )
            show(client.start_run(args.run_key, specs.parse(body, source=args.spec)))
        elif args.run_command == "get":
            show(client.get_run(args.run_id))
        elif args.run_command == "cancel":
            show(client.cancel_run(args.run_id))
        else:
            for status in client.watch_run(args.run_id):
                show(status)
    return 0


def _model(args: argparse.Namespace) -> int:
    from crucible.client import pull_model
    from crucible.settings import TlsSettings

    tls = TlsSettings(certificate=args.cert, key=args.key, ca=args.ca)
    digest = pull_model(
        args.aggregator,
        tls.files(),
        args.run_id,
        Path(args.output),
        server_name=args.server_name,
    )
    print(json.dumps({"path": args.output, "digest": digest}))
    return 0


def _demo(argv: list[str]) -> int:
    from crucible.demo import demo_main

    return demo_main(argv)


def _predict(argv: list[str]) -> int:
    from crucible.demo import predict_main

    return predict_main(argv)


def _tls_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--aggregator", required=True, help="host:port of the aggregator"
    )
    parser.add_argument("--cert", required=True, help="your certificate (PEM)")
    parser.add_argument("--key", required=True, help="your private key (PEM)")
    parser.add_argument("--ca", required=True, help="the federation CA (PEM)")
    parser.add_argument("--server-name", help="name in the aggregator's certificate")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="crucible", description=__doc__.split("\n")[0])
    root.add_argument("--log-level", default="INFO")
    commands = root.add_subparsers(dest="command", required=True)

    aggregator = commands.add_parser("aggregator", help="run the aggregator service")
    aggregator.add_argument("--state-dir")
    aggregator.add_argument("--listen")
    aggregator.add_argument("--metrics-listen")
    aggregator.set_defaults(handler=_aggregator)

    participant = commands.add_parser("participant", help="run a participant agent")
    participant.add_argument("--aggregator")
    participant.add_argument(
        "--once", action="store_true", help="exit when the first run ends"
    )
    participant.set_defaults(handler=_participant)

    operator = commands.add_parser("operator", help="run the FederationRound operator")
    operator.set_defaults(handler=_operator)

    certs = commands.add_parser("certs", help="create the CA and issue certificates")
    certs_commands = certs.add_subparsers(dest="certs_command", required=True)
    init = certs_commands.add_parser("init", help="create a federation CA")
    init.add_argument("--dir", required=True)
    init.add_argument("--name", default="crucible-federation")
    init.add_argument("--days", type=int, default=3650)
    init.set_defaults(handler=_certs)
    issue = certs_commands.add_parser(
        "issue", help="issue an organization's certificate"
    )
    issue.add_argument("name", help="organization name (certificate subject O and CN)")
    issue.add_argument(
        "--role", required=True, choices=["participant", "operator", "aggregator"]
    )
    issue.add_argument("--dir", required=True, help="directory of the CA")
    issue.add_argument("--dns", action="append", default=[], help="DNS name (servers)")
    issue.add_argument("--ip", action="append", default=[], help="IP address (servers)")
    issue.add_argument("--days", type=int, default=365)
    issue.add_argument("--out", help="directory for NAME.crt and NAME.key")
    issue.set_defaults(handler=_certs)
    secret = certs_commands.add_parser(
        "secret",
        help="print a Kubernetes Secret (tls.crt, tls.key, ca.crt) of an issued "
        "certificate, for `kubectl apply -f -`",
    )
    secret.add_argument("name", help="organization name the certificate was issued to")
    secret.add_argument("--dir", required=True, help="directory of the CA")
    secret.add_argument("--out", help="directory of NAME.crt and NAME.key if not --dir")
    secret.add_argument(
        "--secret-name", required=True, help="name of the Secret, as the chart expects"
    )
    secret.add_argument("--namespace", help="namespace of the Secret")
    secret.set_defaults(handler=_certs_secret)

    run = commands.add_parser("run", help="administer runs on an aggregator")
    run_commands = run.add_subparsers(dest="run_command", required=True)
    start = run_commands.add_parser("start", help="start a run from a spec file")
    start.add_argument("spec", help="YAML FederationRound or its spec")
    start.add_argument(
        "--run-key",
        dest="run_key",
        required=True,
        help="idempotency key (the FederationRound UID)",
    )
    _tls_arguments(start)
    for verb in ("get", "watch", "cancel"):
        command = run_commands.add_parser(verb, help=f"{verb} a run")
        command.add_argument("run_id")
        _tls_arguments(command)
    run.set_defaults(handler=_run)

    model = commands.add_parser("model", help="global models")
    model_commands = model.add_subparsers(dest="model_command", required=True)
    pull = model_commands.add_parser("pull", help="download a run's global model")
    pull.add_argument("run_id")
    pull.add_argument("--output", required=True)
    _tls_arguments(pull)
    model.set_defaults(handler=_model)

    commands.add_parser("demo", help="the federation on one machine", add_help=False)
    commands.add_parser("predict", help="predict rupture life", add_help=False)
    return root


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    forwarded = {"demo": _demo, "predict": _predict}
    try:
        if argv and argv[0] in forwarded:
            telemetry.configure("WARNING")
            return forwarded[argv[0]](argv[1:])
        args = parser().parse_args(argv)
        telemetry.configure(args.log_level)
        return args.handler(args)
    except CrucibleError as error:
        print(f"crucible: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
