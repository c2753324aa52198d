"""The traffic-policy form as text fields <-> the policy JSON the service validates."""
from __future__ import annotations

import json
import re
from typing import Any, Mapping, Sequence

from reranker.errors import InputError
from reranker.service.views import TrafficView

NO_SHADOW = "none"
_PAIR = re.compile(r"^\s*([^:=\s]+)\s*[:=]\s*([^\s]+)\s*$")


def parse_weights(text: str | None) -> dict[str, float]:
    """'mini-v1: 50, mini-v2: 50' (commas or new lines; ':' or '=') -> {version: percent}."""
    weights: dict[str, float] = {}
    for part in re.split(r"[,\n]", text or ""):
        if not part.strip():
            continue
        match = _PAIR.match(part)
        if match is None:
            raise InputError(f"weights entry {part.strip()!r} is not 'version: percent'")
        version, raw = match.groups()
        try:
            weights[version] = float(raw)
        except ValueError:
            raise InputError(f"weights[{version!r}] must be a number, got {raw!r}") from None
    if not weights:
        raise InputError("weights is empty: write e.g. 'mini-v1: 50, mini-v2: 50'")
    return weights


def format_weights(weights: Mapping[str, float]) -> str:
    return ", ".join(f"{v}: {w:g}" for v, w in weights.items())


def even_split(versions: Sequence[str]) -> dict[str, float]:
    """Whole percentages that sum to 100, the first versions taking the remainder."""
    if not versions:
        raise InputError("no ready versions to split traffic between")
    base, extra = divmod(100, len(versions))
    return {v: float(base + (1 if i < extra else 0)) for i, v in enumerate(versions)}


def parse_rules(text: str | None) -> list[Any]:
    try:
        rules = json.loads(text or "[]")
    except ValueError as exc:
        raise InputError(f"rules must be a JSON list, got {text!r} ({exc.args[0]})") from None
    if not isinstance(rules, list):
        raise InputError(f"rules must be a JSON list, got {text!r}")
    return rules


def policy_from_form(weights: str | None, sticky: bool, rules: str | None, shadow: str | None) -> dict[str, Any]:
    return {
        "weights": parse_weights(weights),
        "sticky": bool(sticky),
        "rules": parse_rules(rules),
        "shadow": {"version": shadow} if shadow and shadow != NO_SHADOW else None,
    }


def form_from_policy(policy: TrafficView | None) -> tuple[str, bool, str, str]:
    """(weights text, sticky, rules JSON, shadow choice) for the form fields; blank without a policy."""
    if policy is None:
        return "", True, "[]", NO_SHADOW
    return (
        format_weights(policy.weights),
        policy.sticky,
        json.dumps([rule.model_dump(exclude_none=True) for rule in policy.rules]),
        policy.shadow.version if policy.shadow is not None else NO_SHADOW,
    )
