"""Flags shared by ``serve``, ``check`` and ``routes``, and the one place a source is chosen."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pyingress.cli import StartupError
from pyingress.model import Problem, Snapshot
from pyingress.routing.compiler import CompileOptions, CompileResult, compile_routes
from pyingress.sources.files import FileProblem, ManifestError, ManifestSource, load_folder
from pyingress.sources.store import ObjectStore

if TYPE_CHECKING:
    from pyingress.sources.cluster import ClusterSource


class Source(Protocol):
    """What ``serve`` needs from a source: load, report when synced, follow, stop."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--manifests", metavar="DIR", help="read objects from the YAML files in DIR (and reload)"
    )
    group.add_argument("--kubeconfig", metavar="PATH", help="watch the cluster named by PATH")
    group.add_argument(
        "--in-cluster", action="store_true", help="watch the cluster this pod runs in"
    )


def add_class_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = CompileOptions()
    parser.add_argument(
        "--ingress-class",
        default=defaults.ingress_class,
        metavar="NAME",
        help="serve Ingresses of this class (default: %(default)s)",
    )
    parser.add_argument(
        "--controller-name",
        default=defaults.controller_name,
        metavar="NAME",
        help="IngressClass spec.controller value that names this controller (default: %(default)s)",
    )
    parser.add_argument(
        "--watch-ingress-without-class",
        action="store_true",
        help="also serve Ingresses that name no class (always on with --manifests)",
    )
    parser.add_argument("--namespace", metavar="NS", help="only serve Ingresses of this namespace")


def compile_options(args: argparse.Namespace) -> CompileOptions:
    """In ``--manifests`` mode class-less Ingresses are served: the folder is all ours."""
    return CompileOptions(
        ingress_class=args.ingress_class,
        controller_name=args.controller_name,
        watch_ingress_without_class=bool(args.watch_ingress_without_class or args.manifests),
        namespace=args.namespace or None,
        ssl_passthrough=bool(getattr(args, "enable_ssl_passthrough", False)),
    )


def _require_manifests(args: argparse.Namespace) -> str:
    if args.kubeconfig or args.in_cluster:
        flag = "--kubeconfig" if args.kubeconfig else "--in-cluster"
        raise StartupError(f"{flag} is not available yet; use --manifests DIR")
    if not args.manifests:
        raise StartupError("no source: give --manifests DIR, --kubeconfig PATH or --in-cluster")
    return str(args.manifests)


def open_source(args: argparse.Namespace, store: ObjectStore) -> ManifestSource | ClusterSource:
    """The source the flags name, checked enough that a bad flag fails before serving.

    The cluster source (and with it the Kubernetes client) is imported only in cluster mode.
    """
    if args.kubeconfig or args.in_cluster:
        from pyingress.sources.cluster import ClusterSettings, ClusterSource

        try:
            settings = ClusterSettings.from_args(args, compile_options(args))
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        return ClusterSource(settings, store)
    source = ManifestSource(_require_manifests(args), store)
    try:
        source.check_folder()
    except ManifestError as exc:
        raise StartupError(f"--manifests: {exc.message}") from None
    return source


@dataclass(frozen=True, slots=True)
class Loaded:
    """The objects read once, their compiled table, and what was wrong with the files."""

    snapshot: Snapshot
    result: CompileResult
    file_problems: list[FileProblem]


def load_once(args: argparse.Namespace) -> Loaded:
    """Read the source once and compile it: what ``check`` and ``routes`` report on."""
    file_problems: list[FileProblem] = []
    if args.kubeconfig or args.in_cluster:
        from pyingress.sources.cluster import load_cluster

        try:
            store = load_cluster(args, compile_options(args))
        except ValueError as exc:
            raise StartupError(str(exc)) from None
    else:
        try:
            store, file_problems = load_folder(_require_manifests(args))
        except ManifestError as exc:
            raise StartupError(f"--manifests: {exc.message}") from None
    snapshot = store.snapshot()
    return Loaded(snapshot, compile_routes(snapshot, compile_options(args)), file_problems)


def all_problems(result: CompileResult, file_problems: list[FileProblem]) -> list[str]:
    """Every problem as one line: files first (by file and line), then objects."""
    ordered: list[Problem] = sorted(result.problems, key=lambda p: (p.ref, p.reason))
    return [str(p) for p in file_problems] + [str(p) for p in ordered]
