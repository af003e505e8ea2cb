"""A small stand-in for the data plane that runs the auth filters, for tests.

It compiles a manifests folder with the real compiler, runs the real filter chain of each
route's policy, mounts the real ``/oauth2/`` app and forwards what passes to the route's
endpoint with httpx. The production proxy (``pyingress serve``) does the same at the protocol
level; this harness lets the auth tests run end to end with a browser before (and besides) it.

Usage: ``python -m tests.auth.harness --manifests DIR --port P [--oidc-... flags]``
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml

from pyingress.auth.options import add_arguments as add_oidc_arguments
from pyingress.auth.runtime import RUNTIME, start_auth, stop_auth
from pyingress.model import Snapshot
from pyingress.policy.filters import FilterChains, RequestView
from pyingress.routing.compiler import CompileOptions, compile_routes
from pyingress.routing.paths import normalize_host
from pyingress.routing.table import TableHolder

HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"te", b"trailer",
              b"proxy-connection", b"content-length", b"host"}


def load_table(folder: Path) -> TableHolder:
    objects = []
    for file in sorted(folder.glob("*.yaml")):
        objects.extend(doc for doc in yaml.safe_load_all(file.read_text()) if doc)
    result = compile_routes(Snapshot.of(objects), CompileOptions(watch_ingress_without_class=True))
    for problem in result.problems:
        print("problem:", problem, flush=True)
    return TableHolder(result.table)


class Harness:
    def __init__(self, holder: TableHolder) -> None:
        self.holder = holder
        self.chains = FilterChains()
        self.mounts: list[tuple[str, Any]] = []
        self.http = httpx.AsyncClient(timeout=10, follow_redirects=False, trust_env=False)

    def mount(self, prefix: str, app: Any) -> None:
        self.mounts.append((prefix, app))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            del message
            await send({"type": "lifespan.shutdown.complete"})
            return
        for prefix, app in self.mounts:
            if scope["path"].startswith(prefix):
                await app(scope, receive, send)
                return
        headers = [(name, value) for name, value in scope["headers"]]
        host_header = next((v for k, v in headers if k == b"host"), b"").decode("latin-1")
        route = self.holder.table.match(host_header, scope["path"])
        if route is None:
            await self._reply(send, 404, [], b"404 not found\n")
            return
        query = scope.get("query_string", b"").decode("latin-1")
        target = scope["raw_path"].decode("latin-1") + (f"?{query}" if query else "")
        view = RequestView(
            method=scope["method"], target=target, path=scope["path"], query=query,
            host=normalize_host(host_header), scheme=scope["scheme"],
            client=scope["client"][0], headers=list(headers), route=route,
        )
        chain = self.chains.chain_for(route.policy)
        reply = await chain.on_request(view)
        if reply is not None:
            await self._reply(send, reply.status, reply.headers, reply.body)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        endpoint = route.backend.endpoints[0]
        forwarded = [(k, v) for k, v in view.headers if k.lower() not in HOP_BY_HOP]
        forwarded.append((b"host", host_header.encode()))
        upstream = await self.http.request(
            view.method, f"http://{endpoint}{view.target}", headers=forwarded, content=body
        )
        response_headers = [(k, v) for k, v in upstream.headers.raw if k.lower() not in HOP_BY_HOP]
        chain.on_response(view, upstream.status_code, response_headers)
        await self._reply(send, upstream.status_code, response_headers, upstream.content)

    async def _reply(self, send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifests", required=True)
    parser.add_argument("--port", type=int, required=True)
    add_oidc_arguments(parser)
    args = parser.parse_args()
    harness = Harness(load_table(Path(args.manifests)))
    await start_auth(args, harness, harness.holder)
    assert RUNTIME.oidc is not None
    config = uvicorn.Config(harness, host="127.0.0.1", port=args.port, log_level="warning",
                            proxy_headers=False)
    try:
        await uvicorn.Server(config).serve()
    finally:
        await stop_auth()


if __name__ == "__main__":
    asyncio.run(main())
