"""An operator's day in the dashboard, in Chromium, against the running platform (see conftest.py): set up the owner
through the one-time link, sign in and out, see the devices, deploy a release to a fleet and watch the agent
converge, pause and resume its service, import an IFC file and see the building, map a device to a space, watch a
live chart move; then a screenshot of every page at laptop and tablet sizes.

The tests run in file order and build on each other's results where the product does (the release the
pause test acts on); each one that needs an earlier result makes it over the API when it is missing, so any test
can also run alone. Locators are accessible roles and labels, as a keyboard or screen-reader user finds them.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e_browser.conftest import (
    AGENT_NAME,
    DEMO_DEVICES,
    FLEET,
    LAPTOP,
    OWNER_EMAIL,
    OWNER_PASSWORD,
    TABLET,
    AgentDevice,
    Platform,
    Watched,
    screenshot,
    sign_in,
    wait_until,
)
from tests.twin.ifc_files import write_campus

RELEASE = "lab 1.0"
SERVICE = "web"
SPACE = "A1-01"


def demo_devices(api: httpx.Client) -> list[dict[str, Any]]:
    items = api.get("/api/v1/devices", params={"text": "sim-", "limit": 100}).json()["items"]
    return sorted((d for d in items if d["name"].startswith("sim-")), key=lambda d: d["name"])


def heading(page: Any, name: str | re.Pattern[str]) -> Any:
    return page.get_by_role("heading", level=1, name=name)


# --- first run and signing in ---------------------------------------------------------------------------------

def test_the_setup_link_creates_the_owner(page: Any, platform: Platform) -> None:
    with platform.api() as client:
        assert client.get("/api/v1/setup").json() == {"needed": True}, "run this test first, on a fresh platform"
    page.goto(f"/setup#token={platform.setup_token}")
    expect(page.get_by_role("button", name="Create owner")).to_be_visible()
    page.get_by_label("Email").fill(OWNER_EMAIL)
    page.get_by_label(re.compile(r"^Password")).fill(OWNER_PASSWORD)
    page.get_by_label("Confirm password").fill(OWNER_PASSWORD)
    screenshot(page, "setup")
    page.get_by_role("button", name="Create owner").click()

    page.wait_for_url(re.compile(r"/devices$"))
    expect(heading(page, "Devices")).to_be_visible()
    expect(page.get_by_test_id("current-user")).to_contain_text(f"{OWNER_EMAIL} · owner")
    with platform.api() as client:
        assert client.get("/api/v1/setup").json() == {"needed": False}


def test_sign_in_with_the_keyboard_stay_signed_in_and_sign_out(page: Any, platform: Platform, owner: str,
                                                                watched: Watched) -> None:
    page.goto("/devices")
    page.wait_for_url(re.compile(r"/login"))  # not signed in
    expect(heading(page, "Sign in")).to_be_visible()
    screenshot(page, "login")

    # A wrong password: the API's message is shown (its 401 is the one console error allowed here).
    watched.allow(r"status of 401")
    page.get_by_label("Email").fill(OWNER_EMAIL)
    page.get_by_label(re.compile(r"^Password")).fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("email or password is wrong")

    # Keyboard only: the email field has the focus, Tab moves on, Enter submits.
    page.get_by_label("Email").fill("")
    page.get_by_label("Email").focus()
    page.keyboard.type(OWNER_EMAIL)
    page.keyboard.press("Tab")
    expect(page.get_by_label(re.compile(r"^Password"))).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type(OWNER_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/devices$"))
    expect(page.get_by_test_id("current-user")).to_contain_text(OWNER_EMAIL)

    page.reload()  # the session survives a reload (the refresh token restores it)
    expect(heading(page, "Devices")).to_be_visible()
    expect(page.get_by_test_id("current-user")).to_contain_text(OWNER_EMAIL)

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/login"))
    page.goto("/devices")
    page.wait_for_url(re.compile(r"/login"))


# --- devices ----------------------------------------------------------------------------------------------------

def test_devices_appear_and_the_list_filters_by_text(page: Any, agent: AgentDevice, api: httpx.Client) -> None:
    demo = wait_until(lambda: len(demo_devices(api)) == DEMO_DEVICES and demo_devices(api), "the demo devices")
    sign_in(page)
    table = page.get_by_role("table", name="Devices")
    for device in [*demo, {"name": AGENT_NAME}]:
        expect(table.get_by_role("link", name=device["name"])).to_be_visible()
    screenshot(page, "devices")

    page.get_by_label(re.compile("^Search")).fill(AGENT_NAME)
    expect(table.get_by_role("link", name=AGENT_NAME)).to_be_visible()
    expect(table.get_by_role("link", name=demo[0]["name"])).to_have_count(0)

    table.get_by_role("link", name=AGENT_NAME).click()
    page.wait_for_url(re.compile(rf"/devices/{agent.uuid}$"))
    expect(heading(page, AGENT_NAME)).to_be_visible()


# --- fleets and releases ----------------------------------------------------------------------------------------

def test_a_release_made_in_the_editor_deployed_to_the_fleet_converges(page: Any, agent: AgentDevice,
                                                                       docker_engine: Any, watched: Watched) -> None:
    sign_in(page)
    page.goto("/fleets")
    expect(heading(page, "Fleets & releases")).to_be_visible()
    expect(page.get_by_role("table", name="Fleets").get_by_role("link", name=FLEET)).to_be_visible()
    screenshot(page, "fleets")

    page.get_by_role("link", name="New release").click()
    expect(heading(page, "New release")).to_be_visible()
    page.get_by_label("Release name").fill(RELEASE)
    page.get_by_role("combobox", name="Fleet").click()
    page.get_by_role("option", name=FLEET, exact=True).click()
    page.get_by_label("App name").fill("sensors")
    page.get_by_label("Service name").fill(SERVICE)
    page.get_by_label("Image").fill(docker_engine.image)
    # A port that is not a port: the API's validation message appears at the field, nothing is saved (the
    # refusal's 422 is the one console error allowed here).
    watched.allow(r"status of 422")
    page.get_by_label("Ports").fill("99999:80")
    page.get_by_role("button", name="Save release").click()
    expect(page.get_by_test_id("release-errors")).to_be_visible()
    screenshot(page, "release-editor")
    page.get_by_label("Ports").fill("")
    page.get_by_role("button", name="Save release").click()

    page.wait_for_url(re.compile(r"/fleets/releases/\d+"))
    expect(heading(page, RELEASE)).to_be_visible()
    page.get_by_role("button", name="Deploy").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("combobox", name="Fleet")).to_contain_text(FLEET)
    dialog.get_by_role("button", name="Deploy").click()
    expect(page.get_by_text("Deployed to 1 device")).to_be_visible()

    # The agent polls, starts the container and reports: the rollout view counts it as converged.
    expect(page.get_by_test_id("rollout-progress")).to_have_text("1 of 1 device converged", timeout=90_000)
    assert agent.containers().get(SERVICE) == "running"
    screenshot(page, "release")


def ensure_release_deployed(api: httpx.Client, agent: AgentDevice, image: str) -> None:
    """The previous test's result, made over the API when that test did not run."""
    deployed = api.get(f"/api/v1/devices/{agent.uuid}/target-state").json()["deployed"]
    services = [s["serviceName"] for app in (deployed.get("apps") or {}).values() for s in app["services"]]
    if SERVICE in services:
        return
    release = api.post("/api/v1/releases", json={"name": f"{RELEASE} (api)", "fleet": FLEET, "target": {"apps": {
        "1": {"appId": 1, "appName": "sensors", "services": [
            {"serviceId": 1, "serviceName": SERVICE, "config": {"image": image}}]}}}})
    assert release.status_code == 201, release.text
    r = api.post(f"/api/v1/releases/{release.json()['id']}/deploy", json={"fleet": FLEET})
    assert r.status_code == 200, r.text


