"""MQTT ACL matching (iotistic.core.acl): topic matching, validation, filter containment, substitution, decisions.

Examples pin the MQTT 3.1.1 / 5.0 rules; property tests compare the fast containment check with a brute-force
one over every topic of a small alphabet, which is exact for filters over that alphabet (a fresh level value,
`z`, stands for whatever a `+` may take that no filter names).
"""

from __future__ import annotations

import itertools
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotistic.core.acl import (
    MAX_TOPIC_BYTES,
    Access,
    AccountAcl,
    AclRule,
    filter_covers,
    may_publish,
    may_receive,
    may_subscribe,
    split_shared_subscription,
    substitute,
    topic_matches_filter,
    validate_rule_topic,
    validate_subscription,
    validate_topic_filter,
    validate_topic_name,
)

DEVICE_RULES = [AclRule("iot/device/%u/#", "readwrite")]


# Topic matching ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("topic", "topic_filter", "expected"), [
    ("sport/tennis/player1", "sport/tennis/player1/#", True),
    ("sport/tennis/player1/ranking", "sport/tennis/player1/#", True),
    ("sport/tennis/player1/score/wimbledon", "sport/tennis/player1/#", True),
    ("sport", "sport/#", True),  # `#` matches the parent level too
    ("sport/", "sport/#", True),
    ("sports", "sport/#", False),
    ("sport/tennis", "sport/+", True),
    ("sport", "sport/+", False),
    ("sport/", "sport/+", True),  # `+` matches an empty level
    ("sport/tennis/player1", "sport/+", False),
    ("sport/tennis/player1", "sport/+/player1", True),
    ("/finance", "+/+", True),
    ("/finance", "/+", True),
    ("/finance", "+", False),
    ("a//b", "a/+/b", True),  # empty levels are levels
    ("a//b", "a/b", False),
    ("a/b", "a//b", False),
    ("a", "#", True),
    ("/", "#", True),
    ("/", "+/+", True),
    ("a/b", "+/#", True),
    ("a", "+/#", True),
    ("$SYS/broker/load", "#", False),  # wildcards at the first level skip `$` topics
    ("$SYS/broker/load", "+/broker/load", False),
    ("$SYS/broker/load", "+/#", False),
    ("$SYS/broker/load", "$SYS/#", True),
    ("$SYS/broker/load", "$SYS/+/load", True),
    ("a/$SYS", "a/+", True),  # only the first level is special
    ("a/$SYS", "a/#", True),
    ("iot/device/u1/sensor/t", "iot/device/u1/#", True),
    ("iot/device/u2/sensor/t", "iot/device/u1/#", False),
    ("iot/device/u1", "iot/device/u1/#", True),
    ("Iot/device/u1", "iot/device/u1/#", False),  # case-sensitive
    ("iot/device/u1/x", "iot/device/+/x", True),
    ("iot/device/u1/x/y", "iot/device/+/x", False),
])
def test_topic_matches_filter(topic: str, topic_filter: str, expected: bool) -> None:
    assert topic_matches_filter(topic, topic_filter) is expected


def test_topic_matches_filter_rejects_invalid_input() -> None:
    with pytest.raises(ValueError, match="wildcards"):
        topic_matches_filter("a/+", "#")
    with pytest.raises(ValueError, match="last level"):
        topic_matches_filter("a", "#/a")


# Validation -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("topic", ["a", "/", "a/b/c", "//", "$SYS/x", "a b/ü/€", "x" * MAX_TOPIC_BYTES, "%u/%c"])
def test_valid_topic_names(topic: str) -> None:
    validate_topic_name(topic)


