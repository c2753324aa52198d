import ipaddress
import json

import pytest

from reranker.control.policy import Rule, TrafficPolicy, validate
from reranker.errors import InputError

READY = {"mini-v1", "mini-v2", "mini-v3"}
EXAMPLE = {
    "weights": {"mini-v1": 50, "mini-v2": 50},
    "sticky": True,
    "rules": [{"region": "eu", "version": "mini-v2"}, {"cidr": "10.0.0.0/8", "version": "mini-v1"}],
    "shadow": None,
}


def test_round_trip_through_json():
    policy = TrafficPolicy.from_dict(EXAMPLE)
    assert policy.to_dict() == EXAMPLE
    assert TrafficPolicy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy
    assert policy.rules[1].cidr == ipaddress.ip_network("10.0.0.0/8")


def test_shadow_round_trip_and_routed_versions():
    policy = TrafficPolicy.from_dict({"weights": {"mini-v1": 100, "mini-v2": 0}, "shadow": {"version": "mini-v3"}})
    assert policy.shadow == "mini-v3"
    assert policy.to_dict()["shadow"] == {"version": "mini-v3"}
    assert policy.routed_versions() == {"mini-v1", "mini-v3"}
    assert policy.referenced_versions() == {"mini-v1", "mini-v2", "mini-v3"}


def test_validate_accepts_a_mapping_and_returns_the_policy():
    assert validate(EXAMPLE, READY) == TrafficPolicy.from_dict(EXAMPLE)


def test_fractional_weights_within_tolerance():
    policy = validate({"weights": {"mini-v1": 33.3333333, "mini-v2": 33.3333333, "mini-v3": 33.3333334}}, READY)
    assert policy.weight_of("mini-v3") == pytest.approx(33.3333334)


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ({"weights": {"mini-v1": 50, "mini-v2": 40}}, "sum to 100, got 90"),
        ({"weights": {}}, "at least one version"),
        ({"weights": {"mini-v1": -10, "mini-v2": 110}}, "weights['mini-v1'] must be >= 0, got -10"),
        ({"weights": {"mini-v1": "50", "mini-v2": 50}}, "weights['mini-v1'] must be a number, got '50'"),
        ({"weights": {"mini-v1": True}}, "must be a number, got True"),
        ({"weights": {"mini-v1": float("nan")}}, "must be a number, got nan"),
        ({"weights": [["mini-v1", 100]]}, "weights must be an object"),
        ({"weights": {"": 100}}, "weights key must be a non-empty string, got ''"),
        ({"weights": {"mini-v1": 100}, "sticky": "yes"}, "sticky must be true or false, got 'yes'"),
        ({"weights": {"mini-v1": 100}, "colour": 1}, "unknown keys ['colour']"),
        ({"weights": {"mini-v1": 100}, "rules": {"region": "eu"}}, "rules must be a list"),
        ({"weights": {"mini-v1": 100}, "rules": [{"version": "mini-v1"}]}, "needs a 'region' or a 'cidr'"),
        ({"weights": {"mini-v1": 100}, "rules": ["eu"]}, "rules[0] must be an object, got 'eu'"),
        ({"weights": {"mini-v1": 100}, "rules": [{"region": "eu", "version": "mini-v1"}, {"cidr": "10.0.0.300/8",
          "version": "mini-v1"}]}, "rules[1]: rules[].cidr must be a network such as '10.0.0.0/8', got '10.0.0.300/8'"),
        ({"weights": {"mini-v1": 100}, "rules": [{"region": "eu", "version": "mini-v1", "os": "x"}]}, "unknown keys"),
        ({"weights": {"mini-v1": 100}, "rules": [{"region": 3, "version": "mini-v1"}]}, "region must be a non-empty"),
        ({"weights": {"mini-v1": 100}, "shadow": "mini-v2"}, "shadow must be null or"),
        ({"weights": {"mini-v1": 100}, "shadow": {"version": "mini-v2", "share": 5}}, "shadow must be null or"),
        ({"weights": {"mini-v1": 100}, "shadow": {"version": ""}}, "shadow.version must be a non-empty string"),
        ({"weights": {"mini-v9": 100}}, "weights names 'mini-v9', which is not a ready version"),
        ({"weights": {"mini-v1": 100}, "rules": [{"region": "eu", "version": "mini-v9"}]},
         "rules[0].version 'mini-v9' is not a ready version"),
        ({"weights": {"mini-v1": 100}, "shadow": {"version": "mini-v9"}}, "shadow.version 'mini-v9' is not a ready"),
        ("not a policy", "traffic policy must be an object"),
    ],
)
def test_bad_policies_are_refused_with_the_field_and_value(raw, fragment):
    with pytest.raises(InputError) as err:
        validate(raw, READY)
    assert fragment in str(err.value)


def test_zero_weight_version_must_still_be_ready():
    with pytest.raises(InputError, match="mini-v9"):
        validate({"weights": {"mini-v1": 100, "mini-v9": 0}}, READY)


def test_single_and_canary_helpers():
    assert TrafficPolicy.single("mini-v1").to_dict()["weights"] == {"mini-v1": 100}
    canary = TrafficPolicy.canary("mini-v1", "mini-v2", 5)
    assert canary.sticky is True
    assert canary.weight_of("mini-v2") == 5 and canary.weight_of("mini-v1") == 95
    assert TrafficPolicy.canary("mini-v1", "mini-v2", 12.5, sticky=False).sticky is False
    assert TrafficPolicy.canary("mini-v1", "mini-v2", 100).routed_versions() == {"mini-v2"}


@pytest.mark.parametrize("share", [-1, 100.5, True, "5"])
def test_canary_refuses_bad_share(share):
    with pytest.raises(InputError, match="canary share"):
        TrafficPolicy.canary("mini-v1", "mini-v2", share)


def test_canary_refuses_same_version():
    with pytest.raises(InputError, match="must differ"):
        TrafficPolicy.canary("mini-v1", "mini-v1", 5)


def test_rule_matching():
    rule = Rule(version="mini-v2", region="EU", cidr="192.168.0.0/16")
    assert rule.matches("eu", ipaddress.ip_address("192.168.1.4"))
    assert not rule.matches("eu", ipaddress.ip_address("10.1.1.1"))
    assert not rule.matches("us", ipaddress.ip_address("192.168.1.4"))
    assert not rule.matches(None, None)
    assert not Rule(version="mini-v2", cidr="10.0.0.0/8").matches(None, ipaddress.ip_address("::1"))


def test_policy_is_immutable_and_hashable():
    policy = TrafficPolicy.from_dict(EXAMPLE)
    with pytest.raises(AttributeError):
        policy.sticky = False  # type: ignore[misc]
    assert hash(policy) == hash(TrafficPolicy.from_dict(EXAMPLE))
