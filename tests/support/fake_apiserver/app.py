"""The ASGI application: parses Kubernetes API paths and maps verbs onto the registry."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from tests.support.fake_apiserver import discovery, errors, resources
from tests.support.fake_apiserver.errors import ApiError
from tests.support.fake_apiserver.faults import Faults
from tests.support.fake_apiserver.hooks import Hooks, Settings
from tests.support.fake_apiserver.patching import JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH
from tests.support.fake_apiserver.registry import Registry, typed
from tests.support.fake_apiserver.resources import Resource
from tests.support.fake_apiserver.selectors import field_selector, label_selector
from tests.support.fake_apiserver.store import Store
from tests.support.fake_apiserver.watch import Watch, WatchRequest, is_watch, parse_rv

JSON = dict[str, Any]
HOOK_PREFIX = "/_test/"


@dataclass
class Target:
    """What an API path names: a collection (no name) or one object, maybe a subresource."""

    resource: Resource
    namespace: str | None
    name: str | None = None
    subresource: str | None = None


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status, headers=headers)


def parse_target(parts: list[str]) -> Target | None:
    """``parts`` after ``/api/v1`` or ``/apis/{g}/{v}``, as ``[group, version, *rest]``."""
    group, version, rest = parts[0], parts[1], parts[2:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        resource = resources.find(group, version, rest[2])
        if resource is not None and resource.namespaced and len(rest) <= 5:
            return Target(resource, rest[1], *rest[3:5])
    if not rest or len(rest) > 3:
        return None
    resource = resources.find(group, version, rest[0])
    if resource is None or (resource.namespaced and len(rest) > 1):
        return None
    return Target(resource, None if resource.namespaced else "", *rest[1:3])


class FakeApiApp:
    def __init__(self, store: Store | None = None, settings: Settings | None = None,
                 require_namespaces: bool = False) -> None:
        self.store = store or Store()
        self.settings = settings or Settings()
        self.registry = Registry(self.store, require_namespaces)
        self.faults = Faults()
        self.hooks = Hooks(self.store, self.registry, self.faults, self.settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await self.dispatch(request)
        except ApiError as error:
            response = json_response(error.status(), error.code, error.headers)
        await response(scope, receive, send)

    async def dispatch(self, request: Request) -> Response:
        path = request.url.path
        if path.startswith(HOOK_PREFIX):
            return await self.hook(request, path[len(HOOK_PREFIX):])
        self.faults.record(request.method, path, request.url.query,
                           request.headers.get("content-type", ""))
        self.faults.check(path)
        simple = self.discovery(path)
        if simple is not None:
            return simple
        parts = [p for p in path.split("/") if p]
        target: Target | None = None
        if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
            target = parse_target(["", "v1", *parts[2:]])
        elif len(parts) >= 3 and parts[0] == "apis":
            target = parse_target(parts[1:])
        if target is None:
            raise errors.path_not_found(path)
        return await self.resource_request(request, target)

    def discovery(self, path: str) -> Response | None:
        trimmed = path.rstrip("/") or "/"
        if trimmed in ("/healthz", "/readyz", "/livez"):
            return PlainTextResponse("ok")
        if trimmed == "/version":
            return json_response(discovery.VERSION)
        if trimmed == "/api":
            return json_response(discovery.api_versions())
        if trimmed == "/api/v1":
            return json_response(discovery.resource_list("", "v1"))
        if trimmed == "/apis":
            return json_response(discovery.api_group_list())
        parts = trimmed.split("/")[1:]
        if parts[0] == "apis" and len(parts) in (2, 3):
            found = (discovery.api_group(parts[1]) if len(parts) == 2
                     else discovery.resource_list(parts[1], parts[2]))
            if found is None:
                raise errors.path_not_found(path)
            return json_response(found)
        return None

    # -- resources --------------------------------------------------------------------------

    async def resource_request(self, request: Request, target: Target) -> Response:
        if request.query_params.get("dryRun"):
            raise errors.bad_request("dryRun is not supported by the API-server double")
        if target.subresource is not None and (
            target.subresource != "status" or not target.resource.status_subresource
        ):
            raise errors.path_not_found(request.url.path)
        if target.name is None:
            return await self.collection(request, target)
        return await self.single(request, target, target.name)

    async def collection(self, request: Request, target: Target) -> Response:
        resource, namespace, query = target.resource, target.namespace, request.query_params
        match_labels = label_selector(query.get("labelSelector"))
        match_fields = field_selector(query.get("fieldSelector"))

        def match(obj: JSON) -> bool:
            return match_labels(obj) and match_fields(obj)

        if request.method == "GET":
            if is_watch(query.get("watch")):
                return self.watch(request, target, match)
            wanted = parse_rv(query.get("resourceVersion"))
            if wanted is not None and wanted > self.store.rv and not await self.store.wait_for_rv(
                wanted, self.settings.too_large_rv_wait
            ):
                raise errors.too_large_rv(wanted, self.store.rv)
            return json_response(self.registry.list(resource, namespace, match))
        if request.method == "POST" and namespace is not None:
            created = self.registry.create(resource, namespace, await self.body(request))
            return json_response(typed(resource, created), 201)
        if request.method == "DELETE":
            options = await self.body(request, optional=True)
            return json_response(self.registry.delete_collection(resource, namespace, match,
                                                                 options))
        raise errors.method_not_allowed(request.method)

    def watch(self, request: Request, target: Target, match: Callable[[JSON], bool]) -> Response:
        query = request.query_params
        timeout = query.get("timeoutSeconds")
        try:
            seconds = float(timeout) if timeout else self.settings.watch_timeout
        except ValueError:
            raise errors.bad_request(f"invalid timeoutSeconds {timeout!r}") from None
        watch_request = WatchRequest(
            resource=target.resource,
            namespace=target.namespace or None,
            match=match,
            resource_version=query.get("resourceVersion"),
            timeout=seconds,
            bookmarks=query.get("allowWatchBookmarks", "").lower() == "true",
            bookmark_interval=self.settings.bookmark_interval,
        )
        stream = Watch(self.store, watch_request).open(self.settings.expired_as_http)
        return StreamingResponse(stream, media_type="application/json")

    async def single(self, request: Request, target: Target, name: str) -> Response:
        resource, namespace = target.resource, target.namespace or ""
        method = request.method
        if method == "GET":
            return json_response(typed(resource, self.registry.get(resource, namespace, name)))
        if method == "PUT":
            obj, created = self.registry.update(
                resource, namespace, name, await self.body(request), target.subresource
            )
            return json_response(typed(resource, obj), 201 if created else 200)
        if method == "PATCH":
            content_type = request.headers.get("content-type", "")
            obj = self.registry.patch(resource, namespace, name, content_type,
                                      await self.body(request, content_type=content_type),
                                      target.subresource)
            return json_response(typed(resource, obj))
        if method == "DELETE" and target.subresource is None:
            options = await self.body(request, optional=True)
            return json_response(self.registry.delete(resource, namespace, name, options))
        raise errors.method_not_allowed(method)

    async def body(self, request: Request, optional: bool = False,
                   content_type: str | None = None) -> Any:
        if content_type is not None:
            _check_patch_type(content_type)
        raw = await request.body()
        if not raw.strip():
            if optional:
                return None
            raise errors.bad_request("the request body is empty")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise errors.bad_request(f"the request body is not valid JSON: {exc}") from None

    # -- test hooks -------------------------------------------------------------------------

    async def hook(self, request: Request, name: str) -> Response:
        body = await self.body(request, optional=True) or {}
        handler = _HOOKS.get((request.method, name))
        if handler is None:
            raise errors.path_not_found(request.url.path)
        return json_response(await handler(self.hooks, body, request))


def _check_patch_type(content_type: str) -> None:
    """415 comes before anything else about a patch, as in the real handler."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        raise errors.unsupported_media_type(content_type)


