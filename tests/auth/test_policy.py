"""Parsing auth annotations into policies, safe redirects, cookies and htpasswd edge cases."""

from __future__ import annotations

import base64

import pytest

from pyingress.auth.cookies import CHUNK_SIZE, CookieJar, Sealer, joined, parse_cookies
from pyingress.auth.htpasswd import HtpasswdError, apr1_crypt, parse_htpasswd, verify
from pyingress.auth.policy import AuthPolicy, BasicAuth, OIDCClient, parse_auth
from pyingress.auth.redirects import safe_redirect
from pyingress.model import ObjectRef, Snapshot
from pyingress.routing.annotations import AnnotationError, Annotations
from pyingress.routing.compiler import compile_routes
from pyingress.routing.policy import PolicyContext
from tests.auth.conftest import secret
from tests.support.manifests import ingress, ingress_class, path, rule

INGRESS = ObjectRef("Ingress", "apps", "grafana")


def parse(annotations: dict[str, str], *objects: dict[str, object]) -> tuple[AuthPolicy | None, list[str]]:
    problems: list = []
    context = PolicyContext(INGRESS, Snapshot.of(objects), problems)
    policy = parse_auth(Annotations(annotations), context)
    return policy, [f"{p.reason}: {p.message}" for p in problems]


def test_no_auth_annotations_means_no_policy() -> None:
    assert parse({"pyingress.io/proxy-body-size": "1m"}) == (None, [])


def test_basic_auth_file_and_secret_stays_out_of_repr() -> None:
    users = b"ann:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n"
    policy, problems = parse({"nginx.ingress.kubernetes.io/auth-type": "basic",
                              "nginx.ingress.kubernetes.io/auth-secret": "users"},
                             secret("users", {"auth": users}, namespace="apps"))
    assert problems == []
    assert policy is not None and policy.basic is not None
    assert policy.basic.users == (("ann", "{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M="),)
    assert policy.basic.realm == "Authentication Required"
    assert "qUqP5" not in repr(policy)
    hash(policy)  # usable as a FilterChains key


def test_secret_in_other_namespace_and_missing_key() -> None:
    policy, problems = parse({"pyingress.io/auth-type": "basic",
                              "pyingress.io/auth-secret": "shared/users"},
                             secret("users", {"htpasswd": b"x:y"}, namespace="shared"))
    assert policy is not None and policy.basic is not None
    assert policy.basic.secret == ObjectRef("Secret", "shared", "users")
    assert policy.basic.users == ()  # fails closed
    assert problems and problems[0].startswith("AuthSecretInvalid") and '"auth"' in problems[0]


@pytest.mark.parametrize("annotations", [
    {"pyingress.io/auth-type": "digest", "pyingress.io/auth-secret": "s"},
    {"pyingress.io/auth-type": "basic"},
    {"pyingress.io/auth-type": "basic", "pyingress.io/auth-secret": "s",
     "pyingress.io/auth-secret-type": "auth-json"},
    {"pyingress.io/auth-type": "basic", "pyingress.io/auth-secret": "s",
     "pyingress.io/auth-realm": 'x" injected="y'},
    {"pyingress.io/auth-url": "ftp://auth/"},
    {"pyingress.io/auth-url": "http://auth/", "pyingress.io/auth-method": "TRACE"},
    {"pyingress.io/auth-url": "http://auth/", "pyingress.io/auth-response-headers": "X-Ok, Bad Header"},
    {"pyingress.io/auth-oidc": "maybe"},
    {"pyingress.io/auth-oidc": "true", "pyingress.io/satisfy": "some"},
    {"pyingress.io/whitelist-source-range": "10.0.0.0/33"},
    {"pyingress.io/auth-oidc": "true", "pyingress.io/auth-skip-paths": "health"},
])
def test_bad_values_raise(annotations: dict[str, str]) -> None:
    with pytest.raises(AnnotationError):
        parse(annotations)


def test_oidc_rules_and_secret_override() -> None:
    data = {"issuer": b"https://sso.example", "client-id": b"grafana", "client-secret": b"s3cr3t"}
    policy, problems = parse({
        "pyingress.io/auth-oidc": "true",
        "pyingress.io/oidc-secret": "grafana-oidc",
        "pyingress.io/auth-allowed-emails": "Ann@Home.example, bob@home.example",
        "pyingress.io/auth-allowed-email-domains": "@family.example",
        "pyingress.io/auth-allowed-groups": "admins",
    }, secret("grafana-oidc", data, namespace="apps"))
    assert problems == []
    assert policy is not None and policy.oidc is not None
    oidc = policy.oidc
    assert oidc.client == OIDCClient("https://sso.example", "grafana", "s3cr3t")
    assert "s3cr3t" not in repr(policy)
    assert oidc.allows("ann@home.example", ())
    assert oidc.allows("kid@family.example", ())
    assert oidc.allows("eve@evil.example", ("admins",))
    assert not oidc.allows("eve@evil.example", ("users",))
    assert not oidc.allows("eve@family.example.evil", ())


