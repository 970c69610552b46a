"""Scheduler preload for a negative control: the scheduler stops requiring client
certificates (TLS stays on). The keyless-client test must see the difference."""

import ssl

import distributed.security as security

# a preload given as a path may be run more than once: patch the original only
_original = getattr(security.Security, "_without_client_cert_check",
                    security.Security._get_tls_context)


def _no_client_certificate(self, tls, purpose):
    ctx = _original(self, tls, purpose)
    if ctx is not None and purpose is ssl.Purpose.CLIENT_AUTH:  # the server side
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


security.Security._without_client_cert_check = _original
security.Security._get_tls_context = _no_client_certificate
