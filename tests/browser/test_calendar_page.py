"""The central calendar page in a real Chromium against a real ``calhub serve``: log in, see the
agents' columns, move, resize, reassign, book, approve, live updates, refusals, XSS, CSRF.

Every check waits for what a user sees (``expect(...)``), never for a fixed time. The test week
is the one of Monday 2030-01-07 (UTC, the browser's zone here); each test uses its own request
ids and free slots, so that one server serves the whole module.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from hub.model import Agent, Appointment, CalendarState, Kind, PushState
from hub.store.sqlite import SqliteStore
from tests.browser.support import Server, serve, write_config

WEEK = "2030-01-07"  # a Monday
FIRST_HOUR, LAST_HOUR = 7, 18  # the page shows day_start - 1 h .. day_end + 1 h
AGENTS = ("alice", "bob", "carol")
ALICE_RGB = "rgb(58, 135, 173)"  # #3a87ad
PLANNED_RGB = "rgb(240, 173, 78)"  # #f0ad4e
OFF_RGBA = "rgba(120, 120, 120, 0.16)"  # calendar.css --off

CONFIG = """
[calendar]
day_start = "08:00"
day_end = "17:00"
slot = "30m"

[[agents]]
id = "alice"
name = "Alice Smith"
colour = "#3a87ad"

