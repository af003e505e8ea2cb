"""Built-in ACME (RFC 8555) over HTTP-01: certificates for Ingresses annotated for it.

:class:`~pyingress.tls.acme.client.AcmeClient` speaks the protocol (async, on httpx),
:class:`~pyingress.tls.acme.responder.ChallengeResponder` answers the CA's HTTP-01 requests
from the proxy's port 80, and :class:`~pyingress.tls.acme.manager.AcmeManager` decides what to
order and when, and writes results through a :class:`~pyingress.tls.acme.sink.CertificateSink`.
"""

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
