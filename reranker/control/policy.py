"""A traffic policy: weights per version, sticky users, attribute rules, an optional shadow.

One JSON document, e.g.::

    {"weights": {"mini-v1": 50, "mini-v2": 50}, "sticky": true,
     "rules": [{"region": "eu", "version": "mini-v2"},
               {"cidr": "10.0.0.0/8", "version": "mini-v1"}],
     "shadow": {"version": "mini-v2"}}

Weights are percentages that sum to 100. Rules are tried in order; the first match wins.
A policy object is always well-formed; `validate` also checks it against the loaded versions.
"""
from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from reranker.errors import InputError

WEIGHT_TOLERANCE = 1e-6
MAX_RULES = 100  # the default of the max_policy_rules setting
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Rule:
    """Send matching requests to `version`. Every condition given must match."""

    version: str
    region: str | None = None
    cidr: IPNetwork | str | None = None  # a string is parsed into a network

    def __post_init__(self) -> None:
        _require_id("rules[].version", self.version)
        if self.region is None and self.cidr is None:
            raise InputError(f"rule for {self.version!r} needs a 'region' or a 'cidr'")
        if self.region is not None:
            _require_id("rules[].region", self.region)
        if self.cidr is not None and not isinstance(self.cidr, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            object.__setattr__(self, "cidr", _network(self.cidr))

    def matches(self, region: str | None, address: IPAddress | None) -> bool:
        if self.region is not None and (region is None or region.casefold() != self.region.casefold()):
            return False
        if self.cidr is not None and (address is None or address not in self.cidr):
            return False
        return True

    @classmethod
    def from_dict(cls, raw: object, index: int) -> "Rule":
        where = f"rules[{index}]"
        if not isinstance(raw, Mapping):
            raise InputError(f"{where} must be an object, got {raw!r}")
        unknown = set(raw) - {"region", "cidr", "version"}
        if unknown:
            raise InputError(f"{where} has unknown keys {sorted(unknown)!r}")
        try:
            return cls(raw.get("version"), raw.get("region"), raw.get("cidr"))  # type: ignore[arg-type]
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None

    def to_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.region is not None:
            out["region"] = self.region
        if self.cidr is not None:
            out["cidr"] = str(self.cidr)
        out["version"] = self.version
        return out


@dataclass(frozen=True)
class TrafficPolicy:
    """Who gets which version. `weights` keeps the declared order as (version, percent) pairs."""

    weights: tuple[tuple[str, float], ...]
    sticky: bool = True
    rules: tuple[Rule, ...] = ()
    shadow: str | None = None
    salt: str = ""  # mixed into the sticky hash: another salt puts other users on the low arms
    _index: Mapping[str, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.weights:
            raise InputError("weights must name at least one version, got {}")
        seen: dict[str, float] = {}
        for version, weight in self.weights:
            _require_id("weights key", version)
            if version in seen:
                raise InputError(f"weights names {version!r} twice")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise InputError(f"weights[{version!r}] must be a number, got {weight!r}")
            if weight < 0:
                raise InputError(f"weights[{version!r}] must be >= 0, got {weight!r}")
            seen[version] = float(weight)
        total = sum(seen.values())
        if abs(total - 100.0) > WEIGHT_TOLERANCE:
            raise InputError(f"weights must sum to 100, got {total!r}")
        if not isinstance(self.sticky, bool):
            raise InputError(f"sticky must be true or false, got {self.sticky!r}")
        if self.shadow is not None:
            _require_id("shadow.version", self.shadow)
        if not isinstance(self.salt, str):
            raise InputError(f"salt must be a string, got {self.salt!r}")
        object.__setattr__(self, "weights", tuple(seen.items()))
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "_index", seen)

    def weight_of(self, version: str) -> float:
        return self._index.get(version, 0.0)

    def routed_versions(self) -> frozenset[str]:
        """Versions this policy can send a request (or a shadow copy) to."""
        routed = {v for v, w in self.weights if w > 0} | {r.version for r in self.rules}
        if self.shadow is not None:
            routed.add(self.shadow)
        return frozenset(routed)

    def referenced_versions(self) -> frozenset[str]:
        return self.routed_versions() | frozenset(v for v, _ in self.weights)

    @classmethod
    def single(cls, version: str) -> "TrafficPolicy":
        return cls(weights=((version, 100.0),))

    @classmethod
    def canary(cls, stable: str, candidate: str, share: float, sticky: bool = True) -> "TrafficPolicy":
        """Two arms: `share` percent (0..100) to the candidate, the rest to the stable version."""
        if candidate == stable:
            raise InputError(f"canary candidate must differ from stable, got {candidate!r}")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 100:
            raise InputError(f"canary share must be a percent in [0, 100], got {share!r}")
        return cls(weights=((candidate, float(share)), (stable, 100.0 - share)), sticky=sticky)

    @classmethod
    def from_dict(cls, raw: object, max_rules: int | None = None) -> "TrafficPolicy":
        if not isinstance(raw, Mapping):
            raise InputError(f"traffic policy must be an object, got {raw!r}")
        unknown = set(raw) - {"weights", "sticky", "rules", "shadow", "salt"}
        if unknown:
            raise InputError(f"traffic policy has unknown keys {sorted(unknown)!r}")
        weights = raw.get("weights")
        if not isinstance(weights, Mapping):
            raise InputError(f"weights must be an object of version -> percent, got {weights!r}")
        rules = raw.get("rules") or []
        if not isinstance(rules, list):
            raise InputError(f"rules must be a list, got {rules!r}")
        if max_rules is not None and len(rules) > max_rules:
            raise InputError(f"rules has {len(rules)} entries; the limit is {max_rules} (setting max_policy_rules)")
        return cls(
            weights=tuple(weights.items()),
            sticky=raw.get("sticky", True),
            rules=tuple(Rule.from_dict(r, i) for i, r in enumerate(rules)),
            shadow=_shadow_from(raw.get("shadow")),
            salt=raw.get("salt", ""),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": {v: int(w) if w.is_integer() else w for v, w in self.weights},
            "sticky": self.sticky,
            "rules": [r.to_dict() for r in self.rules],
            "shadow": None if self.shadow is None else {"version": self.shadow},
            **({"salt": self.salt} if self.salt else {}),
        }


def validate(policy: TrafficPolicy | Mapping[str, Any], ready_versions: set[str] | frozenset[str],
             max_rules: int = MAX_RULES) -> TrafficPolicy:
    """Parse (if needed) and check every referenced version is loaded and ready; refuse whole."""
    parsed = policy if isinstance(policy, TrafficPolicy) else TrafficPolicy.from_dict(policy, max_rules)
    if len(parsed.rules) > max_rules:
        raise InputError(f"rules has {len(parsed.rules)} entries; the limit is {max_rules} (setting max_policy_rules)")
    for version, _ in parsed.weights:
        if version not in ready_versions:
            raise InputError(f"weights names {version!r}, which is not a ready version")
    for index, rule in enumerate(parsed.rules):
        if rule.version not in ready_versions:
            raise InputError(f"rules[{index}].version {rule.version!r} is not a ready version")
    if parsed.shadow is not None and parsed.shadow not in ready_versions:
        raise InputError(f"shadow.version {parsed.shadow!r} is not a ready version")
    return parsed


def _shadow_from(raw: object) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or set(raw) != {"version"}:
        raise InputError(f"shadow must be null or {{'version': ...}}, got {raw!r}")
    return raw["version"]


def _network(raw: object) -> IPNetwork:
    try:
        if isinstance(raw, str):
            return ipaddress.ip_network(raw, strict=False)
    except ValueError:
        pass
    raise InputError(f"rules[].cidr must be a network such as '10.0.0.0/8', got {raw!r}")


def _require_id(key: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{key} must be a non-empty string, got {value!r}")