@pytest.mark.parametrize(("topic", "message"), [
    ("", "must not be empty"),
    ("a/\x00", "NUL"),
    ("a/+", "wildcards"),
    ("a/#", "wildcards"),
    ("a+b", "wildcards"),
    ("x" * (MAX_TOPIC_BYTES + 1), "65535"),
    ("é" * 40_000, "80000 bytes"),  # the limit is in UTF-8 bytes, not characters
    ("a\ud800", "surrogate"),
])
def test_invalid_topic_names(topic: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_topic_name(topic)


@pytest.mark.parametrize("topic_filter", ["#", "+", "+/+", "a/#", "a/+/b", "/#", "+/#", "a//+", "$SYS/#", "/",
                                          "a/%u/#", "%c", "$share/g/a"])
def test_valid_topic_filters(topic_filter: str) -> None:
    validate_topic_filter(topic_filter)


@pytest.mark.parametrize(("topic_filter", "message"), [
    ("", "must not be empty"),
    ("a/#/b", "'#' must be the last level"),
    ("#/#", "'#' must be the last level"),
    ("a#", "'#' must occupy a whole level"),
    ("a/b#", "'#' must occupy a whole level"),
    ("a/#b", "'#' must occupy a whole level"),
    ("a+", "'\\+' must occupy a whole level"),
    ("a/+b/c", "'\\+' must occupy a whole level"),
    ("++", "'\\+' must occupy a whole level"),
    ("+#", "'#' must occupy a whole level"),
    ("a/\x00", "NUL"),
    ("a/" + "x" * MAX_TOPIC_BYTES, "at most 65535"),
])
def test_invalid_topic_filters(topic_filter: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_topic_filter(topic_filter)


def test_shared_subscriptions_are_split_and_checked() -> None:
    assert split_shared_subscription("$share/ingest/iot/device/+/sensor/#") == ("ingest", "iot/device/+/sensor/#")
    assert split_shared_subscription("iot/#") == (None, "iot/#")
    assert split_shared_subscription("$SHARE/g/x") == (None, "$SHARE/g/x")  # case-sensitive: a plain topic
    validate_subscription("$share/g/#")
    validate_subscription("$share/g//")
    for bad, message in [("$share/", "group name"), ("$share//a", "group name"), ("$share/g", "topic filter after"),
                         ("$share/g/", "topic filter after"), ("$share/+/a", "must not contain"),
                         ("$share/g#/a", "must not contain"), ("$share/g/a/#/b", "last level")]:
        with pytest.raises(ValueError, match=message):
            validate_subscription(bad)


@pytest.mark.parametrize("topic", ["iot/device/%u/#", "%u", "a/%c/%u/+", "100%/x", "a/%x", "$SYS/#"])
def test_valid_rule_topics(topic: str) -> None:
    validate_rule_topic(topic)


@pytest.mark.parametrize(("topic", "message"), [
    ("iot/device-%u/#", "%u must occupy a whole level"),
    ("iot/%uu", "%u must occupy a whole level"),
    ("iot/x%c", "%c must occupy a whole level"),
    ("$share/g/iot/#", "without the \\$share"),
    ("iot/#/x", "last level"),
    ("", "must not be empty"),
])
def test_invalid_rule_topics(topic: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_rule_topic(topic)


# Containment ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("outer", "inner", "expected"), [
    ("iot/device/u1/#", "iot/device/u1/#", True),
    ("iot/device/u1/#", "iot/device/u1", True),
    ("iot/device/u1/#", "iot/device/u1/sensor/+", True),
    ("iot/device/u1/#", "iot/device/u1/+/#", True),
    ("iot/device/u1/#", "iot/device/+/x", False),
    ("iot/device/u1/#", "iot/device/#", False),
    ("iot/device/u1/#", "iot/#", False),
    ("iot/device/u1/#", "#", False),
    ("iot/device/+/#", "iot/device/u1/#", True),
    ("iot/device/+/x", "iot/device/+/x", True),
    ("iot/device/+/x", "iot/device/u1/x", True),
    ("iot/device/+/x", "iot/device/u1/#", False),
    ("iot/device/+", "iot/device/#", False),
    ("#", "#", True),
    ("#", "anything/+/at/#", True),
    ("+/#", "#", True),  # equivalent: every topic has at least one level
    ("#", "+/#", True),
    ("+/+/#", "#", False),
    ("a/+/#", "a/#", False),  # `a/#` also matches `a`
    ("a/+/#", "a/+", True),  # ... and `a/+/#` matches `a/x` by its parent level
    ("/+/#", "/#", True),  # the parent of `/#` would be "", which is no topic
    ("/#", "/+/#", True),
    ("/#", "+/#", False),
    ("a/+", "a/+/#", False),
    ("a/+", "a", False),
    ("+", "+", True),
    ("+", "a", True),
    ("a", "+", False),
    ("a/b", "a/b", True),
    ("a/b", "a/c", False),
    ("a//b", "a/+/b", False),
    ("a/+/b", "a//b", True),
    ("#", "$SYS/#", False),  # `$` topics are out of reach of leading wildcards
    ("+/#", "$SYS/x", False),
    ("+/x", "$SYS/x", False),
    ("$SYS/#", "$SYS/+/x", True),
    ("#", "a/$SYS", True),
])
def test_filter_covers(outer: str, inner: str, expected: bool) -> None:
    assert filter_covers(outer, inner) is expected


def test_filter_covers_rejects_invalid_filters() -> None:
    with pytest.raises(ValueError):
        filter_covers("#/a", "a")
    with pytest.raises(ValueError):
        filter_covers("a", "a+")


# Substitution -----------------------------------------------------------------------------------------------------

def test_substitute() -> None:
    assert substitute("iot/device/%u/#", "u1", "c1") == "iot/device/u1/#"
    assert substitute("a/%c/%u/%c", "u1", "c1") == "a/c1/u1/c1"
    assert substitute("no/tokens/#", None, None) == "no/tokens/#"
    assert substitute("100%/x", None, None) == "100%/x"
    assert substitute("a/%x/%", "u", "c") == "a/%x/%"
    assert substitute("iot/%u", "ü-名前", "c") == "iot/ü-名前"
    assert substitute("iot/%u", "with space", "c") == "iot/with space"


@pytest.mark.parametrize("value", ["", None, "a/b", "/", "+", "#", "u+", "u#", "a\x00"])
def test_unsafe_identities_make_a_rule_match_nothing(value: str | None) -> None:
    # Each of these would widen or move the rule: `iot/device/+/#` is every device, `iot/device/a/b/#` a part of
    # device a's topics, `iot/device//#` shared by every nameless client.
    assert substitute("iot/device/%u/#", value, "c1") is None
    assert substitute("iot/device/%c/#", "u1", value) is None
    # A rule that does not use the unsafe value is unaffected.
    assert substitute("iot/device/%u/#", "u1", value) == "iot/device/u1/#"
    rules = [AclRule("iot/device/%u/#", "readwrite"), AclRule("public/#", "read")]
    for topic in ("iot/device/a/b/x", "iot/device/+/x", "iot/device/x", "iot/device//x"):
        if "+" not in topic:
            assert not may_publish(rules, value, "c", topic)
            assert not may_receive(rules, value, "c", topic)
    assert not may_subscribe(rules, value, "c", "iot/device/+/#")
    assert not may_subscribe(rules, value, "c", "iot/device/#")
    assert may_subscribe(rules, value, "c", "public/#")


# Decisions --------------------------------------------------------------------------------------------------------

def test_device_account_decisions() -> None:
    u = "3f2c9a0e7b"
    own = f"iot/device/{u}"
    for topic in (f"{own}/sensor/temperature", f"{own}/status", f"{own}/logs/web", own):
        assert may_publish(DEVICE_RULES, u, "any-client", topic)
        assert may_receive(DEVICE_RULES, u, "any-client", topic)
    for sub in (f"{own}/#", f"{own}/jobs/+", f"{own}/shadow/#", f"$share/g/{own}/#", own):
        assert may_subscribe(DEVICE_RULES, u, "c", sub), sub
    other = "iot/device/other/sensor/temperature"
    assert not may_publish(DEVICE_RULES, u, "c", other)
    assert not may_receive(DEVICE_RULES, u, "c", other)
    for sub in ("#", "iot/#", "iot/device/#", "iot/device/+/sensor/#", "iot/device/other/#", "+/device/" + u,
                "$share/g/iot/device/+/#", "$SYS/#"):
        assert not may_subscribe(DEVICE_RULES, u, "c", sub), sub
    # Invalid input is refused, never an exception.
    assert not may_publish(DEVICE_RULES, u, "c", f"{own}/+")
    assert not may_publish(DEVICE_RULES, u, "c", "")
    assert not may_receive(DEVICE_RULES, u, "c", f"{own}/#")
    assert not may_subscribe(DEVICE_RULES, u, "c", f"{own}/#/x")
    assert not may_subscribe(DEVICE_RULES, u, "c", "$share//x")


def test_access_kinds() -> None:
    rules = [("r/#", "read"), ("w/#", "write"), ("rw/#", "readwrite"), ("bad/#", "admin"), ("bad2/#", "")]
    assert may_receive(rules, "u", "c", "r/x") and not may_publish(rules, "u", "c", "r/x")
    assert may_publish(rules, "u", "c", "w/x") and not may_receive(rules, "u", "c", "w/x")
    assert not may_subscribe(rules, "u", "c", "w/#")
    assert may_publish(rules, "u", "c", "rw/x") and may_receive(rules, "u", "c", "rw/x")
    for topic in ("bad/x", "bad2/x"):  # an unknown access grants nothing
        assert not may_publish(rules, "u", "c", topic) and not may_receive(rules, "u", "c", topic)
    assert [a.value for a in Access] == ["read", "write", "readwrite"]
    assert Access.readwrite.can_read and Access.readwrite.can_write
    assert Access.read.can_read and not Access.read.can_write
    assert Access.write.can_write and not Access.write.can_read


def test_invalid_rules_grant_nothing() -> None:
    rules = [("a/#/b", "readwrite"), ("x%u/#", "readwrite"), ("$share/g/#", "readwrite"), ("", "readwrite")]
    for topic in ("a/x/b", "a/#/b", "xu/1", "$share/g/x", "x"):
        if "#" not in topic:
            assert not may_publish(rules, "u", "c", topic)
    assert not may_subscribe(rules, "u", "c", "#")


def test_client_id_rules() -> None:
    rules = [AclRule("clients/%c/#", "readwrite")]
    assert may_publish(rules, "anyone", "c-1", "clients/c-1/x")
    assert not may_publish(rules, "anyone", "c-2", "clients/c-1/x")
    assert may_subscribe(rules, None, "c-1", "clients/c-1/#")
    assert not may_subscribe(rules, None, "c-1", "clients/+/#")


def test_subscription_covered_by_several_rules_together() -> None:
    # `a/#` is `a` plus everything under it: two rules, neither enough alone.
    rules = [("a", "read"), ("a/+/#", "read")]
    assert may_subscribe(rules, "u", "c", "a/#")
    assert not may_subscribe(rules[:1], "u", "c", "a/#")
    assert not may_subscribe(rules[1:], "u", "c", "a/#")
    # Rules of depth 2, 3 and 4+ cover everything below `a`, but not `a` itself.
    rules = [("a/+", "read"), ("a/+/+", "read"), ("a/+/+/+/#", "read")]
    assert not may_subscribe(rules, "u", "c", "a/#")
    assert may_subscribe(rules, "u", "c", "a/+/#")
    assert may_subscribe([*rules, ("a", "read")], "u", "c", "a/#")
    # A write rule does not help reading.
    assert not may_subscribe([("a", "read"), ("a/+/#", "write")], "u", "c", "a/#")
    # Literals never add up to a `+`.
    assert not may_subscribe([("a/x", "read"), ("a/y", "read")], "u", "c", "a/+")


def test_service_account_for_ingest() -> None:
    rules = [AclRule("iot/device/+/#", "read")]
    for sub in ("$share/ingest/iot/device/+/sensor/#", "$share/ingest/iot/device/+/metrics",
                "$share/ingest/iot/device/+/logs/+", "iot/device/+/status"):
        assert may_subscribe(rules, "ingest", "ingest-1", sub), sub
    assert not may_subscribe(rules, "ingest", "ingest-1", "$share/ingest/#")
    assert not may_publish(rules, "ingest", "ingest-1", "iot/device/u1/state")


def test_snapshot_types_are_plain_tuples() -> None:
    account = AccountAcl("u1", "$7$...", True, [AclRule("iot/device/u1/#", "readwrite")])
    username, _, is_active, rules = account
    assert (username, is_active, rules) == ("u1", True, [("iot/device/u1/#", "readwrite")])
    assert may_publish(account.rules, "u1", "c", "iot/device/u1/x")


# Properties -------------------------------------------------------------------------------------------------------
# Over levels {a, b, "", $s} plus wildcards, with `z` as the value no filter names, enumerating every topic up to
# one level deeper than any filter decides containment exactly (see `_covered_by_any`).

LITERALS = ["a", "b", "", "$s"]
TOPIC_LEVELS = [*LITERALS, "z"]
MAX_FILTER_DEPTH = 3
MAX_DEPTH = MAX_FILTER_DEPTH + 1


@cache
def all_topics(depth: int) -> tuple[str, ...]:
    """Every valid topic (so not "", one empty level) up to `depth` levels."""
    topics = ("/".join(levels) for n in range(1, depth + 1) for levels in itertools.product(TOPIC_LEVELS, repeat=n))
    return tuple(t for t in topics if t)


@st.composite
def filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(st.sampled_from([*LITERALS, "+"]), min_size=1, max_size=MAX_FILTER_DEPTH))
    if draw(st.booleans()):
        levels[-1] = "#"
    return "/".join(levels) or draw(st.sampled_from(["+", "#", "a"]))  # "" is no filter


