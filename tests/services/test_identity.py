"""Identity comes from the certificate: foreign CAs, unnamed organizations, wrong roles."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from crucible import certificates
from crucible import spec as specs
from crucible.protocol import pb
from crucible.transport import TlsFiles
from tests.federation import Federation, spec
from tests.lightclient import LightClient

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def aggregator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    federation = Federation(tmp_path_factory.mktemp("identity"))
    federation.start_aggregator()
    yield federation
    federation.stop()


def test_certificate_from_another_ca_is_refused_at_the_handshake(aggregator, tmp_path):
    other = tmp_path / "other-ca"
    certificates.init_ca(other, name="someone-else")
    certificates.issue(other, "org-a", role="participant")
    files = TlsFiles(
        other / "org-a.crt", other / "org-a.key", aggregator.pki / "ca.crt"
    )
    client = LightClient(aggregator.aggregator_address, files)
    with pytest.raises(grpc.RpcError) as raised:
        client.stub.ListOffers(pb.OffersRequest(), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    client.close()


def test_organization_the_run_does_not_name_is_refused(aggregator: Federation):
    with aggregator.admin() as admin:
        run_id = admin.start_run("unnamed-org", specs.parse(spec(["org-a"]))).run_id
    intruder = LightClient(aggregator.aggregator_address, aggregator.issue("intruder"))
    assert intruder.stub.ListOffers(pb.OffersRequest(), timeout=5).offers == []
    with pytest.raises(grpc.RpcError) as raised:
        intruder.join(run_id)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "does not name organization 'intruder'" in raised.value.details()
    intruder.close()


def test_participant_certificate_is_refused_on_the_admin_api(aggregator: Federation):
    aggregator.issue("org-a")
    with aggregator.admin("org-a") as admin, pytest.raises(Exception) as raised:
        admin.start_run("as-participant", specs.parse(spec(["org-a"])))
    assert "PERMISSION_DENIED" in str(raised.value)
    assert "role operator" in str(raised.value)


def test_operator_certificate_cannot_act_as_a_participant(aggregator: Federation):
    client = LightClient(aggregator.aggregator_address, aggregator.tls("coordinator"))
    with pytest.raises(grpc.RpcError) as raised:
        client.stub.ListOffers(pb.OffersRequest(), timeout=5)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    client.close()
