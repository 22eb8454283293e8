"""Mutual-TLS gRPC servers and channels, and who is on the other end of a call.

Servers require and verify a client certificate from the federation CA, and reload their
own certificate, key and CA from disk when the files change (rotation without restart):
gRPC asks for the configuration at each new handshake. Since a connection outlives its
handshake, :class:`PeerCheck` checks the peer's certificate again on every call against
the CA file as it is now, so a rotated CA or an expired certificate takes effect on the
peer's next call. Channels present the caller's certificate and verify the server's
against the same CA.

Keepalive is tuned for rounds of an hour or more behind proxies that drop idle
connections: the client pings every ``keepalive_seconds`` (default 30 s, below the
shortest idle timeouts of common load balancers and NATs, about a minute) even without
calls in flight, and the server accepts such pings however often they come. gRPC's
default server policy would answer pings more frequent than every five minutes with
GOAWAY "too_many_pings", closing exactly the connections keepalive is meant to keep.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from cryptography import x509

from crucible.certificates import Identity, identity_of, trust_problem

# Four times a tensor chunk (crucible.tensors.CHUNK_BYTES), and far above any other
# message. gRPC refuses larger messages, which also bounds the memory a peer can make
# the aggregator keep for it (it grows with the size of the messages received).
MAX_MESSAGE_BYTES = 1 << 20


@dataclass
class TlsFiles:
    """Paths of a service's certificate, key and the CA it trusts."""

    certificate: Path
    key: Path
    ca: Path
    _stamp: tuple[float, ...] = field(default=(), repr=False)

    def read(self) -> tuple[bytes, bytes, bytes]:
        return (
            self.certificate.read_bytes(),
            self.key.read_bytes(),
            self.ca.read_bytes(),
        )

    def changed(self) -> bool:
        """True when any of the files changed since the last call."""
        stamp = tuple(
            os.stat(p).st_mtime_ns + os.stat(p).st_size
            for p in (self.certificate, self.key, self.ca)
        )
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return True


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Server credentials that demand a client certificate and follow file rotation."""

    def configuration() -> grpc.ServerCertificateConfiguration:
        certificate, key, ca = files.read()
        return grpc.ssl_server_certificate_configuration([(key, certificate)], ca)

    files.changed()
    initial = configuration()

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        try:
            return configuration() if files.changed() else None
        except OSError:
            return None

    return grpc.dynamic_ssl_server_credentials(
        initial, fetch, require_client_authentication=True
    )


def keepalive_options(keepalive_seconds: float) -> list[tuple[str, int]]:
    milliseconds = int(keepalive_seconds * 1000)
    return [
        ("grpc.keepalive_time_ms", milliseconds),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", min(milliseconds, 10_000)),
        ("grpc.http2.min_time_between_pings_ms", min(milliseconds, 10_000)),
        # Server side: accept keepalive pings from clients at any rate.
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 1_000),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]


def channel(
    address: str,
    files: TlsFiles,
    *,
    server_name: str | None = None,
    keepalive_seconds: float = 30.0,
) -> grpc.Channel:
    """A mutual-TLS channel to ``address`` presenting the certificate in ``files``."""
    certificate, key, ca = files.read()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=certificate
    )
    options = keepalive_options(keepalive_seconds)
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(address, credentials, options=options)


@functools.lru_cache(maxsize=1024)
def _identity_of_cached(pem: bytes) -> Identity:
    return identity_of(pem)


def peer_identity(context: grpc.ServicerContext) -> Identity | None:
    """The verified peer certificate's identity, or None without one."""
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        return None
    return _identity_of_cached(pems[0])


@functools.lru_cache(maxsize=4096)
def _trust_problem_cached(pem: bytes, ca_bundle: bytes, minute: int) -> str | None:
    now = dt.datetime.fromtimestamp(minute * 60, dt.UTC)
    return trust_problem(pem, ca_bundle, now=now)


class PeerCheck:
    """Checks a call's peer certificate against the trusted CA file as it is now.

    Expiry is checked to the minute; the CA file is read again when it changes.
    """

    def __init__(self, ca: Path) -> None:
        self.ca = ca
        self._stamp: tuple[int, int] = (0, 0)
        self._bundle = b""

    def bundle(self) -> bytes:
        """The CA file's certificates; the last readable ones while it is rewritten."""
        try:
            stat = os.stat(self.ca)
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                content = self.ca.read_bytes()
                x509.load_pem_x509_certificates(content)  # whole, or keep the last
                self._bundle = content
                self._stamp = stamp
        except (OSError, ValueError):
            pass
        return self._bundle

    def problem(self, context: grpc.ServicerContext) -> str | None:
        """Why the peer of ``context`` is not trusted now; None when it is."""
        pems = context.auth_context().get("x509_pem_cert")
        if not pems:
            return "no client certificate"
        bundle = self.bundle()
        if not bundle:  # no CA could ever be read: the handshake's check stands
            return None
        minute = int(dt.datetime.now(dt.UTC).timestamp() // 60)
        return _trust_problem_cached(pems[0], bundle, minute)