@cache
def matches(topic: str, topic_filter: str) -> bool:
    return topic_matches_filter(topic, topic_filter)


def brute_covers(outers: list[str], inner: str) -> bool:
    return all(any(matches(t, o) for o in outers) for t in all_topics(MAX_DEPTH) if matches(t, inner))


@given(filters())
def test_generated_filters_are_valid(f: str) -> None:
    validate_topic_filter(f)


@settings(max_examples=300)
@given(filters(), filters())
def test_containment_is_exact(outer: str, inner: str) -> None:
    assert filter_covers(outer, inner) == brute_covers([outer], inner)


@settings(max_examples=300)
@given(st.lists(filters(), max_size=4), filters(), st.booleans())
def test_may_subscribe_allows_exactly_the_readable_filters(read_filters: list[str], sub: str, shared: bool) -> None:
    rules = [AclRule(f, "read" if i % 2 else "readwrite") for i, f in enumerate(read_filters)]
    rules.append(AclRule("b/#", "write"))  # grants no reading
    subscription = f"$share/group/{sub}" if shared else sub
    allowed = may_subscribe(rules, "u", "c", subscription)
    # Sound: if allowed, every topic the filter matches may be delivered...
    matching = [t for t in all_topics(MAX_DEPTH) if matches(t, sub)]
    if allowed:
        assert all(may_receive(rules, "u", "c", t) for t in matching)
    # ...and exact: if refused, some topic it matches may not be.
    else:
        assert not all(may_receive(rules, "u", "c", t) for t in matching)


