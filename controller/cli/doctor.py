"""`rollout doctor NAME`: are the series each gate of a rollout reads in Prometheus, with the labels the
gates need, and can a latency gate's limit pass on the buckets there? Asked before a ramp starts."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from controller.cli import common, console

if TYPE_CHECKING:
    from controller import contract

DEFAULT_WINDOW = "10m"  # contract.WINDOW, spelled out so that the parser imports nothing (tests/cli/test_help.py)


def add_parser(sub: Any) -> None:
    d = sub.add_parser(
        "doctor",
        help="check that Prometheus has the series and labels a rollout's gates read",
        epilog=common.example("rollout doctor support-bot --window 1h"),
    )
    d.add_argument("name", metavar="NAME", help="the rollout")
    d.add_argument("--repo", default=".", help="a path in a rollouts repository")
    d.add_argument("--window", default=DEFAULT_WINDOW, help="look for series over the last D")
    d.add_argument("--format", choices=("text", "json"), default="text", help="json: one object, stable keys")
    d.set_defaults(func=cmd_doctor)


@console.coloured
def cmd_doctor(args: argparse.Namespace, out: TextIO) -> int:
    """0 when every gate's series are there with their labels (and a latency limit can pass), else 1."""
    from controller import analysis, contract, prometheus

    window = _window(args.window)
    named = common.named_rollout(args, out)
    if named is None:
        return 1
    config, loaded = named.config, named.loaded
    if config.prometheus is None:
        raise common.UsageError("controller.yaml sets no prometheus.url")
    target = contract.target(loaded, config)
    metrics = prometheus.Prometheus.from_config(config.prometheus, env=os.environ)
    try:
        at = datetime.now(UTC)
        checks = analysis.check_contract([target], config=config, metrics=metrics, at=at, window=window)[loaded.name]
    finally:
        metrics.close()
    if args.format == "json":
        out.write(json.dumps(_json(target, checks, metrics.display, window), indent=2) + "\n")
    else:
        out.write(_text(target, checks, metrics.display, window))
    return 1 if any(c.status.problem for c in checks) else 0


def _window(value: str) -> timedelta:
    from controller import spec

    try:
        return spec.parse_duration(value)
    except ValueError as exc:
        raise common.UsageError(f"--window {value!r}: {exc}") from exc


def _text(t: contract.Target, checks: tuple[contract.GateCheck, ...], where: str, window: timedelta) -> str:
    from controller import contract, errors, spec

    lines = [
        f"doctor {t.rollout}: route {t.route}, {t.router_type} router, variants {', '.join(t.variants)}; "
        f"series of the last {spec.format_duration(window)} in Prometheus at {where}",
        "",
    ]
    for c in checks:
        lines.append(f"{c.status.value:<10} {c.gate}" + (f"  ({c.source} metrics)" if c.source else ""))
        for f in c.findings:
            lines.append(f"           {f.selector}: {f.detail}")
        if c.buckets is not None:
            lines.append(f"           {contract.layout(c.buckets)}")
        if c.resolution:
            lines.append(f"           {c.resolution}")
    bad = [c for c in checks if c.status.problem]
    lines += ["", f"{len(checks)} gate(s): {len(checks) - len(bad)} fine, {len(bad)} with a problem"]
    return "".join(errors.printable(line) + "\n" for line in lines)


def _json(t: contract.Target, checks: tuple[contract.GateCheck, ...], where: str, window: timedelta) -> dict[str, Any]:
    from controller import spec

    return {
        "rollout": t.rollout,
        "route": t.route,
        "router": t.router_type,
        "variants": list(t.variants),
        "prometheus": where,
        "window": spec.format_duration(window),
        "ok": not any(c.status.problem for c in checks),
        "gates": [contract_json(c) for c in checks],
    }


def contract_json(c: contract.GateCheck) -> dict[str, Any]:
    return {
        "gate": c.gate,
        "kind": c.kind,
        "source": c.source,
        "status": c.status.value,
        "series": [
            {"role": f.role, "selector": f.selector, "status": f.status.value, "detail": f.detail} for f in c.findings
        ],
        "buckets": list(c.buckets) if c.buckets is not None else None,
        "resolution": c.resolution or None,
    }
