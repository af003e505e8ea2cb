"""The migration report over realistic ingress-nginx manifests: a verdict per annotation."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pyingress.compat.catalogue import CATALOGUE, Verdict, lookup
from pyingress.compat.report import migration_report
from pyingress.sources.files import load_folder

FIXTURES = Path(__file__).parent / "fixtures"
P = "nginx.ingress.kubernetes.io/"

EXPECTED = {
    "monitoring/grafana": {
        "proxy-body-size": Verdict.SUPPORTED,
        "proxy-read-timeout": Verdict.SUPPORTED,
        "affinity": Verdict.SUPPORTED,
        "session-cookie-name": Verdict.SUPPORTED,
        "configuration-snippet": Verdict.REFUSED,
    },
    "monitoring/prometheus": {
        "auth-type": Verdict.DIFFERENT,
        "auth-secret": Verdict.SUPPORTED,
        "auth-realm": Verdict.SUPPORTED,
        "whitelist-source-range": Verdict.SUPPORTED,
        "ssl-redirect": Verdict.SUPPORTED,
        "enable-opentelemetry": Verdict.UNSUPPORTED,
    },
    "argocd/argocd-server": {
        "ssl-passthrough": Verdict.DIFFERENT,
        "force-ssl-redirect": Verdict.SUPPORTED,
        "backend-protocol": Verdict.DIFFERENT,
    },
    "argocd/argocd-server-grpc": {"backend-protocol": Verdict.UNSUPPORTED},
    "shop/shop-api": {
        "use-regex": Verdict.DIFFERENT,
        "rewrite-target": Verdict.DIFFERENT,
        "x-forwarded-prefix": Verdict.SUPPORTED,
        "limit-rps": Verdict.DIFFERENT,
        "limit-burst-multiplier": Verdict.SUPPORTED,
        "limit-whitelist": Verdict.SUPPORTED,
        "enable-cors": Verdict.SUPPORTED,
        "cors-allow-origin": Verdict.SUPPORTED,
        "proxy-next-upstream-tries": Verdict.SUPPORTED,
        "mirror-target": Verdict.UNSUPPORTED,
    },
    "shop/shop-web": {
        "from-to-www-redirect": Verdict.DIFFERENT,
        "app-root": Verdict.SUPPORTED,
        "custom-headers": Verdict.DIFFERENT,
    },
    "shop/shop-web-canary": {
        "canary": Verdict.SUPPORTED,
        "canary-by-header": Verdict.SUPPORTED,
        "canary-weight": Verdict.SUPPORTED,
    },
}
BLOCKING = {
    ("monitoring/grafana", "configuration-snippet"),
    ("monitoring/prometheus", "enable-opentelemetry"),
    ("argocd/argocd-server-grpc", "backend-protocol"),
    ("shop/shop-api", "mirror-target"),
}


def test_every_fixture_annotation_gets_the_expected_verdict() -> None:
    store, problems = load_folder(str(FIXTURES))
    assert not problems
    findings = migration_report(store.snapshot())
    seen: dict[str, dict[str, Verdict]] = {}
    for finding in findings:
        assert finding.key.startswith(P)
        seen.setdefault(finding.ingress.namespaced_name, {})[finding.key[len(P):]] = finding.verdict
    assert seen == EXPECTED
    blocking = {(f.ingress.namespaced_name, f.key[len(P):]) for f in findings if f.blocking}
    assert blocking == BLOCKING


def test_check_prints_the_report_and_fails_on_behaviour_changes(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pyingress", "check", "--manifests", str(FIXTURES),
         "--ingress-class", "nginx"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "Ingress shop/shop-api:" in out
    assert f"! {P}mirror-target: unsupported" in out
    assert f"  {P}canary-weight: supported" in out
    assert "4 would change behaviour" in out
    assert "SnippetRefused" in out


def test_check_passes_when_every_annotation_is_supported(tmp_path: Path) -> None:
    (tmp_path / "shop.yaml").write_text(
        (FIXTURES / "grafana.yaml").read_text().replace(
            '    nginx.ingress.kubernetes.io/configuration-snippet: |\n'
            '      more_set_headers "X-Frame-Options: SAMEORIGIN";\n', ""
        ).replace("  ingressClassName: nginx\n", "")
    )
    result = subprocess.run(
        [sys.executable, "-m", "pyingress", "check", "--manifests", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert "nothing would change behaviour" in result.stdout, result.stdout
    assert "configuration-snippet" not in result.stdout


@pytest.mark.parametrize(
    ("name", "value", "verdict"),
    [
        ("auth-type", "digest", Verdict.UNSUPPORTED),
        ("auth-type", "basic", Verdict.DIFFERENT),
        ("proxy-next-upstream", "error timeout http_502", Verdict.UNSUPPORTED),
        ("proxy-next-upstream", "error timeout", Verdict.DIFFERENT),
        ("made-up-annotation", "1", Verdict.UNKNOWN),
        ("location-snippet", "x", Verdict.REFUSED),
    ],
)
def test_value_dependent_and_unknown_verdicts(name: str, value: str, verdict: Verdict) -> None:
    from pyingress.compat.report import finding_for
    from pyingress.model import ObjectRef

    finding = finding_for(ObjectRef("Ingress", "a", "b"), P + name, name, value)
    assert finding.verdict is verdict


def test_every_annotation_the_parsers_read_is_catalogued() -> None:
    root = Path(__file__).parents[2] / "pyingress"
    sources = [root / "traffic" / "policy.py", *sorted((root / "auth").glob("*.py"))]
    read = set()
    for source in sources:
        text = source.read_text()
        read |= set(re.findall(r'annotations\.\w+\(\s*"([a-z0-9-]+)"', text))
        read |= set(re.findall(r'\(annotations,\s*"([a-z0-9-]+)"', text))
        read |= set(re.findall(r'\(\s*"([a-z0-9-]+)",\s*\d+\)', text)) & set(CATALOGUE)
    pyingress_only = {name for name in read if lookup(name).verdict is Verdict.UNKNOWN}
    native = {"auth-oidc", "auth-allowed-emails", "auth-allowed-email-domains",
              "auth-allowed-groups", "auth-pass-access-token", "auth-skip-paths",
              "auth-forward-authorization", "oidc-secret"}
    assert "proxy-body-size" in read and "canary-weight" in read
    assert pyingress_only <= native, pyingress_only - native