@given(filters())
def test_containment_is_reflexive(f: str) -> None:
    assert filter_covers(f, f)


def generalise(data: st.DataObject, f: str) -> str:
    """A filter that covers `f`: some levels turned into `+`, or a tail into `#`."""
    levels = f.split("/")
    out = []
    for i, level in enumerate(levels):
        if level == "#":
            out.append(level)
            break
        choice = data.draw(st.sampled_from(["keep", "plus", "hash"]))
        if choice == "hash" and not (i == 0 and level.startswith("$")):
            out.append("#")
            break
        out.append("+" if choice == "plus" and not (i == 0 and level.startswith("$")) else level)
    return "/".join(out)


@given(st.data(), filters())
def test_containment_is_transitive(data: st.DataObject, c: str) -> None:
    b = generalise(data, c)
    a = generalise(data, b)
    assert filter_covers(b, c) and filter_covers(a, b) and filter_covers(a, c)


@settings(max_examples=300)
@given(filters(), filters(), filters())
def test_containment_is_transitive_on_random_triples(a: str, b: str, c: str) -> None:
    if filter_covers(a, b) and filter_covers(b, c):
        assert filter_covers(a, c)


@given(filters(), st.sampled_from(all_topics(MAX_DEPTH)))
def test_containment_agrees_with_matching_on_concrete_topics(f: str, topic: str) -> None:
    # A topic name is also a filter matching only itself.
    assert filter_covers(f, topic) == topic_matches_filter(topic, f)


