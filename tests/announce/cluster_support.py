"""The API-server double running inside the lab's switch namespace, reachable from every host
over the bridge, and a small JSON client that talks to it from that namespace."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.announce.netlab import Lab, Namespace
from tests.support.apiserver_fixtures import write_kubeconfig
from tests.support.net import wait_until
from tests.support.processes import ManagedProcess

JSON = dict[str, Any]
API_HOST = "10.0.0.1"
REPO = str(Path(__file__).resolve().parents[2])


class LabApi:
    def __init__(self, lab: Lab, tmp_path: Path) -> None:
        self.ns: Namespace = lab.switch
        lab.address_switch(API_HOST)
        port_file = tmp_path / "apiserver.port"
        self.process = ManagedProcess(
            self.ns.cmd([sys.executable, "-m", "tests.support.fake_apiserver", "--host", API_HOST,
                         "--port", "0", "--port-file", str(port_file)]),
            cwd=REPO,
        )  # fmt: skip
        wait_until(port_file.exists, what="the API double to listen")
        self.url = f"http://{API_HOST}:{int(port_file.read_text())}"
        self.kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", self.url)

    def call(self, method: str, path: str, body: Any = None,
             content_type: str = "application/json") -> JSON:  # fmt: skip
        def send() -> JSON:
            headers = {"Content-Type": content_type}
            content = None if body is None else httpx.Request("X", "/", json=body).content
            response = httpx.request(method, self.url + path, content=content, headers=headers,
                                     timeout=10)  # fmt: skip
            if response.status_code == 404 and method == "GET":
                return {}
            response.raise_for_status()
            return dict(response.json())

        return self.ns.run(send)

    def create_service(self, name: str, namespace: str = "default", **spec: Any) -> JSON:
        annotations = spec.pop("annotations", {})
        body = {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], **spec},
        }  # fmt: skip
        return self.call("POST", f"/api/v1/namespaces/{namespace}/services", body)

    def service_ips(self, name: str, namespace: str = "default") -> list[str]:
        svc = self.call("GET", f"/api/v1/namespaces/{namespace}/services/{name}")
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        return [str(entry.get("ip")) for entry in ingress]

    def lease_holder(self, ip: str) -> str:
        name = "pyingress-announce-" + ip.replace(".", "-")
        lease = self.call("GET", f"/apis/coordination.k8s.io/v1/namespaces/default/leases/{name}")
        return str((lease.get("spec") or {}).get("holderIdentity") or "")

    def events(self, namespace: str = "default") -> list[JSON]:
        return list(self.call("GET", f"/api/v1/namespaces/{namespace}/events").get("items") or [])

    def stop(self) -> None:
        self.process.stop(signal.SIGTERM)
