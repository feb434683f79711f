"""`ingest-server trust export`: the verifier's trust file (docs/evidence.md, "The trust
file").

    ingest-server trust export --enterprise E --out trust.json [--tsa-cert FILE ...]
                               [--signing-key F]

It holds the public keys a verifier checks a bundle against: every public key the
enterprise's gateways have had, with when each was enrolled and retired, and its
fingerprint (what the enrolment visit compares with the one the gateway prints); the
server's report-signing keys with their dates; the certificates of the time-stamping
authorities given with --tsa-cert (PEM: the TSA's certificate, then its CA certificates
up to the root, as `anchor --tsa-cert` takes them). It is handed to the verifier at the
enrolment visit and never shipped inside a bundle: a verifier that trusted the keys a
bundle carries would trust whoever made the bundle. No private key goes in it.

The SHA-256 printed at the end is what the visit's record notes, so that the verifier
can later tell that the file they hold is the one handed over. Exit codes: 0 written,
2 bad arguments (an unknown enterprise, a certificate file that is not a PEM chain),
1 the database could not be used.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

from ingest_server.cli.common import db_args, migrated_connection, signing_key_path
from ingest_server.evidence.keys import load_or_create_key, register_key
from ingest_server.evidence.trust_file import trust_document, trust_json
from ingest_server.files import write_atomic
from ingest_server.repo import enterprises
from ingest_server.repo.enterprises import EnterpriseNotFoundError


def add_parsers(sub: Any) -> None:  # argparse's _SubParsersAction is private
    p = sub.add_parser("trust", help="the verifier's trust file: public keys and TSA certificates")
    trust_sub = p.add_subparsers(dest="trust_command", required=True)
    exp = trust_sub.add_parser(
        "export", help="write the trust file handed to a verifier at the enrolment visit"
    )
    db_args(exp)
    exp.add_argument("--enterprise", required=True)
    exp.add_argument("--out", type=Path, required=True, help="the trust file (JSON)")
    exp.add_argument(
        "--tsa-cert", action="append", default=[], type=Path, metavar="FILE",
        help="PEM: a TSA's certificate, then its CA certificates up to the root (as "
        "`anchor --tsa-cert`); repeat for several TSAs",
    )  # fmt: skip
    exp.add_argument(
        "--signing-key", type=Path,
        help="the report signing key whose public key to include if no report was signed "
        "with it yet (default: DATA_DIR/keys/report-signing.pem, when it exists)",
    )  # fmt: skip


def cmd_trust(args: argparse.Namespace) -> int:
    key_path = signing_key_path(args)
    with migrated_connection(args) as conn:
        if not enterprises.enterprise_exists(conn, enterprise=args.enterprise):
            known = [e["id"] for e in enterprises.list_enterprises(conn)]
            raise EnterpriseNotFoundError(
                f"--enterprise: no enterprise {args.enterprise!r} in the registry (known: {known})"
            )
        if key_path.exists():  # the key in use, also before its first report
            register_key(conn, load_or_create_key(key_path).public_key())
        doc = trust_document(conn, enterprise=args.enterprise, tsa_files=args.tsa_cert)
    data = trust_json(doc)
    write_atomic(args.out, data, 0o644)
    keys, gateways = sum(len(g["keys"]) for g in doc["gateways"]), len(doc["gateways"])
    signing, tsas = len(doc["report_keys"]), len(doc["tsas"])
    print(f"wrote {args.out}: {keys} gateway key(s) of {gateways} gateway(s), {signing} "
          f"report signing key(s), {tsas} TSA(s)")  # fmt: skip
    for g in doc["gateways"]:
        for k in g["keys"]:
            state = f"retired {k['retired_at']}" if k["retired_at"] else "in use"
            print(f"  {g['gateway']:<28} {k['fingerprint']}  enrolled {k['enrolled_at']}  {state}")
    print(f"sha256 {hashlib.sha256(data).hexdigest()}  (note it in the enrolment record)")
    print("hand this file to the verifier in person; never ship it inside a bundle",
          file=sys.stderr)  # fmt: skip
    return 0
