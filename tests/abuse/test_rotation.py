"""Certificates rotate on disk without a restart; a rotated CA cuts old identities off.

The tests of this module share one aggregator and run in order: the last one replaces
the federation's CA, after which only certificates of the new CA work.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import ssl
import time

import grpc
import pytest

from crucible import certificates
from crucible.protocol import pb
from crucible.transport import PeerCheck, TlsFiles
from tests.abuse.conftest import audit_records
from tests.federation import Federation
from tests.lightclient import LightClient

pytestmark = pytest.mark.timeout(60)


def served_fingerprint(federation: Federation, files: TlsFiles) -> str:
    """SHA-256 of the certificate the aggregator presents to a new handshake."""
    context = ssl.create_default_context(cafile=str(files.ca))
    context.check_hostname = False
    context.load_cert_chain(str(files.certificate), str(files.key))
    context.set_alpn_protocols(["h2"])
    host, _, port = federation.aggregator_address.rpartition(":")
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def file_fingerprint(path) -> str:
    return certificates.identity_of(path.read_bytes()).fingerprint


def test_rotated_aggregator_certificate_is_served_without_a_restart(
    aggregator: Federation,
):
    files = aggregator.issue("org-a")
    process = aggregator.aggregator_process
    before = served_fingerprint(aggregator, files)
    assert before == file_fingerprint(aggregator.pki / "aggregator.crt")

    certificates.issue(
        aggregator.pki,
        "aggregator",
        role="aggregator",
        ip_addresses=["127.0.0.1"],
        dns_names=["localhost"],
    )
    rotated = file_fingerprint(aggregator.pki / "aggregator.crt")
    deadline = time.monotonic() + 10
    while served_fingerprint(aggregator, files) != rotated:
        assert time.monotonic() < deadline, "the rotated certificate is not served"
        time.sleep(0.2)
    assert rotated != before
    assert aggregator.aggregator_process is process and process.poll() is None
    client = LightClient(aggregator.aggregator_address, files)
    client.stub.ListOffers(pb.OffersRequest(), timeout=5)
    client.close()


def test_rotated_ca_cuts_off_old_certificates_on_their_next_call(
    aggregator: Federation,
):
    old = LightClient(aggregator.aggregator_address, aggregator.issue("org-a"))
    old.stub.ListOffers(pb.OffersRequest(), timeout=5)  # connected and trusted

    fresh = aggregator.root / "new-ca"
    certificates.init_ca(fresh, name="crucible-federation-2")
    certificates.issue(
        fresh, "aggregator", role="aggregator", ip_addresses=["127.0.0.1"]
    )
    certificates.issue(fresh, "org-b", role="participant")
    for name in ("aggregator.key", "aggregator.crt", "ca.crt"):
        shutil.copyfile(fresh / name, aggregator.pki / name)

    with pytest.raises(grpc.RpcError) as raised:
        old.stub.ListOffers(pb.OffersRequest(), timeout=5)
    # The connection outlives its handshake; the per-call check cuts it off.
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "not issued by the current federation CA" in raised.value.details()
    refused = [r for r in audit_records(aggregator) if r["action"] == "call_refused"]
    assert refused[-1]["actor"] == "org-a"
    assert "not issued by the current federation CA" in refused[-1]["detail"]["why"]
    old.close()

    again = LightClient(aggregator.aggregator_address, aggregator.tls("org-a"))
    with pytest.raises(grpc.RpcError) as raised:
        again.stub.ListOffers(pb.OffersRequest(), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    again.close()

    renewed = TlsFiles(fresh / "org-b.crt", fresh / "org-b.key", fresh / "ca.crt")
    client = LightClient(aggregator.aggregator_address, renewed)
    assert client.stub.ListOffers(pb.OffersRequest(), timeout=5).offers == []
    client.close()


def test_half_written_ca_file_keeps_the_last_complete_one(tmp_path):
    certificates.init_ca(tmp_path)
    check = PeerCheck(tmp_path / "ca.crt")
    complete = check.bundle()
    (tmp_path / "ca.crt").write_bytes(complete[: len(complete) // 2])
    assert check.bundle() == complete