[[agents]]
id = "bob"
name = "Bob <b>Jones</b>"
colour = "#8e44ad"
create_appointments = "ask"
"""


def at(day: int, hour: int, minute: int = 0) -> str:
    """An instant of the test week: ``day`` 0 is Monday."""
    return f"2030-01-{7 + day:02d}T{hour:02d}:{minute:02d}:00Z"


async def _seed(db: Path) -> None:
    # Before the server starts: an agent whose sync needs attention, and an imported private
    # event (what sync stores for one: busy, "Data unavailable", read-only).
    async with SqliteStore(db) as store:
        async with store.transaction("api") as tx:
            await tx.put_agent(Agent(id="alice", name="Alice Smith", colour="#3a87ad"))
            await tx.put_agent(Agent(id="carol", name="Carol Diaz", colour="#27ae60"))
            await tx.put_appointment(
                Appointment(
                    id="ext-private",
                    agent_id="alice",
                    kind=Kind.EXTERNAL,
                    start=datetime(2030, 1, 11, 9, tzinfo=UTC),
                    end=datetime(2030, 1, 11, 10, tzinfo=UTC),
                    subject="Data unavailable",
                    private=True,
                    push_state=PushState.EXTERNAL,
                )
            )
        async with store.transaction("sync:o365") as tx:
            await tx.put_calendar_state(
                CalendarState(
                    agent_id="carol",
                    account="o365",
                    last_result="needs-attention",
                    last_error="auth refused: the consent was revoked",
                    needs_attention=True,
                )
            )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("calendar-page")
    # In a thread of its own: Playwright's sync API keeps an event loop in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(_seed(directory / "hub.db"))).result()
    with serve(directory, write_config(directory, CONFIG)) as running:
        yield running


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    """A logged-in page (its session made as the login form makes one)."""
    context = browser.new_context(
        viewport={"width": 1400, "height": 900}, timezone_id="UTC", locale="en-US"
    )
    context.add_cookies(
        [
            {
                "name": "calhub_session",
                "value": server.login_cookie(),
                "url": server.url,
                "httpOnly": True,
                "sameSite": "Strict",
            }
        ]
    )
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("dialog", lambda dialog: problems.append(f"script dialog: {dialog.message}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console: {msg.text}")
            if "Content Security Policy" in msg.text
            else None
        ),
    )
    yield page
    context.close()
    assert not problems  # no script ran from user text, no CSP violation, no JS error


def open_week(page: Page, server: Server, **params: str) -> None:
    query = {"date": WEEK, "view": "agents", "days": "7", "agents": ",".join(AGENTS), **params}
    page.goto(f"{server.url}/calendar?" + "&".join(f"{k}={v}" for k, v in query.items()))
    expect(page.locator("#live")).to_have_text("live")  # loaded, and the stream is open


def book(server: Server, request: str, agents: list[str], start: str, end: str, **extra: Any):
    body = {"subject": extra.pop("subject", f"Visit {request}"), "start": start, "end": end}
    reply = server.ok("POST", f"/requests/{request}/appointments", {**body, "agents": agents})
    return reply["appointments"]


def entry(page: Page, text: str) -> Locator:
    return page.locator(".ec-event", has_text=text)


def cell(page: Page, agent: str, day: int, agents: tuple[str, ...] = AGENTS) -> dict[str, float]:
    """The body cell of ``agent`` on ``day`` (0 = Monday) in the agents-side-by-side week."""
    box = page.locator(".ec-body .ec-grid > .ec-day").nth(agents.index(agent) * 7 + day)
    found = box.bounding_box()
    assert found is not None
    return found


def y_of(box: dict[str, float], hour: float) -> float:
    return box["y"] + (hour - FIRST_HOUR) / (LAST_HOUR - FIRST_HOUR) * box["height"]


def hour_height(page: Page) -> float:
    box = cell(page, "alice", 0)
    return box["height"] / (LAST_HOUR - FIRST_HOUR)


def drag(page: Page, handle: Locator, dx: float, dy: float) -> None:
    box = handle.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + min(6, box["height"] / 2)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 3, y + 3, steps=2)
    page.mouse.move(x + dx, y + dy, steps=12)
    page.mouse.up()


def badge(event: Locator) -> str:
    """The badge the stylesheet draws on an entry (CSS ``content``; "none" without one)."""
    body = event.locator(".ec-event-body")
    return body.evaluate("el => getComputedStyle(el, '::after').content")


def status(page: Page) -> Locator:
    return page.locator("#status")


# --------------------------------------------------------------------------- tests


def test_login_form_session_cookie_and_logout(browser: Browser, server: Server) -> None:
    context = browser.new_context(timezone_id="UTC", locale="en-US")
    page = context.new_page()
    page.goto(f"{server.url}/calendar?date={WEEK}")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#login-token", "not-the-token")
    page.click("text=Log in")
    expect(page.locator("#login-error")).to_have_text("wrong admin token")
    page.fill("#login-token", "browser-test-token")
    page.click("text=Log in")
    expect(page.locator(".ec-col-group").first).to_contain_text("Alice Smith")
    (cookie,) = context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"], cookie["secure"]) == (
        "calhub_session",
        True,
        "Strict",
        False,  # plain http and no https public_url
    )
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    # The old cookie is dead on the server, not just forgotten by this browser.
    stale = server.call(
        "GET",
        "/calendar/session",
        token=None,
        headers={"Cookie": f"calhub_session={cookie['value']}"},
    )
    assert stale.status == 401
    context.close()


def test_week_shows_columns_colours_kinds_and_attention(page: Page, server: Server) -> None:
    (mine,) = book(server, "cols-1", ["alice"], at(0, 9), at(0, 10), subject="Colours")
    server.ok("PUT", "/requests/cols-2/planned", {"agents": ["bob"], "start": at(0, 13)})
    ranges: list[str] = []
    page.on(
        "request", lambda r: ranges.append(r.url) if "/calendar/entries?from" in r.url else None
    )
    open_week(page, server)
    headers = page.locator(".ec-col-group")
    expect(headers).to_have_count(3)
    expect(headers.nth(0)).to_have_text("Alice Smith")
    expect(headers.nth(1)).to_have_text("Bob <b>Jones</b>")  # a name is text, never markup
    expect(headers.nth(2)).to_contain_text("Carol Diaz")
    expect(headers.nth(2).locator(".attention")).to_have_text("\u26a0 needs attention")
    expect(headers.nth(0).locator(".attention")).to_have_count(0)
    expect(entry(page, "Colours")).to_have_css("background-color", ALICE_RGB)
    expect(entry(page, "[#cols-2]")).to_have_css("background-color", PLANNED_RGB)
    # One request loaded the week for every agent, sent before the grid was built.
    assert len(ranges) == 1 and "agents=alice%2Cbob%2Ccarol" in ranges[0]
    # Non-working time is shaded: the weekend whole, working days before 08:00, after 17:00.
    days = page.locator(".ec-body .ec-grid > .ec-day")
    expect(days.nth(5)).to_have_css("background-color", OFF_RGBA)  # alice's Saturday
    expect(days.nth(4)).to_have_css("background-color", "rgb(255, 255, 255)")  # her Friday
    shade = days.nth(4).evaluate("el => getComputedStyle(el).backgroundImage")
    hours = page.locator("#ec").evaluate(
        "el => [el.style.getPropertyValue('--work-start'), el.style.getPropertyValue('--work-end')]"
    )
    assert shade.startswith("linear-gradient") and hours == [f"{100 / 11}%", f"{1000 / 11}%"]

    # The imported private event: a busy block without content, which cannot be dragged.
    private = entry(page, "Data unavailable")
    assert badge(private) == '"busy"'
    expect(private).not_to_have_class(re.compile(r"\bec-draggable\b"))
    drag(page, private, 0, 2 * hour_height(page))
    expect(status(page)).to_have_text("")  # nothing was even tried
    assert server.ok("GET", "/appointments/ext-private")["start"] == "2030-01-11T09:00:00Z"
    assert mine["agent"] == "alice"


def test_drag_two_hours_later_and_to_another_day(page: Page, server: Server) -> None:
    (appt,) = book(server, "drag-1", ["alice"], at(1, 9), at(1, 10), subject="Drag me")
    open_week(page, server)
    box = cell(page, "alice", 1)
    drag(page, entry(page, "Drag me"), box["width"], 2 * hour_height(page))
    expect(status(page)).to_have_text("Moved: [#drag-1] Drag me")
    moved = server.ok("GET", f"/appointments/{appt['id']}")
    assert (moved["start"], moved["end"]) == (at(2, 11), at(2, 12))
    assert moved["version"] == appt["version"] + 1


def test_drag_the_bottom_edge_to_resize(page: Page, server: Server) -> None:
    (appt,) = book(server, "resize-1", ["alice"], at(3, 13), at(3, 14), subject="Longer")
    open_week(page, server)
    event = entry(page, "Longer")
    event.hover()
    drag(page, event.locator(".ec-resizer"), 0, hour_height(page))
    expect(status(page)).to_have_text("Resized: [#resize-1] Longer")
    resized = server.ok("GET", f"/appointments/{appt['id']}")
    assert (resized["start"], resized["end"]) == (at(3, 13), at(3, 15))


def test_drag_to_another_agents_column_reassigns(page: Page, server: Server) -> None:
    (appt,) = book(server, "move-1", ["alice"], at(4, 14), at(4, 15), subject="Hand over")
    open_week(page, server)
    dx = cell(page, "carol", 4)["x"] - cell(page, "alice", 4)["x"]
    drag(page, entry(page, "Hand over"), dx, 0)
    expect(status(page)).to_have_text("Moved: [#move-1] Hand over")
    assert server.call("GET", f"/appointments/{appt['id']}").status == 404  # nothing to sync
    (now,) = server.ok("GET", "/requests/move-1/appointments")
    assert (now["agent"], now["start"], now["end"]) == ("carol", at(4, 14), at(4, 15))
    # The entry is drawn in carol's column now.
    carol = cell(page, "carol", 4)
    box = entry(page, "Hand over").bounding_box()
    assert box is not None and carol["x"] <= box["x"] < carol["x"] + carol["width"]


def test_select_a_range_to_book(page: Page, server: Server) -> None:
    open_week(page, server)
    box = cell(page, "carol", 2)
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, y_of(box, 15.2))
    page.mouse.down()
    page.mouse.move(x, y_of(box, 15.6), steps=4)
    page.mouse.move(x, y_of(box, 16.8), steps=8)
    page.mouse.up()
    dialog = page.locator("#book")
    expect(dialog).to_be_visible()
    expect(page.locator("#book-agent")).to_have_value("carol")
    page.fill("#book-request", "sel-1")
    page.fill("#book-subject", "Selected")
    page.fill("#book-note", "bring the cable")
    page.check("#book-private")
    page.click("#book-submit")
    expect(dialog).to_be_hidden()
    expect(entry(page, "[#sel-1] Selected")).to_be_visible()
    (made,) = server.ok("GET", "/requests/sel-1/appointments")
    assert (made["agent"], made["start"], made["end"]) == ("carol", at(2, 15), at(2, 17))
    assert (made["note"], made["private"], made["kind"]) == ("bring the cable", True, "manual")


def test_click_for_details_and_approve_a_pending_one(page: Page, server: Server) -> None:
    (appt,) = book(server, "ask-1", ["bob"], at(0, 15), at(0, 16), subject="Needs a yes")
    assert appt["push_state"] == "pending"  # bob's policy is "ask"
    open_week(page, server)
    event = entry(page, "Needs a yes")
    expect(event).to_have_class(re.compile(r"\bstate-pending\b"))
    assert badge(event) == '"awaiting approval"'
    event.click()
    details = page.locator("#details")
    expect(details).to_be_visible()
    expect(page.locator("#details-list")).to_contain_text("waiting for approval")
    expect(page.locator("#details-list")).to_contain_text("ask-1")
    page.click("#approve")
    expect(details).to_be_hidden()
    expect(event).not_to_have_class(re.compile(r"\bstate-pending\b"))
    assert badge(event) == "none"
    assert server.ok("GET", f"/appointments/{appt['id']}")["push_state"] == "sync"


def test_cancel_from_the_details(page: Page, server: Server) -> None:
    book(server, "cancel-1", ["carol"], at(3, 9), at(3, 10), subject="Call off")
    open_week(page, server)
    entry(page, "Call off").click()
    page.click("#cancel-appointment")
    expect(entry(page, "Call off")).to_have_count(0)
    assert server.ok("GET", "/requests/cancel-1/appointments") == []


def test_a_change_made_through_the_api_shows_up_live(page: Page, server: Server) -> None:
    open_week(page, server)
    (appt,) = book(server, "live-1", ["alice"], at(2, 8), at(2, 9), subject="Live one")
    expect(entry(page, "Live one")).to_contain_text("8:00 - 9:00 AM".replace("-", "\u2013"))
    server.ok("PATCH", f"/appointments/{appt['id']}", {"start": at(2, 14)})
    expect(entry(page, "Live one")).to_contain_text("2:00 \u2013 3:00 PM")
    server.ok("DELETE", f"/appointments/{appt['id']}")
    expect(entry(page, "Live one")).to_have_count(0)


def test_a_refused_move_reverts_and_says_why(page: Page, server: Server) -> None:
    book(server, "refuse-1", ["alice", "carol"], at(1, 15), at(1, 16), subject="Pair")
    open_week(page, server)
    alice_entry = entry(page, "Pair").and_(page.locator("[data-agent=alice]"))
    before = alice_entry.bounding_box()
    assert before is not None
    dx = cell(page, "carol", 1)["x"] - cell(page, "alice", 1)["x"]
    drag(page, alice_entry, dx, 0)
    expect(status(page)).to_have_text(
        "Not moved: agent 'carol' already has an entry of this booking"
    )
    expect(entry(page, "Pair")).to_have_count(2)
    after = alice_entry.bounding_box()
    assert after is not None and abs(after["x"] - before["x"]) < 2  # back in alice's column
    agents = sorted(a["agent"] for a in server.ok("GET", "/requests/refuse-1/appointments"))
    assert agents == ["alice", "carol"]


def test_a_subject_with_markup_renders_as_text(page: Page, server: Server) -> None:
    evil = "<img src=x onerror=alert(1)>"
    book(server, "xss-1", ["carol"], at(4, 9), at(4, 10), subject=evil)
    open_week(page, server)
    event = entry(page, "onerror")
    expect(event.locator(".ec-event-title")).to_have_text(f"[#xss-1] {evil}")
    expect(page.locator("#ec img")).to_have_count(0)
    event.click()
    expect(page.locator("#details-title")).to_have_text(f"[#xss-1] {evil}")
    expect(page.locator("#details img")).to_have_count(0)
    # The page fixture fails the test had any alert() run.


def test_cross_site_posts_are_refused(page: Page, server: Server) -> None:
    # Another site's page that posts a form to the hub at once, as an attacker's would.
    attacker = "http://attacker.test/"
    form = (
        f'<form method="post" action="{server.url}/requests/evil-1/appointments">'
        '<input name="subject" value="x"></form><script>document.forms[0].submit()</script>'
    )
    page.route(attacker, lambda route: route.fulfill(content_type="text/html", body=form))
    page.goto(attacker)
    expect(page.locator("body")).to_contain_text("cross-site request refused")
    assert server.call("GET", "/requests/evil-1/appointments").status == 404

    # The page's own origin, but a request without the session's CSRF token.
    (appt,) = book(server, "csrf-1", ["carol"], at(0, 11), at(0, 12))
    open_week(page, server)
    refused = page.evaluate(
        "id => fetch('/appointments/' + id, {method: 'DELETE'}).then(r => r.json())", appt["id"]
    )
    assert refused == {"error": "missing or wrong X-CSRF-Token header"}
    assert server.ok("GET", f"/appointments/{appt['id']}")["deleted"] is False


def test_group_month_list_views_and_the_controls(page: Page, server: Server) -> None:
    book(server, "views-1", ["bob"], at(2, 10), at(2, 11), subject="Everywhere")
    open_week(page, server)
    expect(page.locator(".ec-body .ec-grid > .ec-day")).to_have_count(21)
    page.locator("#agent-chooser summary").click()
    page.locator("#agent-list input[value=bob]").uncheck()
    expect(page.locator(".ec-col-group")).to_have_count(2)
    expect(entry(page, "Everywhere")).to_have_count(0)
    page.locator("#agent-list input[value=bob]").check()
    page.select_option("#days", "3")
    expect(page.locator(".ec-body .ec-grid > .ec-day")).to_have_count(9)
    page.select_option("#slot", "15")
    expect(page.locator(".ec-body .ec-sidebar .ec-slot")).to_have_count(22)  # 11 h, hourly labels
    page.fill("#hour-from", "09:00")
    page.locator("#hour-from").dispatch_event("change")
    expect(page.locator(".ec-body .ec-sidebar .ec-slot")).to_have_count(18)
    page.select_option("#days", "7")
    page.select_option("#view", "group")
    expect(page.locator(".ec-col-group")).to_have_count(0)  # one calendar for everyone
    expect(entry(page, "Everywhere").locator(".who")).to_have_text("Bob <b>Jones</b>")
    page.select_option("#view", "month")
    expect(page.locator(".ec-month-view")).to_be_visible()
    page.select_option("#view", "list")
    expect(page.locator(".ec-list")).to_contain_text("Everywhere")