def test_missing_oidc_secret_fails_closed() -> None:
    policy, problems = parse({"pyingress.io/auth-oidc": "true", "pyingress.io/oidc-secret": "gone"})
    assert policy is not None and policy.oidc is not None and policy.oidc.unavailable
    assert problems[0].startswith("AuthSecretNotFound")


def test_allow_list_alone_and_satisfy() -> None:
    policy, _ = parse({"nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/8, 192.168.1.5"})
    assert policy is not None and not policy.authenticates and len(policy.allow) == 2
    policy, _ = parse({"pyingress.io/allowlist-source-range": "10.0.0.0/8",
                       "pyingress.io/satisfy": "any", "pyingress.io/auth-oidc": "true"})
    assert policy is not None and policy.satisfy == "any"


def test_compiler_carries_the_policy_and_reports_problems() -> None:
    objects = [ingress_class(),
               ingress("app", [rule("app.test", path("/", "svc"))],
                       annotations={"pyingress.io/auth-type": "basic",
                                    "pyingress.io/auth-secret": "missing"})]
    result = compile_routes(Snapshot.of(objects))
    routes = list(result.table.routes())
    assert routes and isinstance(routes[0].policy.auth, AuthPolicy)
    assert isinstance(routes[0].policy.auth.basic, BasicAuth)
    assert any(problem.reason == "AuthSecretNotFound" for problem in result.problems)


def test_htpasswd_parsing() -> None:
    assert parse_htpasswd("# comment\n\nann:{PLAIN}a\nann:{PLAIN}b\nbob:x:extra\n") == (
        ("ann", "{PLAIN}a"), ("bob", "x"))
    with pytest.raises(HtpasswdError, match="line 2"):
        parse_htpasswd("ann:x\nno-colon-here\n")


def test_apr1_matches_known_vector() -> None:
    # openssl passwd -apr1 -salt saltsalt password
    stored = "$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/"
    assert apr1_crypt(b"password", stored) == stored
    assert verify(b"password", stored) and not verify(b"passwore", stored)


def test_verify_never_raises_on_garbage() -> None:
    for stored in ("{SSHA}!!!", "{SSHA}" + base64.b64encode(b"short").decode(), "$2y$", "", "*"):
        assert verify(b"anything", stored) is False


# -- redirects ------------------------------------------------------------------------------

def table():  # type: ignore[no-untyped-def]
    objects = [ingress_class(),
               ingress("a", [rule("a.homelab.test", path("/", "s")),
                             rule("*.apps.homelab.test", path("/", "s"))])]
    return compile_routes(Snapshot.of(objects)).table


@pytest.mark.parametrize("target", [
    "/", "/grafana/d/abc?x=1", "http://a.homelab.test/", "https://a.homelab.test:8443/x",
    "https://grafana.apps.homelab.test/d/1"])
def test_safe_redirects(target: str) -> None:
    assert safe_redirect(target, table()) == target


@pytest.mark.parametrize("target", [
    None, "", "//evil.example", "///evil.example", "/\\evil.example", "\\\\evil.example",
    "https://evil.example/", "https://a.homelab.test@evil.example/",
    "https://evil.example\\@a.homelab.test", "https://evil.example#@a.homelab.test",
    "javascript:alert(1)", "data:text/html,x", "https:/a.homelab.test", "http://a.homelab.test\n.evil",
    "https://x.y.apps.homelab.test/", "https://apps.homelab.test/", "http://a.homelab.test:99999/",
    "ftp://a.homelab.test/"])
def test_unsafe_redirects(target: str | None) -> None:
    assert safe_redirect(target, table()) is None


# -- cookies --------------------------------------------------------------------------------

def test_sealed_cookie_is_bound_to_its_purpose_and_key() -> None:
    sealer = Sealer(b"k" * 32)
    value = sealer.seal("session", {"u": "ann"}, 60)
    assert sealer.open("session", value) == {"u": "ann", "_exp": sealer.open("session", value)["_exp"]}  # type: ignore[index]
    assert sealer.open("state", value) is None
    assert Sealer(b"j" * 32).open("session", value) is None
    assert sealer.open("session", sealer.seal("session", {"u": "ann"}, -1)) is None
    with pytest.raises(ValueError):
        Sealer(b"short")


def test_large_session_is_split_and_joined() -> None:
    jar = CookieJar(".homelab.test")
    value = "v" * (CHUNK_SIZE * 2 + 10)
    headers = jar.set_split("_pyingress_oauth", value, "a.homelab.test:8080", True, 60,
                            ["_pyingress_oauth"])
    names = [h.split(b"=", 1)[0].decode() for h in headers]
    assert names[:3] == ["_pyingress_oauth_0", "_pyingress_oauth_1", "_pyingress_oauth_2"]
    assert all(b"Domain=homelab.test" in h and b"Secure" in h for h in headers[:3])
    assert b"Max-Age=0" in headers[3]  # the old unsplit cookie is expired
    cookies = parse_cookies("; ".join(h.split(b";", 1)[0].decode() for h in headers[:3]).encode())
    assert joined(cookies, "_pyingress_oauth") == value
    assert b"Domain" not in jar.set("x", "y", "elsewhere.example", False, 60)