@given(st.text(alphabet=st.sampled_from("ab/+#$%u\x00é"), max_size=12))
def test_validation_matches_a_reference(text: str) -> None:
    levels = text.split("/")
    filter_ok = (text != "" and "\x00" not in text
                 and all(lv in ("+", "#") or ("+" not in lv and "#" not in lv) for lv in levels)
                 and "#" not in levels[:-1])
    name_ok = text != "" and "\x00" not in text and "+" not in text and "#" not in text
    for check, ok in ((validate_topic_filter, filter_ok), (validate_topic_name, name_ok)):
        try:
            check(text)
        except ValueError:
            assert not ok
        else:
            assert ok


identities = st.text(alphabet=st.sampled_from("ab/+#\x00-é"), max_size=6)


@given(identities, identities, st.sampled_from(all_topics(3)), st.sampled_from(["a", "b", "z", "a/b", "+"]))
def test_substitution_never_widens(username: str, client_id: str, tail: str, level: str) -> None:
    rules = [AclRule("iot/%u/#", "readwrite"), AclRule("c/%c", "read")]
    # Whatever the identity, a device reaches at most its own single level below iot/, and only its own.
    topic = f"iot/{level}/{tail}" if "+" not in level else f"iot/a/{tail}"
    if may_publish(rules, username, client_id, topic) or may_receive(rules, username, client_id, topic):
        assert topic.split("/")[1] == username
    for sub in (f"iot/{level}/#", "iot/#", "iot/+/x", f"c/{level}", "c/+"):
        if may_subscribe(rules, username, client_id, sub):
            first = sub.split("/")[1]
            assert first == (username if sub.startswith("iot/") else client_id)
            assert "+" not in first and "#" not in first and "/" not in first


@pytest.mark.parametrize("topic", ["iot/line\nbreak", "iot/tab\there", "iot/del\x7f", " iot/lead", "iot/trail "])
def test_rule_topics_that_cannot_go_into_the_acl_file_are_refused(topic: str) -> None:
    with pytest.raises(ValueError, match="control characters"):
        validate_rule_topic(topic)