def test_pause_and_resume_a_service_from_the_device_page(page: Any, agent: AgentDevice, api: httpx.Client,
                                                         docker_engine: Any) -> None:
    ensure_release_deployed(api, agent, docker_engine.image)
    wait_until(lambda: agent.containers().get(SERVICE) == "running", "the service running", 90)
    sign_in(page)
    page.goto(f"/devices/{agent.uuid}")
    expect(heading(page, AGENT_NAME)).to_be_visible()
    service = page.get_by_role("region", name=re.compile(rf"Service {SERVICE}\b"))
    expect(service.get_by_text("running").first).to_be_visible(timeout=60_000)
    screenshot(page, "device")

    service.get_by_role("button", name=re.compile("^Pause")).click()
    wait_until(lambda: agent.containers().get(SERVICE) == "paused", "the container paused", 90)
    expect(service.get_by_text("paused").first).to_be_visible(timeout=60_000)

    service.get_by_role("button", name=re.compile("^(Resume|Start)")).click()
    wait_until(lambda: agent.containers().get(SERVICE) == "running", "the container running again", 90)
    expect(service.get_by_text("running").first).to_be_visible(timeout=60_000)


# --- the digital twin -------------------------------------------------------------------------------------------

def ensure_campus_imported(api: httpx.Client, tmp_path: Path) -> None:
    if api.get("/api/v1/twin/nodes", params={"search": SPACE}).json():
        return
    path = write_campus(tmp_path / "campus.ifc")
    job = api.post("/api/v1/twin/imports", files={"file": ("campus.ifc", path.read_bytes(), "application/x-step")})
    assert job.status_code == 202, job.text
    wait_until(lambda: api.get(f"/api/v1/twin/imports/{job.json()['id']}").json()["status"] == "succeeded",
               "the IFC import", 120)


