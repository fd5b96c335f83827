"""MQTT access control: which topics an account may publish to, subscribe to and receive. Pure code, no I/O.

The same rules drive the embedded broker (checked here, per packet) and Mosquitto (written into its files by the
broker sync), so both must agree; the semantics follow MQTT 3.1.1 / 5.0 and Mosquitto 2.0:

- A topic name is split on `/` into levels; empty levels are levels (`a//b` has three, `/a` two).
- In a topic filter `+` matches exactly one level (an empty one too) and `#` matches any number of levels,
  including none: `a/#` matches `a`, `a/b` and `a/b/c`. Both must occupy a whole level; `#` must be the last.
- A topic whose first level starts with `$` (`$SYS/...`) is not matched by a filter starting with `+` or `#`.
- A rule is a topic filter plus an access: `read` (subscribe and receive), `write` (publish) or `readwrite`.
  A rule's topic may name the account itself: a level that is exactly `%u` stands for the username and `%c` for
  the client id (Mosquitto's `pattern` substitution, which also requires them to be whole levels).
- A subscription is allowed only if *every* topic it could ever match is readable: `iot/device/+/x` is refused
  to an account that may read `iot/device/u1/#`, even though some of its topics would be allowed. (Mosquitto
  also filters deliveries by read access; refusing the subscription outright makes the refusal visible to the
  client instead of silently receiving a subset.) Shared subscriptions `$share/<group>/<filter>` are checked
  by their filter.

Everything answers "no" to input it cannot make sense of (an invalid topic, an unknown access, an unsafe
username): an access check must fail closed. The `validate_*` functions raise `ValueError` with a message fit
for an API client.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple

MAX_TOPIC_BYTES = 65_535  # an MQTT UTF-8 string carries a 16-bit length
SHARE_PREFIX = "$share/"
USERNAME_TOKEN = "%u"
CLIENT_ID_TOKEN = "%c"

Levels = tuple[str, ...]


class Access(StrEnum):
    read = "read"
    write = "write"
    readwrite = "readwrite"

    @property
    def can_read(self) -> bool:
        return self is not Access.write

    @property
    def can_write(self) -> bool:
        return self is not Access.read


class AclRule(NamedTuple):
    """A topic filter (with optional `%u` / `%c` levels) and what it grants. A plain `(topic, access)` tuple of
    strings is accepted wherever rules are."""

    topic: str
    access: str


class AccountAcl(NamedTuple):
    """One broker login as the database holds it: what the embedded broker and the Mosquitto sync consume."""

    username: str
    password_hash: str  # Mosquitto `$7$` PBKDF2-SHA512 (see iotistic.core.security)
    is_active: bool
    rules: list[AclRule]


# Validation -------------------------------------------------------------------------------------------------------

def _check_string(value: str, what: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    if value == "":
        raise ValueError(f"{what} must not be empty")
    if "\x00" in value:
        raise ValueError(f"{what} must not contain the NUL character (U+0000)")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be valid UTF-8 (it contains a lone surrogate)") from None
    if size > MAX_TOPIC_BYTES:
        raise ValueError(f"{what} is {size} bytes long; MQTT allows at most {MAX_TOPIC_BYTES}")


def validate_topic_name(topic: str) -> None:
    """A topic a message is published to: no wildcards. Raises ValueError saying what is wrong."""
    _check_string(topic, "topic name")
    if "+" in topic or "#" in topic:
        raise ValueError(f"topic name {_show(topic)} must not contain the wildcards '+' or '#' "
                         "(they are only allowed in subscription filters)")


def validate_topic_filter(topic_filter: str) -> None:
    """A subscription or rule filter: `+` and `#` as whole levels, `#` last. Raises ValueError saying what is
    wrong."""
    _check_string(topic_filter, "topic filter")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level:
            if level != "#":
                raise ValueError(f"'#' must occupy a whole level of the topic filter (found level {_show(level)})")
            if i != len(levels) - 1:
                raise ValueError(f"'#' must be the last level of the topic filter {_show(topic_filter)}")
        elif "+" in level and level != "+":
            raise ValueError(f"'+' must occupy a whole level of the topic filter (found level {_show(level)})")


def split_shared_subscription(subscription: str) -> tuple[str | None, str]:
    """`$share/<group>/<filter>` -> (group, filter); any other filter -> (None, filter). Validates the share
    syntax of MQTT 5 (a non-empty group without `/`, `+` or `#`, then a filter) but not the filter itself."""
    if not subscription.startswith(SHARE_PREFIX):
        return None, subscription
    group, sep, topic_filter = subscription[len(SHARE_PREFIX):].partition("/")
    if not group:
        raise ValueError("a shared subscription needs a group name: $share/<group>/<filter>")
    if "+" in group or "#" in group:
        raise ValueError(f"the share group name {_show(group)} must not contain '+' or '#'")
    if not sep or not topic_filter:
        raise ValueError("a shared subscription needs a topic filter after the group: $share/<group>/<filter>")
    return group, topic_filter


def validate_subscription(subscription: str) -> None:
    """A SUBSCRIBE filter, shared (`$share/<group>/<filter>`) or not."""
    _check_string(subscription, "topic filter")
    validate_topic_filter(split_shared_subscription(subscription)[1])


def validate_rule_topic(topic: str) -> None:
    """An ACL rule's filter: a valid topic filter in which `%u` and `%c` only appear as whole levels, and not a
    shared subscription (rules apply to the filter inside one)."""
    validate_topic_filter(topic)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in topic) or topic != topic.strip():
        # Legal MQTT, but a rule is also written into Mosquitto's line-based acl_file: refuse what cannot go there.
        raise ValueError("a rule topic may not contain control characters or start or end with blanks")
    if topic.startswith(SHARE_PREFIX):
        raise ValueError("a rule applies to the filter inside a shared subscription: "
                         "write it without the $share/<group>/ prefix")
    for level in topic.split("/"):
        for token in (USERNAME_TOKEN, CLIENT_ID_TOKEN):
            if token in level and level != token:
                raise ValueError(f"{token} must occupy a whole level of the rule topic (found level {_show(level)})")


def _show(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


# Matching ---------------------------------------------------------------------------------------------------------

@lru_cache(maxsize=65_536)
def _levels(topic: str) -> Levels:
    return tuple(topic.split("/"))


def _wildcard(level: str) -> bool:
    return level == "+" or level == "#"


def _matches(filter_levels: Levels, topic_levels: Levels) -> bool:
    """Both already valid; the topic has no wildcards."""
    if filter_levels and _wildcard(filter_levels[0]) and topic_levels[0].startswith("$"):
        return False
    for i, f in enumerate(filter_levels):
        if f == "#":
            return True  # matches the parent level (i == len(topic)) and anything deeper
        if i >= len(topic_levels):
            return False
        if f != "+" and f != topic_levels[i]:
            return False
    return len(filter_levels) == len(topic_levels)


def topic_matches_filter(topic: str, topic_filter: str) -> bool:
    """Whether a message published on `topic` is delivered to a subscription `topic_filter`. Raises ValueError
    if either is invalid."""
    validate_topic_name(topic)
    validate_topic_filter(topic_filter)
    return _matches(_levels(topic_filter), _levels(topic))


def _covers_fixed(outer: Levels, inner: Levels) -> bool:
    """Whether every topic matching `inner` (a filter without `#`) matches `outer` (any filter)."""
    for i, s in enumerate(inner):
        if i >= len(outer):
            return False
        r = outer[i]
        if _wildcard(r):
            # A leading wildcard never matches a `$` topic, which a literal `$...` first level always names.
            if i == 0 and s.startswith("$"):
                return False
            if r == "#":
                return True
        elif s != r:  # a literal covers only itself, never a `+`
            return False
    # Same depth, or `outer` is one `#` longer: `a/#` also matches its parent `a`.
    return len(outer) == len(inner) or (len(outer) == len(inner) + 1 and outer[-1] == "#")


def _fixed_depth_parts(inner: Levels, deepest_outer: int) -> Iterator[Levels]:
    """`inner` as filters of one depth each. A trailing `#` at index k stands for depths max(k, 1), k + 1, ...
    (every topic has at least one level), the levels it adds being `+`. Past the deepest outer filter every
    depth is covered by the same `#` rules or by none, so one depth beyond it decides all the deeper ones.
    The parent of `/#` is left out: a single empty level is the empty string, which is no topic."""
    if inner[-1] != "#":
        yield inner
        return
    k = len(inner) - 1
    for depth in range(max(k, 1), max(k + 1, deepest_outer + 1) + 1):
        part = inner[:k] + ("+",) * (depth - k)
        if part != ("",):
            yield part


def _covered_by_any(outers: list[Levels], inner: Levels) -> bool:
    """Whether every topic matching `inner` matches at least one of `outers`.

    At a fixed depth a single rule must cover the whole filter: give each `+` of `inner` a fresh value no rule
    names and whichever rule matches that topic has wildcards wherever `inner` has, so it covers all of it. Only
    `#` spreads `inner` over several depths, which different rules may cover (`a` and `a/+/#` cover `a/#`)."""
    if not outers:
        return False
    deepest = max(len(o) for o in outers)
    return all(any(_covers_fixed(o, part) for o in outers) for part in _fixed_depth_parts(inner, deepest))


def filter_covers(outer: str, inner: str) -> bool:
    """Filter containment: whether every topic matching `inner` also matches `outer` (exact, not a heuristic).
    `iot/device/u1/#` covers itself and `iot/device/u1/+/x`, but not `iot/device/+/x`; only `#` (or its
    equivalent `+/#`) covers `#`. Raises ValueError if either filter is invalid."""
    validate_topic_filter(outer)
    validate_topic_filter(inner)
    return _covered_by_any([_levels(outer)], _levels(inner))


# Rules and substitution ---------------------------------------------------------------------------------------------

def _safe_identity(value: str | None) -> bool:
    # A value put in place of %u / %c becomes a topic level, so it must be exactly one literal level. A `/` would
    # reach into another account's subtree (username `u1/x` in `iot/device/%u/#` gives `iot/device/u1/x/#`, a part
    # of device u1's topics); `+` or `#` would turn into wildcards and match other accounts' topics outright; an
    # empty value would make topics with an empty level common ground for every client without a name. So such a
    # value matches nothing (Mosquitto likewise refuses pattern rules to ids with `+` or `#`).
    if not value:
        return False
    return not any(c in value for c in "/+#\x00")


def substitute(rule_topic: str, username: str | None, client_id: str | None) -> str | None:
    """The rule's filter for this client: whole levels `%u` and `%c` replaced by the username and client id.

    Returns None when the rule needs a value that is missing or unsafe (empty, or containing `/`, `+`, `#` or
    NUL): such a rule matches nothing for that client, rather than matching more than it says. Rules without
    `%u` / `%c` come back unchanged whatever the identity."""
    if "%" not in rule_topic:
        return rule_topic
    levels = []
    for level in _levels(rule_topic):
        if level == USERNAME_TOKEN or level == CLIENT_ID_TOKEN:
            value = username if level == USERNAME_TOKEN else client_id
            if value is None or not _safe_identity(value):
                return None
            level = value
        levels.append(level)
    return "/".join(levels)


@lru_cache(maxsize=4096)
def _rule_filter_ok(topic: str) -> bool:
    try:
        validate_rule_topic(topic)
    except ValueError:
        return False
    return True


def _access(value: str) -> Access | None:
    try:
        return Access(value)
    except ValueError:
        return None


def _granted_filters(rules: Iterable[tuple[str, str]], username: str | None, client_id: str | None,
                     *, write: bool) -> list[Levels]:
    """The concrete filters of the rules granting read (or write) to this client. Invalid rules grant nothing."""
    granted = []
    for topic, access_value in rules:
        access = _access(access_value)
        if access is None or not (access.can_write if write else access.can_read):
            continue
        if not _rule_filter_ok(topic):
            continue
        concrete = substitute(topic, username, client_id)
        if concrete is not None:
            granted.append(_levels(concrete))
    return granted


def _valid_topic(topic: str) -> bool:
    try:
        validate_topic_name(topic)
    except ValueError:
        return False
    return True


def may_publish(rules: Iterable[tuple[str, str]], username: str | None, client_id: str | None, topic: str) -> bool:
    """Whether the client may publish to `topic` (a write or readwrite rule matches it)."""
    if not _valid_topic(topic):
        return False
    levels = _levels(topic)
    return any(_matches(f, levels) for f in _granted_filters(rules, username, client_id, write=True))


def may_receive(rules: Iterable[tuple[str, str]], username: str | None, client_id: str | None, topic: str) -> bool:
    """Whether a message on `topic` may be delivered to the client (a read or readwrite rule matches it)."""
    if not _valid_topic(topic):
        return False
    levels = _levels(topic)
    return any(_matches(f, levels) for f in _granted_filters(rules, username, client_id, write=False))


def may_subscribe(rules: Iterable[tuple[str, str]], username: str | None, client_id: str | None,
                  subscription: str) -> bool:
    """Whether the client may subscribe to `subscription` (possibly `$share/<group>/<filter>`): every topic the
    filter could match must be readable under the client's read rules, taken together."""
    try:
        validate_subscription(subscription)
    except ValueError:
        return False
    topic_filter = split_shared_subscription(subscription)[1]
    return _covered_by_any(_granted_filters(rules, username, client_id, write=False), _levels(topic_filter))
