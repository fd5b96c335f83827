"""Rendering Mosquitto's password_file and acl_file from the accounts (pure code)."""

from __future__ import annotations

import time
import uuid

import pytest

from iotistic.broker.files import (
    ACL_FILE_HEADER,
    AclRule,
    BrokerAccount,
    password_hash_problem,
    render,
    topic_problem,
    username_problem,
)
from iotistic.core.security import mosquitto_password_hash, verify_mosquitto_password

HASH = mosquitto_password_hash("secret-password")


def device(uid: str, *, active: bool = True, rules: tuple[AclRule, ...] | None = None) -> BrokerAccount:
    if rules is None:
        rules = (AclRule(f"iot/device/{uid}/#", "readwrite"),)
    return BrokerAccount(uid, HASH, "device", active, rules)


def service(name: str, *rules: AclRule, kind: str = "service") -> BrokerAccount:
    return BrokerAccount(name, HASH, kind, True, tuple(rules))


def acl_body(acl: str) -> str:
    """The acl_file after the fixed header (the device pattern)."""
    assert acl.startswith(ACL_FILE_HEADER)
    return acl[len(ACL_FILE_HEADER):]


def test_devices_share_one_pattern_line_and_get_no_user_block():
    files = render([device("dev-b"), device("dev-a")])
    assert files.password_file.splitlines()[1:] == [f"dev-a:{HASH}", f"dev-b:{HASH}"]
    assert "pattern readwrite iot/device/%u/#\n" in files.acl_file
    assert acl_body(files.acl_file) == ""
    assert (files.accounts, files.user_blocks, files.skipped) == (2, 0, ())


def test_acl_file_does_not_grow_with_the_fleet():
    small = render([device(f"d{i:05d}") for i in range(10)])
    large = render([device(f"d{i:05d}") for i in range(10_000)])
    assert large.acl_file == small.acl_file
    assert large.accounts == 10_000


def test_ten_thousand_devices_render_quickly():
    accounts = [device(uuid.uuid4().hex) for _ in range(10_000)]
    start = time.perf_counter()
    render(accounts)
    assert time.perf_counter() - start < 1.0


def test_inactive_accounts_are_left_out_of_both_files():
    files = render([device("dev-a", active=False), device("dev-b"),
                    BrokerAccount("ingest", HASH, "service", False, (AclRule("iot/device/+/sensor/#", "read"),))])
    assert [line.split(":")[0] for line in files.password_file.splitlines()[1:]] == ["dev-b"]
    assert "ingest" not in files.acl_file
    assert files.accounts == 1


def test_service_accounts_get_user_blocks_with_their_topics():
    files = render([service("ingest", AclRule("iot/device/+/sensor/#", "read"), AclRule("iot/device/+/status", "read")),
                    service("bridge", AclRule("export/#", "write"), kind="integration")])
    assert acl_body(files.acl_file) == (
        "\nuser bridge\n"
        "topic deny iot/device/bridge/#\n"
        "topic write export/#\n"
        "\nuser ingest\n"
        "topic deny iot/device/ingest/#\n"
        "topic read iot/device/+/sensor/#\n"
        "topic read iot/device/+/status\n"
    )
    assert files.user_blocks == 2
    assert files.skipped == ()  # a service's own pattern tree belongs to no device: denying it loses nothing


def test_an_account_granted_its_whole_own_tree_needs_no_deny():
    files = render([service("admin", AclRule("#", "readwrite")),
                    service("ops", AclRule("iot/+/+/#", "read"), AclRule("iot/device/ops/#", "write"))])
    assert "deny" not in files.acl_file
    assert "user admin\ntopic readwrite #\n" in files.acl_file


def test_rules_that_cover_the_own_tree_together_need_no_deny():
    files = render([service("svc", AclRule("iot/device/svc", "readwrite"), AclRule("iot/device/svc/+/#", "read"),
                            AclRule("iot/device/+/#", "write"))])
    assert "deny" not in files.acl_file
    files = render([service("svc", AclRule("iot/device/svc/+/#", "readwrite"))])  # misses iot/device/svc itself
    assert "topic deny iot/device/svc/#" in files.acl_file


def test_device_with_extra_rules_gets_a_block_with_only_the_extras():
    files = render([device("dev-a", rules=(AclRule("iot/device/dev-a/#", "readwrite"),
                                           AclRule("fleet/42/commands", "read")))])
    assert acl_body(files.acl_file) == "\nuser dev-a\ntopic read fleet/42/commands\n"


def test_device_without_its_default_rule_is_denied_its_tree():
    files = render([device("dev-a", rules=())])
    assert acl_body(files.acl_file) == "\nuser dev-a\ntopic deny iot/device/dev-a/#\n"
    assert files.skipped == ()  # nothing in the database is lost: the device had no grant there
    assert files.password_file.count("dev-a:") == 1  # it may still log in (and do nothing)


def test_device_with_a_narrowed_tree_gets_nothing_there_and_it_is_reported():
    files = render([device("dev-a", rules=(AclRule("iot/device/dev-a/#", "read"),))])
    assert "topic deny iot/device/dev-a/#\n" in files.acl_file
    [skipped] = files.skipped
    assert skipped.username == "dev-a" and "cannot be expressed" in skipped.reason


@pytest.mark.parametrize("topic", ["iot/device/%u/#", "iot/device/%u/telemetry", "a/%u/+/#"])
def test_percent_u_is_replaced_by_the_username(topic):
    files = render([service("svc", AclRule(topic, "read"))])
    assert f"topic read {topic.replace('%u', 'svc')}\n" in files.acl_file


def test_percent_c_cannot_be_expressed_per_account():
    files = render([service("svc", AclRule("clients/%c/#", "read"), AclRule("ok/#", "read"))])
    assert "%c" not in acl_body(files.acl_file)
    assert "topic read ok/#" in files.acl_file
    [skipped] = files.skipped
    assert skipped.topic == "clients/%c/#" and "client id" in skipped.reason


@pytest.mark.parametrize("username", [
    "", "with space", "tab\there", "new\nline", "colon:name", "plus+", "hash#", "#comment", "a/b", "nul\x00",
    "bell\x07", "line\u2028sep",
])
def test_usernames_that_could_break_the_files_are_refused(username):
    assert username_problem(username) is not None
    files = render([service(username, AclRule("x/#", "read")), device("dev-ok")])
    assert files.accounts == 1
    assert files.password_file.splitlines()[1:] == [f"dev-ok:{HASH}"]
    assert "x/#" not in files.acl_file
    [skipped] = files.skipped
    assert skipped.username == username and skipped.topic is None


@pytest.mark.parametrize("username", ["ingest", "svc.bridge-1", "user@example.com", "a=b", "ünïcode", "a%b"])
def test_ordinary_usernames_are_accepted(username):
    assert username_problem(username) is None


@pytest.mark.parametrize("topic", [
    "", "a/#/b", "a/b#", "a/+b", "+a", "a\nuser root", "a\rb", " a/b", "a/b ", "a/b\t", "a\x00b", "a/%u-x", "%c",
    "x" * 65536,
])
def test_topics_that_are_not_valid_acl_entries_are_refused(topic):
    assert topic_problem(topic) is not None
    files = render([service("svc", AclRule(topic, "read"), AclRule("good/+/topic", "write"))])
    assert acl_body(files.acl_file) == "\nuser svc\ntopic deny iot/device/svc/#\ntopic write good/+/topic\n"
    [skipped] = files.skipped
    assert skipped.topic == topic


@pytest.mark.parametrize("topic", ["#", "+", "a/+/b/#", "$SYS/broker/#", "with space/inside", "ünï/cödé", "a//b",
                                   "/leading"])
def test_valid_topic_filters_are_accepted(topic):
    assert topic_problem(topic) is None


def test_unknown_access_is_refused():
    files = render([service("svc", AclRule("a/b", "subscribe"))])
    assert "a/b" not in acl_body(files.acl_file)
    assert files.skipped[0].reason == "unknown access 'subscribe'"


@pytest.mark.parametrize("bad_hash", [
    "", "plaintext", "$6$abc$def", "$7$101$c2FsdA==$ZGlnZXN0",  # salt and digest of the wrong length
    "$7$0$" + HASH.split("$", 3)[3], "$7$101$not base64!$" + HASH.split("$")[4], HASH + "\nother:line", HASH + ":x",
])
def test_password_hashes_mosquitto_would_not_accept_are_refused_and_never_quoted(bad_hash):
    assert password_hash_problem(bad_hash) is not None
    files = render([BrokerAccount("dev-a", bad_hash, "device", True, ())])
    assert files.accounts == 0 and files.password_file.splitlines()[1:] == []
    [skipped] = files.skipped
    if bad_hash:
        assert bad_hash not in skipped.describe()


def test_project_hashes_are_accepted_and_verify():
    assert password_hash_problem(HASH) is None
    line = render([device("dev-a")]).password_file.splitlines()[1]
    username, stored = line.split(":", 1)
    assert username == "dev-a" and verify_mosquitto_password(stored, "secret-password")


def test_same_accounts_in_any_order_give_identical_files():
    accounts = [device("c"), service("svc", AclRule("a/#", "read")), device("a"), device("b", active=False)]
    assert render(accounts) == render(list(reversed(accounts)))


def test_describe_names_the_account_and_rule():
    files = render([service("svc", AclRule("a/#/b", "read"))])
    assert files.skipped[0].describe() == (
        "rule 'a/#/b' of MQTT account 'svc' left out: '#' must be a whole topic level and the last one")
