"""Routing: a pure function from (snapshot, user key, attributes, random draw) to a version.

Arms are laid out on [0, 1) in a fixed order: every non-primary arm, sorted by id, from the
low end, and the primary (stable) version last. A sticky user hashes to a fixed point u, so
while a candidate's share grows from 5% to 50% its interval [0, share) only widens and every
user already on the candidate stays there.
"""
from __future__ import annotations

import bisect
import hashlib
import ipaddress
import math
from dataclasses import dataclass, field
from typing import Literal

from reranker.control.policy import IPAddress, TrafficPolicy
from reranker.errors import InputError

RouteReason = Literal["rule", "sticky", "weighted", "default"]


@dataclass(frozen=True)
class RequestAttributes:
    region: str | None = None
    client_ip: str | None = None


@dataclass(frozen=True)
class Route:
    version: str
    shadow: str | None  # copy the request here too; answer with `version`
    reason: RouteReason


@dataclass(frozen=True)
class RoutingSnapshot:
    """One immutable routing state; a new one is published for every change of policy."""

    policy: TrafficPolicy
    primary: str  # the stable version
    generation: int
    arms: tuple[str, ...] = field(init=False, compare=False)
    bounds: tuple[float, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.primary, str) or not self.primary:
            raise InputError(f"primary must be a version id, got {self.primary!r}")
        arms = arm_order(self.policy, self.primary)
        total = sum(self.policy.weight_of(a) for a in arms)
        running, bounds = 0.0, []
        for arm in arms:
            running += self.policy.weight_of(arm)
            bounds.append(running / total)
        bounds[-1] = math.inf  # floating-point slack: the last arm takes the rest
        object.__setattr__(self, "arms", arms)
        object.__setattr__(self, "bounds", tuple(bounds))


def arm_order(policy: TrafficPolicy, primary: str) -> tuple[str, ...]:
    """Arms with traffic, in the fixed layout order: candidates (sorted) first, primary last."""
    live = [v for v, w in policy.weights if w > 0]
    return tuple(sorted(v for v in live if v != primary)) + tuple(v for v in live if v == primary)


def user_point(user_key: str) -> float:
    """A uniform point in [0, 1) derived from the user key; the same key always maps the same."""
    digest = hashlib.sha256(user_key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def route(snapshot: RoutingSnapshot, user_key: str | None, attributes: RequestAttributes, draw: float) -> Route:
    """Pick the version for one request. `draw` is a uniform random number in [0, 1)."""
    policy = snapshot.policy
    chosen = _match_rule(policy, attributes)
    reason: RouteReason = "rule"
    if chosen is None:
        if len(snapshot.arms) == 1:
            chosen, reason = snapshot.arms[0], "default"
        else:
            sticky = policy.sticky and bool(user_key)
            point = user_point(policy.salt + user_key) if sticky else draw  # type: ignore[operator]
            chosen = snapshot.arms[bisect.bisect_right(snapshot.bounds, point)]
            reason = "sticky" if sticky else "weighted"
    shadow = policy.shadow if policy.shadow != chosen else None
    return Route(version=chosen, shadow=shadow, reason=reason)


def _match_rule(policy: TrafficPolicy, attributes: RequestAttributes) -> str | None:
    """The version of the first matching rule, or None."""
    if not policy.rules:
        return None
    address = _parse_ip(attributes.client_ip) if any(r.cidr is not None for r in policy.rules) else None
    for rule in policy.rules:
        if rule.matches(attributes.region, address):
            return rule.version
    return None


def _parse_ip(raw: str | None) -> IPAddress | None:
    """A malformed client address matches no CIDR rule; it never fails the request."""
    if not raw:
        return None
    try:
        return ipaddress.ip_address(raw)
    except ValueError:
        return None
