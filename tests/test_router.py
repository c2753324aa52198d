import random
from collections import Counter

import pytest

from reranker.control.policy import TrafficPolicy
from reranker.control.router import RequestAttributes, Route, RoutingSnapshot, arm_order, route, user_point

NO_ATTRS = RequestAttributes()
KEYS = [f"user-{i}" for i in range(10_000)]


def snap(raw: dict, primary: str = "v1") -> RoutingSnapshot:
    return RoutingSnapshot(policy=TrafficPolicy.from_dict(raw), primary=primary, generation=1)


def test_same_key_always_same_arm():
    s = snap({"weights": {"v1": 50, "v2": 50}})
    for key in KEYS[:200]:
        first = route(s, key, NO_ATTRS, draw=0.0)
        assert first.reason == "sticky"
        for draw in (0.1, 0.5, 0.99):  # the draw is ignored for a sticky user
            assert route(s, key, NO_ATTRS, draw) == first


def test_user_point_is_uniform_and_stable():
    points = [user_point(k) for k in KEYS]
    assert all(0.0 <= p < 1.0 for p in points)
    assert user_point("alice") == user_point("alice") != user_point("bob")
    deciles = Counter(int(p * 10) for p in points)
    assert all(abs(n - 1000) < 120 for n in deciles.values())


@pytest.mark.parametrize(
    "weights",
    [{"v1": 50, "v2": 50}, {"v1": 95, "v2": 5}, {"v1": 5, "v2": 95}, {"v1": 50, "v2": 30, "v3": 20}],
)
def test_sticky_split_matches_weights(weights):
    s = snap({"weights": weights})
    counts = Counter(route(s, key, NO_ATTRS, 0.0).version for key in KEYS)
    for version, weight in weights.items():
        assert abs(counts[version] / len(KEYS) - weight / 100) < 0.01, (version, counts)


@pytest.mark.parametrize("weights", [{"v1": 50, "v2": 50}, {"v1": 95, "v2": 5}, {"v1": 50, "v2": 30, "v3": 20}])
def test_weighted_split_uses_the_injected_draw(weights):
    s = snap({"weights": weights, "sticky": False})
    rng = random.Random(7)
    routes = [route(s, "same-user", NO_ATTRS, rng.random()) for _ in KEYS]
    assert {r.reason for r in routes} == {"weighted"}
    counts = Counter(r.version for r in routes)
    for version, weight in weights.items():
        assert abs(counts[version] / len(KEYS) - weight / 100) < 0.01, (version, counts)


def test_without_user_key_the_draw_decides():
    s = snap({"weights": {"v1": 90, "v2": 10}})
    assert route(s, None, NO_ATTRS, 0.05) == Route("v2", None, "weighted")
    assert route(s, "", NO_ATTRS, 0.5) == Route("v1", None, "weighted")
    assert route(s, None, NO_ATTRS, 0.999999) == Route("v1", None, "weighted")


def test_candidate_takes_the_low_end_of_the_line():
    s = snap({"weights": {"v1": 80, "v2": 20}})  # declared order does not matter
    assert arm_order(s.policy, "v1") == ("v2", "v1")
    assert route(s, None, NO_ATTRS, 0.0).version == "v2"
    assert route(s, None, NO_ATTRS, 0.19).version == "v2"
    assert route(s, None, NO_ATTRS, 0.21).version == "v1"


@pytest.mark.parametrize("candidate", ["v2", "a0"])  # ids sorting before and after the stable one
def test_stickiness_is_monotone_as_the_candidate_share_grows(candidate):
    previous: set[str] = set()
    for share in (1, 5, 10, 20, 35, 50, 75, 100):
        s = RoutingSnapshot(TrafficPolicy.canary("v1", candidate, share), primary="v1", generation=share)
        on_candidate = {k for k in KEYS if route(s, k, NO_ATTRS, 0.0).version == candidate}
        assert previous <= on_candidate, f"users left the candidate when its share grew to {share}%"
        assert abs(len(on_candidate) / len(KEYS) - share / 100) < 0.01
        previous = on_candidate
    assert len(previous) == len(KEYS)


def test_single_arm_is_the_default_route():
    s = snap({"weights": {"v1": 100, "v2": 0}})
    assert route(s, "alice", NO_ATTRS, 0.99) == Route("v1", None, "default")


def test_rules_first_match_wins_then_default():
    s = snap({
        "weights": {"v1": 100},
        "rules": [
            {"region": "eu", "version": "v2"},
            {"cidr": "10.0.0.0/8", "version": "v3"},
            {"region": "eu", "cidr": "10.0.0.0/8", "version": "v1"},
        ],
    })
    assert route(s, "u", RequestAttributes(region="eu", client_ip="10.1.2.3"), 0.5) == Route("v2", None, "rule")
    assert route(s, "u", RequestAttributes(region="EU"), 0.5).version == "v2"
    assert route(s, "u", RequestAttributes(region="us", client_ip="10.1.2.3"), 0.5) == Route("v3", None, "rule")
    assert route(s, "u", RequestAttributes(region="us", client_ip="11.0.0.1"), 0.5) == Route("v1", None, "default")
    assert route(s, "u", RequestAttributes(client_ip="not-an-ip"), 0.5) == Route("v1", None, "default")
    assert route(s, "u", RequestAttributes(client_ip="::1"), 0.5).reason == "default"


def test_ipv6_cidr_rule():
    s = snap({"weights": {"v1": 100}, "rules": [{"cidr": "2001:db8::/32", "version": "v2"}]})
    assert route(s, None, RequestAttributes(client_ip="2001:db8::7"), 0.5).version == "v2"
    assert route(s, None, RequestAttributes(client_ip="10.0.0.1"), 0.5).version == "v1"


def test_shadow_is_returned_unless_it_answers_itself():
    s = snap({"weights": {"v1": 100}, "shadow": {"version": "v2"},
              "rules": [{"region": "eu", "version": "v2"}]})
    assert route(s, "alice", NO_ATTRS, 0.5) == Route("v1", "v2", "default")
    assert route(s, "alice", RequestAttributes(region="eu"), 0.5) == Route("v2", None, "rule")


def test_snapshot_is_immutable():
    s = snap({"weights": {"v1": 100}})
    with pytest.raises(AttributeError):
        s.generation = 2  # type: ignore[misc]


def test_a_salt_picks_other_users_but_keeps_them_sticky_within_the_salt() -> None:
    keys = [f"user-{i}" for i in range(2000)]

    def on_candidate(salt: str, share: float) -> set[str]:
        snap = RoutingSnapshot(TrafficPolicy(weights=(("b", share), ("a", 100 - share)), salt=salt), "a", 1)
        return {k for k in keys if route(snap, k, RequestAttributes(), 0.99).version == "b"}

    first, second = on_candidate("rollout-1", 5), on_candidate("rollout-2", 5)
    assert 60 <= len(first) <= 140 and 60 <= len(second) <= 140
    assert len(first & second) < 0.3 * len(first)  # another rollout, mostly other users
    assert first <= on_candidate("rollout-1", 50)  # within one salt, users stay as the share grows
    assert TrafficPolicy.from_dict({"weights": {"a": 100}, "salt": "x"}).to_dict()["salt"] == "x"
