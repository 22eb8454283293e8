"""What every handler of the operator works with, built once at start.

kopf hands this object to each handler as ``memo`` (a shallow copy per resource, so
everything in it is shared): the operator's settings, the Kubernetes API calls about
FederationRounds, and the aggregator's Admin client for the short handlers (cancel,
update participants). Each run follower opens a channel of its own instead, so closing
it ends only that follower's watch stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from crucible.client import AdminClient
from crucible.settings import OperatorSettings
from crucible.transport import TlsFiles
from operators.federationrounds import FederationRounds


@dataclass
class Operating:
    settings: OperatorSettings
    files: TlsFiles
    resources: FederationRounds
    admin: AdminClient

    def admin_client(self) -> AdminClient:
        """A new Admin client on its own channel; the caller closes it."""
        return AdminClient(
            self.settings.aggregator,
            self.files,
            server_name=self.settings.server_name,
            timeout_seconds=self.settings.request_timeout_seconds,
        )
