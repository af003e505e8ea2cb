"""Process-wide auth state: the login service, the ``/oauth2/`` endpoints, filter registration.

Filters are made per route policy by factories that only see the policy, so what they share
for the whole process (the OIDC service with its providers and cookie key) lives here.
:func:`start_auth` is called once by ``serve`` after the proxy exists.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pyingress.auth.oidc import OIDCService
    from pyingress.routing.table import TableHolder


class Mountable(Protocol):
    def mount(self, path_prefix: str, app: Any) -> None: ...


class AuthRuntime:
    """What the auth filters share; ``oidc`` is None until :func:`start_auth` runs."""

    def __init__(self) -> None:
        self.oidc: OIDCService | None = None
        self.registered = False


RUNTIME = AuthRuntime()


def register_filters() -> None:
    """Register the allow-list (order 20) and auth (order 50) filter factories, once."""
    if RUNTIME.registered:
        return
    from pyingress.auth.filters import allow_list_filter, auth_filter
    from pyingress.policy.filters import register_filter

    register_filter(20, allow_list_filter)
    register_filter(50, auth_filter)
    RUNTIME.registered = True


async def start_auth(args: argparse.Namespace, proxy: Mountable, holder: TableHolder) -> None:
    """Build the login service from the ``--oidc-*`` flags and mount ``/oauth2/`` on the proxy.

    Raises :class:`pyingress.cli.StartupError` for unusable flags or files.
    """
    from pyingress.auth.endpoints import oauth2_app
    from pyingress.auth.oidc import OIDCService
    from pyingress.auth.options import settings_from_args

    register_filters()
    RUNTIME.oidc = OIDCService(settings_from_args(args), holder)
    proxy.mount("/oauth2/", oauth2_app(RUNTIME.oidc))


async def stop_auth() -> None:
    """Close the pooled HTTP clients (call on shutdown)."""
    from pyingress.auth.external import SUBREQUESTS

    if RUNTIME.oidc is not None:
        await RUNTIME.oidc.aclose()
        RUNTIME.oidc = None
    await SUBREQUESTS.aclose()
