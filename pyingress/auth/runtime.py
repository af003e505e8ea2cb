"""Process-wide auth state: the login service, the ``/oauth2/`` endpoints, filter registration.

Filters are made per route policy by factories that only see the policy, so what they share
for the whole process (the OIDC service with its providers and cookie key) lives here.
:func:`start_auth` is called once by ``serve`` after the proxy exists.

The auth machinery (httpx, authlib, joserfc: a third of an idle process's memory) is loaded
only when something needs it: a route with an auth policy, or a request under ``/oauth2/``.
The ``--oidc-*`` flags are still checked at startup.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pyingress.auth.oidc import OIDCService
    from pyingress.auth.options import OIDCSettings
    from pyingress.policy.filters import Filter
    from pyingress.routing.policy import RoutePolicy
    from pyingress.routing.table import TableHolder


class Mountable(Protocol):
    def mount(self, path_prefix: str, app: Any) -> None: ...


class AuthRuntime:
    """What the auth filters share; ``oidc`` is None until :func:`start_auth` runs."""

    def __init__(self) -> None:
        self.settings: OIDCSettings | None = None
        self.holder: TableHolder | None = None
        self.registered = False
        self._oidc: OIDCService | None = None

    @property
    def oidc(self) -> OIDCService | None:
        """The login service, built on first use once :func:`start_auth` has run."""
        if self._oidc is None and self.settings is not None and self.holder is not None:
            from pyingress.auth.oidc import OIDCService

            self._oidc = OIDCService(self.settings, self.holder)
        return self._oidc

    @oidc.setter
    def oidc(self, service: OIDCService | None) -> None:
        self._oidc = service

    async def close(self) -> None:
        service, self._oidc = self._oidc, None
        self.settings = self.holder = None
        if service is not None:
            await service.aclose()


RUNTIME = AuthRuntime()


def _allow_list_filter(policy: RoutePolicy) -> Filter | None:
    if getattr(policy, "auth", None) is None:
        return None
    from pyingress.auth.filters import allow_list_filter

    return allow_list_filter(policy)


def _auth_filter(policy: RoutePolicy) -> Filter | None:
    if getattr(policy, "auth", None) is None:
        return None
    from pyingress.auth.filters import auth_filter

    return auth_filter(policy)


def register_filters() -> None:
    """Register the allow-list (order 20) and auth (order 50) filter factories, once."""
    if RUNTIME.registered:
        return
    from pyingress.policy.filters import register_filter

    register_filter(20, _allow_list_filter)
    register_filter(50, _auth_filter)
    RUNTIME.registered = True


class OAuth2App:
    """The ``/oauth2/`` endpoints, built on the first request that reaches them."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._app is None:
            from pyingress.auth.endpoints import oauth2_app

            service = RUNTIME.oidc
            assert service is not None, "start_auth has not run"
            self._app = oauth2_app(service)
        await self._app(scope, receive, send)


async def start_auth(args: argparse.Namespace, proxy: Mountable, holder: TableHolder) -> None:
    """Check the ``--oidc-*`` flags and mount ``/oauth2/`` on the proxy.

    Raises :class:`pyingress.cli.StartupError` for unusable flags or files.
    """
    from pyingress.auth.options import settings_from_args

    register_filters()
    RUNTIME.settings = settings_from_args(args)
    RUNTIME.holder = holder
    proxy.mount("/oauth2/", OAuth2App())


async def stop_auth() -> None:
    """Close the pooled HTTP clients (call on shutdown); only those that were opened."""
    await RUNTIME.close()
    external = sys.modules.get("pyingress.auth.external")  # never imported: nothing to close
    if external is not None:
        await external.SUBREQUESTS.aclose()