HookHandler = Callable[[Hooks, JSON, Request], Awaitable[Any]]


def _hook(fn: Callable[[Hooks, JSON, Request], Any]) -> HookHandler:
    async def run(hooks: Hooks, body: JSON, request: Request) -> Any:
        return fn(hooks, body, request)

    return run


_HOOKS: dict[tuple[str, str], HookHandler] = {
    ("POST", "seed"): _hook(lambda h, b, r: {"items": h.seed(
        b.get("items", [b]))}),
    ("POST", "compact"): _hook(lambda h, b, r: {"resourceVersion": str(h.compact())}),
    ("POST", "bookmark"): _hook(lambda h, b, r: {"watches": h.bookmark()}),
    ("POST", "drop-watches"): _hook(lambda h, b, r: {"watches": h.drop_watches(
        bool(b.get("abort", False)))}),
    ("POST", "inject"): _hook(lambda h, b, r: h.inject(
        int(b.get("status", 500)), int(b.get("count", 1)), str(b.get("pathPrefix", "")),
        int(b.get("retryAfter", 1)))),
    ("POST", "outage"): _hook(lambda h, b, r: h.outage(str(b.get("mode", "off")),
                                                       b.get("duration"))),
    ("POST", "reset-faults"): _hook(lambda h, b, r: h.reset_faults()),
    ("GET", "requests"): _hook(lambda h, b, r: {"items": h.requests()}),
    ("DELETE", "requests"): _hook(lambda h, b, r: {"items": h.requests(clear=True)}),
    ("POST", "settings"): _hook(lambda h, b, r: h.configure(**b)),
    ("GET", "settings"): _hook(lambda h, b, r: h.configure()),
    ("GET", "state"): _hook(lambda h, b, r: h.state()),
}