def test_an_ifc_upload_shows_its_report_the_tree_and_the_3d_graph(page: Any, owner: str, tmp_path: Path) -> None:
    path = write_campus(tmp_path / "campus.ifc")
    sign_in(page)
    page.goto("/twin")
    expect(heading(page, "Digital twin")).to_be_visible()
    page.get_by_role("button", name="Import IFC").click()
    page.get_by_label("IFC file").set_input_files(str(path))
    expect(page.get_by_text("campus.ifc")).to_be_visible()
    page.get_by_role("button", name="Upload").click()

    report = page.get_by_role("region", name=re.compile("Import report"))
    expect(report).to_be_visible(timeout=120_000)
    expect(report).to_contain_text("Space")
    screenshot(page, "twin-import")

    expect(page.get_by_test_id("graph-summary")).to_contain_text("nodes")
    tree = page.get_by_role("tree", name="Building tree")
    expect(tree.get_by_role("treeitem", name=re.compile(r"^Campus · Project"))).to_be_visible()
    # The 3D view is its own chunk, loaded now; it draws the graph on a WebGL canvas (SwiftShader here).
    expect(page.get_by_role("region", name="3D view").locator("canvas")).to_be_visible(timeout=60_000)
    screenshot(page, "twin")


def test_map_a_device_to_a_space_and_see_its_readings_there(page: Any, api: httpx.Client, tmp_path: Path) -> None:
    ensure_campus_imported(api, tmp_path)
    device = wait_until(lambda: demo_devices(api), "the demo devices")[0]
    sign_in(page)
    page.goto("/twin")
    tree = page.get_by_role("tree", name="Building tree")
    space = tree.get_by_role("treeitem", name=re.compile(rf"^{SPACE} · Space"))
    for level in ("North", "A", "A1"):  # site, building, storey: open the branch down to the space
        item = tree.get_by_role("treeitem", name=re.compile(rf"^{level} · "))
        if item.get_attribute("aria-expanded") == "false":
            item.locator(".MuiTreeItem-iconContainer").first.click()
    space.locator(".MuiTreeItem-label").first.click()
    expect(page.get_by_role("heading", name=re.compile(rf"^{SPACE}"))).to_be_visible()

    form = page.get_by_role("form", name="Map a device to a space")
    expect(form.get_by_role("combobox", name="Space or element")).to_have_value(re.compile(rf"^{SPACE} "))
    form.get_by_role("combobox", name="Device").fill(device["name"])
    page.get_by_role("option", name=device["name"]).click()
    form.get_by_role("button", name="Map device").click()
    expect(page.get_by_role("status")).to_contain_text(f"{device['name']} is now in {SPACE}")

    devices_here = page.get_by_role("list", name=f"Devices in {SPACE}")
    expect(devices_here.get_by_role("link", name=device["name"])).to_be_visible()
    expect(devices_here.get_by_text(re.compile(r"^temperature: "))).to_be_visible(timeout=30_000)
    screenshot(page, "twin-mapped")
    path = api.get(f"/api/v1/twin/devices/{device['uuid']}/path").json()
    assert SPACE in str(path)


