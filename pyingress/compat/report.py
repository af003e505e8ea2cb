"""The migration report: every annotation of every Ingress, with pyingress's verdict.

``pyingress check`` prints it after the problems and fails when any annotation would change
behaviour after moving from ingress-nginx (see :attr:`Entry.blocking`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pyingress.compat.catalogue import Entry, Verdict, lookup
from pyingress.model import ObjectRef, Snapshot, ref_of
from pyingress.routing.annotations import NATIVE_PREFIX, NGINX_PREFIX


@dataclass(frozen=True, slots=True)
class Finding:
    """One annotation on one Ingress and its verdict."""

    ingress: ObjectRef
    key: str
    value: str
    entry: Entry

    @property
    def verdict(self) -> Verdict:
        return self.entry.verdict

    @property
    def blocking(self) -> bool:
        return self.entry.blocking

    def __str__(self) -> str:
        note = f" ({self.entry.note})" if self.entry.note else ""
        mark = "!" if self.blocking else " "
        return f"  {mark} {self.key}: {self.verdict.value}{note}"


_ValueRule = tuple[Callable[[str], bool], str]

VALUE_RULES: dict[str, _ValueRule] = {
    "auth-type": (lambda value: value.lower() == "digest", "digest auth is not supported"),
    "backend-protocol": (
        lambda value: value.upper() not in ("HTTP", "HTTPS"),
        "only HTTP and HTTPS backends are supported",
    ),
    "proxy-next-upstream": (
        lambda value: set(value.split()) - {"error", "timeout"} != set(),
        "only 'error timeout' (before any byte was sent) is retried",
    ),
    "affinity": (lambda value: value != "cookie", "only cookie affinity is supported"),
    "load-balance": (
        lambda value: value not in ("round_robin", "ewma"),
        "only round_robin and ewma are supported",
    ),
}
"""Annotations that are supported only for some values."""


def finding_for(ingress: ObjectRef, key: str, name: str, value: str) -> Finding:
    entry = lookup(name)
    rule = VALUE_RULES.get(name)
    if rule is not None and entry.verdict is not Verdict.UNSUPPORTED and rule[0](value):
        entry = Entry(name, Verdict.UNSUPPORTED, f"{value!r}: {rule[1]}")
    return Finding(ingress, key, value, entry)


def migration_report(snapshot: Snapshot) -> list[Finding]:
    """Findings for every annotation under either prefix of every Ingress, in order."""
    findings: list[Finding] = []
    for ingress in snapshot.of_kind("Ingress"):
        ref = ref_of(ingress, "Ingress")
        annotations = (ingress.get("metadata") or {}).get("annotations") or {}
        for key in sorted(annotations):
            for prefix in (NATIVE_PREFIX, NGINX_PREFIX):
                if key.startswith(prefix):
                    name = key[len(prefix) :]
                    findings.append(finding_for(ref, key, name, str(annotations[key]).strip()))
    return findings


def format_report(findings: Iterable[Finding]) -> list[str]:
    """The report as lines: one heading per Ingress, one line per annotation."""
    lines: list[str] = []
    current: ObjectRef | None = None
    for finding in findings:
        if finding.ingress != current:
            current = finding.ingress
            lines.append(f"{current}:")
        lines.append(str(finding))
    return lines


def summary(findings: list[Finding]) -> str:
    counts = {verdict: 0 for verdict in Verdict}
    for finding in findings:
        counts[finding.verdict] += 1
    blocking = sum(1 for finding in findings if finding.blocking)
    parts = [f"{count} {verdict.value}" for verdict, count in counts.items() if count]
    verdict = (
        f"{blocking} would change behaviour (marked !)"
        if blocking
        else "nothing would change behaviour"
    )
    return f"migration report: {len(findings)} annotations: {', '.join(parts)}; {verdict}"


def print_report(snapshot: Snapshot, write: Callable[[str], None] = print) -> bool:
    """Print the report for ``snapshot``; True when something would change behaviour."""
    findings = migration_report(snapshot)
    if not findings:
        return False
    for line in format_report(findings):
        write(line)
    write(summary(findings))
    return any(finding.blocking for finding in findings)
