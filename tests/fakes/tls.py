"""A throw-away certificate authority for fakes that serve HTTPS on 127.0.0.1.

Clients under test trust it through a CA file (``ca_file`` account option), exactly as an
administrator would point calhub at a corporate proxy's CA, so TLS verification stays on.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True, slots=True)
class TestCA:
    """A trustme CA with a server certificate for the loopback names and its PEM file on disk."""

    __test__ = False  # not a pytest test class despite the name

    ca: trustme.CA
    server: trustme.LeafCert
    ca_file: Path

    @classmethod
    def create(cls, directory: Path) -> TestCA:
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost", "::1")
        ca_file = directory / "test-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        return cls(ca=ca, server=server, ca_file=ca_file)

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx
