"""The fake Kubernetes API behaves like the real one where the deployer and helm depend on it.

Driven by the real `kubernetes` client, so a fake that drifted from what clients expect fails here first, not in
the deployer's tests. No helm in this module: it runs in about a second.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from iotistic.billing.deploy.kube import client_factory
from tests.fakes.kube_api import FakeKubeApi, selector_matches

NS = "customer-c000000000001"
# The generated client's signatures name its models; it takes plain dicts (what these tests send) as well.
Core = Any


@pytest.fixture
def kube() -> Iterator[FakeKubeApi]:
    with FakeKubeApi(namespace_termination_s=1.0) as api:  # observably terminating first, even under load
        yield api


@pytest.fixture
def core(kube: FakeKubeApi, tmp_path: Path) -> Iterator[Core]:
    api = client_factory(kube.write_kubeconfig(tmp_path / "kubeconfig"))()
    core: Core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": NS}})
    yield core
    api.close()


def status_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body or "{}")
    return body


def config_map(name: str, labels: dict[str, str] | None = None, **data: str) -> Any:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": data}


def test_a_wrong_token_is_refused(kube: FakeKubeApi, tmp_path: Path) -> None:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    kubeconfig.write_text(kubeconfig.read_text().replace(kube.token, "not-the-token"))
    api = client_factory(kubeconfig)()
    with pytest.raises(ApiException) as caught:
        core: Core = client.CoreV1Api(api)
        core.list_namespace()
    api.close()
    assert caught.value.status == 401


def test_errors_are_status_objects_with_the_api_servers_reasons(core: Core) -> None:
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("nope", NS)
    assert missing.value.status == 404
    assert status_of(missing.value) | {"metadata": {}} == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'configmaps "nope" not found', "reason": "NotFound",
        "details": {"name": "nope", "group": "", "kind": "configmaps"}, "code": 404,
    }
    core.create_namespaced_config_map(NS, config_map("a"))
    with pytest.raises(ApiException) as twice:
        core.create_namespaced_config_map(NS, config_map("a"))
    assert (twice.value.status, status_of(twice.value)["reason"]) == (409, "AlreadyExists")
    with pytest.raises(ApiException) as no_namespace:
        core.create_namespaced_config_map("customer-none", config_map("a"))
    assert status_of(no_namespace.value)["message"] == 'namespaces "customer-none" not found'
    with pytest.raises(ApiException) as bad_name:
        core.create_namespace({"metadata": {"name": "Customer_X"}})
    assert (bad_name.value.status, status_of(bad_name.value)["reason"]) == (422, "Invalid")


def test_updates_keep_resource_versions_and_refuse_stale_ones(core: Core) -> None:
    created = core.create_namespaced_config_map(NS, config_map("a", k="1"))
    rv = created.metadata.resource_version
    same = core.replace_namespaced_config_map("a", NS, config_map("a", k="1"))
    assert same.metadata.resource_version == rv  # nothing changed, nothing written
    changed = core.replace_namespaced_config_map("a", NS, config_map("a", k="2"))
    assert int(changed.metadata.resource_version) > int(rv)
    assert changed.metadata.uid == created.metadata.uid
    stale = config_map("a", k="3")
    stale["metadata"]["resourceVersion"] = rv
    with pytest.raises(ApiException) as caught:
        core.replace_namespaced_config_map("a", NS, stale)
    assert (caught.value.status, status_of(caught.value)["reason"]) == (409, "Conflict")


def test_label_selectors(core: Core) -> None:
    core.create_namespaced_config_map(NS, config_map("a", {"owner": "helm", "status": "deployed"}))
    core.create_namespaced_config_map(NS, config_map("b", {"owner": "helm", "status": "superseded"}))
    core.create_namespaced_config_map(NS, config_map("c", {"tier": "x"}))

    def names(selector: str) -> list[str]:
        return [cm.metadata.name for cm in core.list_namespaced_config_map(NS, label_selector=selector).items]

    assert names("owner=helm") == ["a", "b"]
    assert names("owner=helm,status!=superseded") == ["a"]
    assert names("status in (deployed, superseded)") == ["a", "b"]
    assert names("status notin (deployed),!tier") == ["b"]
    assert names("tier") == ["c"]
    assert names("") == ["a", "b", "c"]
    assert not selector_matches("a==1,b", {"a": "1"})


def test_patches_merge_strategic_and_json(core: Core, kube: FakeKubeApi) -> None:
    core.create_namespaced_config_map(NS, config_map("a", k="1", drop="x"))
    core.patch_namespaced_config_map(
        "a", NS, {"data": {"drop": None, "new": "2"}}, _content_type="application/merge-patch+json"
    )
    core.patch_namespaced_config_map("a", NS, [{"op": "replace", "path": "/data/k", "value": "3"}])
    assert core.read_namespaced_config_map("a", NS).data == {"k": "3", "new": "2"}

    pod = {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "app", "image": "a:1"}, {"name": "side", "image": "s:1"}]},
    }
    core.create_namespaced_pod(NS, pod)
    # Strategic merge (the client's default for an object): list items merge by name instead of replacing.
    core.patch_namespaced_pod("p", NS, {"spec": {"containers": [{"name": "app", "image": "a:2"}]}})
    stored = kube.get("Pod", "p", NS)
    assert stored is not None
    assert stored["spec"]["containers"] == [{"name": "app", "image": "a:2"}, {"name": "side", "image": "s:1"}]
    assert stored["metadata"]["generation"] == 2


def test_server_side_apply_creates_then_replaces_and_validates(core: Core, kube: FakeKubeApi) -> None:
    applied = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "1", "j": "2"}}
    apply: dict[str, Any] = {
        "_content_type": "application/apply-patch+yaml", "field_manager": "test", "field_validation": "Strict"
    }
    core.patch_namespaced_config_map("a", NS, applied, **apply)
    applied["data"] = {"k": "1"}
    core.patch_namespaced_config_map("a", NS, applied, **apply)
    assert core.read_namespaced_config_map("a", NS).data == {"k": "1"}  # the sole manager dropped j
    with pytest.raises(ApiException) as caught:
        core.patch_namespaced_config_map("a", NS, {**applied, "spec": {}}, **apply)
    assert (caught.value.status, status_of(caught.value)["reason"]) == (422, "Invalid")
    assert "spec" in status_of(caught.value)["message"]
    assert kube.get("ConfigMap", "a", NS) is not None and "spec" not in (kube.get("ConfigMap", "a", NS) or {})
    with pytest.raises(ApiException) as no_manager:
        core.patch_namespaced_config_map("a", NS, applied, _content_type="application/apply-patch+yaml")
    assert no_manager.value.status == 400


def test_secret_string_data_is_stored_as_data(core: Core) -> None:
    core.create_namespaced_secret(NS, {"metadata": {"name": "s"}, "stringData": {"token": "abc"}})
    secret = core.read_namespaced_secret("s", NS)
    assert secret.data == {"token": base64.b64encode(b"abc").decode()} and secret.string_data is None


def test_a_deleted_namespace_terminates_then_goes_with_its_content(core: Core) -> None:
    core.create_namespaced_config_map(NS, config_map("a"))
    core.delete_namespace(NS)
    assert core.read_namespace(NS).status.phase == "Terminating"
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map(NS, config_map("b"))
    assert caught.value.status == 403
    deadline = time.monotonic() + 5
    while core.list_namespace(field_selector=f"metadata.name={NS}").items:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert core.list_config_map_for_all_namespaces().items == []


def test_watch_streams_changes(core: Core) -> None:
    core.create_namespaced_config_map(NS, config_map("before"))
    events: list[tuple[str, str]] = []
    watcher = watch.Watch()

    def collect() -> None:
        for event in watcher.stream(core.list_namespaced_config_map, NS, timeout_seconds=5):
            events.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                watcher.stop()

    thread = threading.Thread(target=collect)
    thread.start()
    deadline = time.monotonic() + 5
    while not events and time.monotonic() < deadline:  # the existing object arrives first, as ADDED
        time.sleep(0.02)
    core.create_namespaced_config_map(NS, config_map("after"))
    core.patch_namespaced_config_map("after", NS, {"data": {"k": "v"}})
    core.delete_namespaced_config_map("after", NS)
    thread.join(timeout=10)
    assert events == [("ADDED", "before"), ("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "after")]