# --- metrics ----------------------------------------------------------------------------------------------------

def test_a_live_chart_moves(page: Any, api: httpx.Client) -> None:
    devices = wait_until(lambda: demo_devices(api), "the demo devices")
    sign_in(page)
    page.goto("/telemetry")
    expect(heading(page, "Metrics")).to_be_visible()
    picker = page.get_by_role("combobox", name="Devices")
    for device in devices[:2]:  # several devices at once
        picker.fill(device["name"])
        page.get_by_role("option", name=device["name"]).click()
    metrics = page.get_by_role("combobox", name="Metrics")
    metrics.click()
    page.get_by_role("option", name=re.compile(r"^temperature\b")).click()

    chart = page.get_by_role("figure", name=re.compile(r"^Chart of temperature"))
    expect(chart).to_be_visible()
    # The demo devices publish every 5 s: readings arrive over the WebSocket and the chart's last point moves on.
    expect(chart).to_have_attribute("data-last", re.compile(r"^\d+$"), timeout=30_000)
    first = int(chart.get_attribute("data-last") or 0)
    deadline = time.monotonic() + 30
    while int(chart.get_attribute("data-last") or 0) <= first:
        assert time.monotonic() < deadline, "the live chart did not move in 30 s"
        page.wait_for_timeout(500)
    screenshot(page, "metrics")


# --- every page, at both sizes ----------------------------------------------------------------------------------

# path (with {agent}, {fleet}, {release}), the page's h1, the screenshot's name
PAGES: list[tuple[str, str | re.Pattern[str], str]] = [
    ("/devices", "Devices", "devices"),
    ("/devices/{agent}", AGENT_NAME, "device"),
    ("/fleets", "Fleets & releases", "fleets"),
    ("/fleets/{fleet}", f"Fleet {FLEET}", "fleet"),
    ("/fleets/releases/new", "New release", "release-editor"),
    ("/fleets/releases/{release}", re.compile(re.escape(RELEASE)), "release"),
    ("/telemetry", "Metrics", "metrics"),
    ("/twin", "Digital twin", "twin"),
    ("/provisioning-keys", "Provisioning keys", "provisioning-keys"),
    ("/mqtt", re.compile("^MQTT"), "mqtt"),
    ("/users", "Users", "users"),
    ("/audit", "Audit log", "audit"),
    ("/licence", re.compile("^Licen[cs]e"), "licence"),
]


@pytest.mark.parametrize("viewport", [LAPTOP, TABLET], ids=["laptop", "tablet"])
def test_every_page_renders_without_errors(new_page: Any, viewport: dict[str, int], agent: AgentDevice,
                                           api: httpx.Client, docker_engine: Any, tmp_path: Path) -> None:
    ensure_release_deployed(api, agent, docker_engine.image)
    ensure_campus_imported(api, tmp_path)
    fleet = next(f for f in api.get("/api/v1/fleets").json() if f["name"] == FLEET)
    release = api.get("/api/v1/releases", params={"fleet": fleet["id"]}).json()[0]
    page = new_page(viewport)

    page.goto("/setup")  # no token and an owner exists: the page says so
    expect(heading(page, "Already set up")).to_be_visible()
    screenshot(page, "setup-done")
    page.goto("/login")
    expect(heading(page, "Sign in")).to_be_visible()
    screenshot(page, "login")
    sign_in(page)
    for path, title, name in PAGES:
        page.goto(path.format(agent=agent.uuid, fleet=fleet["id"], release=release["id"]))
        expect(heading(page, title)).to_be_visible()
        # Nothing still loading (every spinner is a status ending in "…"), then the picture.
        expect(page.get_by_role("status").filter(has_text="…")).to_have_count(0, timeout=30_000)
        screenshot(page, name)
    if viewport == TABLET:  # the navigation is a drawer behind a button there
        page.get_by_role("button", name="Open navigation").click()
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Devices").click()
        expect(heading(page, "Devices")).to_be_visible()
