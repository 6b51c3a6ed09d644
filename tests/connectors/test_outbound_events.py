"""Outbound events end to end below the API: the signature and its check, the outbox
(who gets what), and delivery to a real local receiver that fails, times out and
recovers — in event-time order, at least once, with a log, backoff and auto-disabling."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.events.deliverer import Deliverer
from connectors.events.model import check_event_types, check_url, shown_url
from connectors.events.outbox import EventStore, emit
from connectors.events.signing import SignatureError, sign_header, signature, verify
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.alerts import AlertOwner, AlertStore
from connectors.metadata.audit_events import AuditEvents, parse_filter
from connectors.notify.alert import AlertSpec
from connectors.notify.stored import evaluate_stored
from connectors.secrets import SecretBox, load_secret_key
from connectors.servers import ServerUrls
from connectors.settings import Settings
from connectors.warehouse.service import open_query_service
from tests.conftest import make_settings
from tests.notify_receivers import Recorder, SMTPReceiver, recorder_fixture, smtp_fixture  # noqa: F401
from tests.people import make_member, unique_email

SECRET = "whsec_test-secret"

# --- signing (pure) ---------------------------------------------------------------------


def test_a_signed_body_verifies_and_returns_its_timestamp() -> None:
    body = b'{"id":"e1","type":"ping"}'
    header = sign_header(SECRET, body, timestamp=1_700_000_000)
    assert header == f"t=1700000000,v1={signature(SECRET, 1_700_000_000, body)}"
    assert verify(SECRET, header, body, tolerance=300, now=1_700_000_100) == 1_700_000_000


@pytest.mark.parametrize(
    ("header", "body", "now", "reason"),
    [
        (None, b"{}", 1000, "no Sqlbook-Signature"),
        ("v1=abc", b"{}", 1000, "needs t="),
        ("t=abc,v1=00", b"{}", 1000, "not a number"),
        # a captured request replayed later: its timestamp is old
        (sign_header(SECRET, b"{}", 1000), b"{}", 1000 + 301, "possible replay"),
        # or stamped ahead of the receiver's clock by more than the tolerance
        (sign_header(SECRET, b"{}", 2000), b"{}", 1000, "possible replay"),
        # the body changed
        (sign_header(SECRET, b"{}", 1000), b'{"x":1}', 1000, "does not match"),
        # signed with another secret
        (sign_header("whsec_other", b"{}", 1000), b"{}", 1000, "does not match"),
        # the timestamp was changed to look fresh: the signature covers it
        (
            "t=5000,v1=" + signature(SECRET, 1000, b"{}"),
            b"{}",
            5000,
            "does not match",
        ),
    ],
)
def test_verify_refuses(header: str | None, body: bytes, now: float, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify(SECRET, header, body, tolerance=300, now=now)


def test_verify_takes_any_of_several_signatures() -> None:
    body = b"{}"
    good = signature(SECRET, 1000, body)
    assert verify(SECRET, f"t=1000,v1=deadbeef,v1={good}", body, now=1000) == 1000


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ([], "at least one"),
        (["alert.triggered", "nope"], r"event_types\[1\]: unknown event type 'nope'"),
    ],
)
def test_event_types_are_checked(given: list[str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_event_types(given)
    assert check_event_types(["*", "query.finished", "*"]) == ["*", "query.finished"]


@pytest.mark.parametrize(
    "url", ["ftp://x.example/h", "http://", "https://u:p@x.example/", "http://x.example/ a"]
)
def test_urls_are_checked_without_repeating_them(url: str) -> None:
    with pytest.raises(ValueError, match="^url: ") as err:
        check_url(url)
    assert url not in str(err.value)


def test_the_shown_url_masks_path_and_query() -> None:
    assert (
        shown_url("https://hooks.example.com:8443/t/SECRET?k=1")
        == "https://hooks.example.com:8443/…"
    )
    assert shown_url("http://10.0.0.1") == "http://10.0.0.1/"


# --- the outbox and delivery --------------------------------------------------------------


@pytest.fixture
def settings(servers: ServerUrls, sqlbook_home: Path, smtp: SMTPReceiver) -> Settings:
    return make_settings(
        servers,
        sqlbook_home,
        outbound_allow_private=True,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_security="none",
    )


@pytest.fixture
def store(metadata: MetadataStore, settings: Settings) -> EventStore:
    return EventStore(metadata, SecretBox(load_secret_key(settings)))


def _subscribe(store: EventStore, ws: NewWorkspace, url: str, types: list[str], **kw: Any) -> Any:
    return store.create(
        ws.workspace_id,
        kw.get("name", f"sub-{uuid.uuid4().hex[:6]}"),
        url,
        kw.get("secret", SECRET),
        types,
        kw.get("enabled", True),
        "test",
    )


def _emit(
    metadata: MetadataStore, ws: NewWorkspace, event_type: str, data: dict[str, Any], at=None
):
    with metadata.connection() as conn:
        return emit(conn, ws.workspace_id, event_type, data, occurred_at=at)


def test_an_event_goes_to_the_subscriptions_that_want_it(
    metadata: MetadataStore, store: EventStore, workspace: NewWorkspace, recorder: Recorder
) -> None:
    alerts = _subscribe(store, workspace, recorder.url, ["alert.triggered"])
    everything = _subscribe(store, workspace, recorder.url, ["*"])
    queries = _subscribe(store, workspace, recorder.url, ["query.finished"])
    off = _subscribe(store, workspace, recorder.url, ["*"], enabled=False)
    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:8]}")
    theirs = _subscribe(store, other, recorder.url, ["*"])

    triggered = _emit(metadata, workspace, "alert.triggered", {"alert": {"id": 1}})
    assert triggered is not None and sorted(triggered.subscriptions) == sorted(
        [alerts.id, everything.id]
    )
    finished = _emit(metadata, workspace, "query.finished", {"x": 1})
    assert finished is not None and finished.subscriptions == [queries.id]  # '*' leaves it out
    # nobody wants it: nothing is written at all
    assert _emit(metadata, workspace, "ingestion.run_failed", {}) is not None  # '*' does
    store.delete(workspace.workspace_id, everything.id)
    assert _emit(metadata, workspace, "dashboard.updated", {}) is None
    counts = store.pending_counts(workspace.workspace_id)
    assert off.id not in counts and theirs.id not in counts


def test_the_outbox_write_rolls_back_with_the_change(
    metadata: MetadataStore, store: EventStore, workspace: NewWorkspace, recorder: Recorder
) -> None:
    sub = _subscribe(store, workspace, recorder.url, ["insight.updated"])
    with pytest.raises(RuntimeError), metadata.connection() as conn, conn.transaction():
        assert emit(conn, workspace.workspace_id, "insight.updated", {"id": 1}) is not None
        raise RuntimeError("the change failed")
    assert store.pending_counts(workspace.workspace_id).get(sub.id) is None


def test_deliveries_are_signed_ordered_and_retried_until_the_receiver_recovers(
    metadata: MetadataStore,
    store: EventStore,
    settings: Settings,
    workspace: NewWorkspace,
    recorder: Recorder,
) -> None:
    sub = _subscribe(store, workspace, recorder.url + "/hook", ["*"])
    t0 = datetime.now(UTC)
    # emitted out of order: delivered by event time
    third = _emit(metadata, workspace, "insight.updated", {"n": 3}, t0 + timedelta(seconds=2))
    first = _emit(metadata, workspace, "alert.triggered", {"n": 1}, t0)
    second = _emit(metadata, workspace, "alert.resolved", {"n": 2}, t0 + timedelta(seconds=1))
    assert first and second and third

    deliverer = Deliverer(store, settings, backoff_s=0.01, max_backoff_s=0.05)
    recorder.respond(500, times=1, path="/hook")
    recorder.respond(429, times=1, path="/hook", headers={"Retry-After": "0"})
    report = deliverer.run(workspace_id=workspace.workspace_id, workers=1)
    assert (report.delivered, report.failed) == (0, 1)  # the head failed: nothing overtakes it
    got = recorder.wait_for(1)
    assert [json.loads(r.body)["id"] for r in got] == [first.event_id]

    def settle() -> None:
        for _ in range(50):
            deliverer.run(workspace_id=workspace.workspace_id, workers=1)
            if not store.pending_counts(workspace.workspace_id):
                return
            threading.Event().wait(0.02)

    settle()
    got = recorder.wait_for(5)
    ids = [json.loads(r.body)["id"] for r in got]
    # at least once, in order: the head again until accepted, then the others
    assert ids == [first.event_id] * 3 + [second.event_id, third.event_id]
    for r in got:
        assert verify(SECRET, r.header("Sqlbook-Signature"), r.body) > 0
        assert r.header("Sqlbook-Event-Id") == json.loads(r.body)["id"]
        assert r.header("Sqlbook-Event-Type") == json.loads(r.body)["type"]
        assert json.loads(r.body)["workspace_id"] == workspace.workspace_id
    assert [r.header("Sqlbook-Delivery-Attempt") for r in got[:3]] == ["1", "2", "3"]
    assert json.loads(got[3].body)["data"] == {"n": 2}

    log = store.deliveries(sub.id)
    assert [d["status"] for d in log] == ["delivered"] * 3
    head = next(d for d in log if d["event_id"] == first.event_id)
    assert [(a["attempt"], a["ok"], a["status_code"]) for a in head["attempt_log"]] == [
        (1, False, 500),
        (2, False, 429),
        (3, True, 200),
    ]
    assert head["attempt_log"][0]["error"] == "HTTP 500 (not a 2xx answer)"
    assert store.get(workspace.workspace_id, sub.id).consecutive_failures == 0  # type: ignore[union-attr]


def test_a_receiver_that_times_out_is_retried(
    metadata: MetadataStore,
    store: EventStore,
    settings: Settings,
    workspace: NewWorkspace,
    recorder: Recorder,
) -> None:
    sub = _subscribe(store, workspace, recorder.url + "/slow", ["alert.error"])
    event = _emit(metadata, workspace, "alert.error", {"alert": {"id": 9}})
    assert event is not None
    hold = recorder.hold("/slow")
    deliverer = Deliverer(store, settings, timeout_s=0.3, backoff_s=0.01)
    assert deliverer.run(workspace_id=workspace.workspace_id, workers=1).failed == 1
    [pending] = store.deliveries(sub.id)
    assert pending["status"] == "pending"
    assert pending["last_error"] == "timed out after 0.3 s"
    assert pending["next_attempt_at"] > datetime.now(UTC) - timedelta(seconds=1)
    hold.release.set()
    del recorder._holds["/slow"]  # the receiver answers at once from now on
    threading.Event().wait(0.05)
    deliverer.run(workspace_id=workspace.workspace_id, workers=1)
    [done] = store.deliveries(sub.id)
    assert (done["status"], done["attempts"]) == ("delivered", 2)


def test_repeated_failures_disable_the_subscription_and_tell_the_admins(
    metadata: MetadataStore,
    store: EventStore,
    settings: Settings,
    workspace: NewWorkspace,
    recorder: Recorder,
    smtp: SMTPReceiver,
) -> None:
    admin_email = unique_email("admin")
    make_member(metadata, workspace, admin_email, "admin")
    make_member(metadata, workspace, unique_email("editor"), "editor")
    sub = _subscribe(store, workspace, recorder.url + "/down", ["*"], name="crm hook")
    t0 = datetime.now(UTC)
    events = [
        _emit(
            metadata,
            workspace,
            "dashboard.updated",
            {"n": i},
            t0 + timedelta(seconds=i),
        )
        for i in range(2)
    ]
    recorder.respond(503, times=3, path="/down")
    deliverer = Deliverer(store, settings, backoff_s=0.0, disable_after=3)
    for _ in range(3):
        deliverer.run(workspace_id=workspace.workspace_id, workers=1)
    off = store.get(workspace.workspace_id, sub.id)
    assert off is not None and not off.enabled
    assert off.disabled_reason is not None and "3 failed deliveries in a row" in off.disabled_reason
    assert "HTTP 503" in off.disabled_reason
    # disabled: nothing more is tried, and new events are not queued for it
    deliverer.run(workspace_id=workspace.workspace_id, workers=1)
    assert len(recorder.to("/down")) == 3
    assert _emit(metadata, workspace, "insight.updated", {}) is None

    [mail] = smtp.wait_for(1)
    assert mail.rcpt_tos == [admin_email]  # admins only
    assert "crm hook" in mail.message["Subject"]
    text = mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "failed 3 deliveries in a row" in text and "/settings/events" in text
    assert "/down" not in text  # the URL's path is never shown
    audit = AuditEvents(metadata).search(
        workspace.workspace_id, parse_filter(action="event_subscription.disabled"), 10
    )
    assert [(e["object_id"], e["result"]) for e in audit] == [(str(sub.id), "error")]

    # nothing was lost: enabled again, both events go out in order
    store.update(workspace.workspace_id, sub.id, enabled=True)
    deliverer.run(workspace_id=workspace.workspace_id, workers=1)
    delivered = [json.loads(r.body)["id"] for r in recorder.to("/down")[3:]]
    assert delivered == [e.event_id for e in events if e is not None]


def test_the_outbound_policy_refuses_private_targets(
    metadata: MetadataStore,
    store: EventStore,
    servers: ServerUrls,
    sqlbook_home: Path,
    workspace: NewWorkspace,
    recorder: Recorder,
) -> None:
    sub = _subscribe(store, workspace, recorder.url + "/private?token=abc123", ["*"])
    _emit(metadata, workspace, "insight.updated", {})
    strict = make_settings(servers, sqlbook_home, outbound_allow_private=False)
    Deliverer(store, strict, backoff_s=0.0).run(workspace_id=workspace.workspace_id, workers=1)
    [d] = store.deliveries(sub.id)
    assert d["status"] == "pending"
    assert d["last_error"].startswith("refused by the outbound policy: ")
    assert "loopback" in d["last_error"] and "abc123" not in d["last_error"]
    assert recorder.requests == []


def test_two_deliverers_never_send_to_one_subscription_at_once(
    metadata: MetadataStore,
    store: EventStore,
    settings: Settings,
    workspace: NewWorkspace,
    recorder: Recorder,
) -> None:
    _subscribe(store, workspace, recorder.url + "/a", ["insight.updated"])
    _subscribe(store, workspace, recorder.url + "/b", ["insight.updated"])
    t0 = datetime.now(UTC)
    sent = [
        _emit(metadata, workspace, "insight.updated", {"n": i}, t0 + timedelta(milliseconds=i))
        for i in range(40)
    ]
    deliverers = [Deliverer(store, settings) for _ in range(3)]
    threads = [
        threading.Thread(
            target=d.run, kwargs={"workspace_id": workspace.workspace_id, "workers": 2}
        )
        for d in deliverers
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = [e.event_id for e in sent if e is not None]
    for path in ("/a", "/b"):
        assert [json.loads(r.body)["id"] for r in recorder.to(path)] == expected


def test_a_subscription_deleted_during_a_delivery_ends_it_quietly(
    metadata: MetadataStore,
    store: EventStore,
    settings: Settings,
    workspace: NewWorkspace,
    recorder: Recorder,
) -> None:
    sub = _subscribe(store, workspace, recorder.url + "/gone", ["insight.updated"])
    _emit(metadata, workspace, "insight.updated", {"n": 1})
    hold = recorder.hold("/gone")
    reports = []
    runner = threading.Thread(
        target=lambda: reports.append(
            Deliverer(store, settings).run(workspace_id=workspace.workspace_id, workers=1)
        )
    )
    runner.start()
    assert hold.arrived.wait(10)
    assert store.delete(workspace.workspace_id, sub.id)
    hold.release.set()
    runner.join(10)
    [report] = reports  # no exception: the run ended
    assert (report.delivered, report.failed) == (0, 0)
    assert store.get(workspace.workspace_id, sub.id) is None


def test_an_alert_whose_owner_may_no_longer_query_sends_alert_error(
    metadata: MetadataStore,
    store: EventStore,
    settings: Settings,
    workspace: NewWorkspace,
    recorder: Recorder,
) -> None:
    viewer, _, _ = make_member(metadata, workspace, unique_email("viewer"), "viewer")
    sub = _subscribe(store, workspace, recorder.url + "/alerts", ["alert.error"])
    alerts = AlertStore(metadata, SecretBox(load_secret_key(settings)))
    spec = AlertSpec.model_validate(
        {
            "name": "owned by a viewer",
            "sql": "select 1 as n",
            "rule": {"type": "threshold", "column": "n", "op": ">=", "value": 1},
            "schedule": {"every": "10m"},
            "channels": ["hook"],
        }
    ).model_dump(mode="json")
    alert = alerts.create(
        workspace.workspace_id,
        spec,
        {"hook": {"type": "webhook", "url": recorder.url + "/channel"}},
        True,
        None,
        AlertOwner(user_id=viewer),
    )
    queries = open_query_service(settings, metadata)
    try:
        evaluation = evaluate_stored(alert, store=alerts, queries=queries, settings=settings)
    finally:
        queries.close()
    assert evaluation.state == "error"
    [got] = [json.loads(r.body) for r in recorder.wait_for(1, path="/alerts")]
    assert got["type"] == "alert.error"
    assert got["data"]["alert"] == {
        "id": alert.id,
        "name": "owned by a viewer",
        "url": got["data"]["alert"]["url"],
    }
    assert got["data"]["error"] == "the alert's owner can no longer run its query"
    assert recorder.to("/channel") == []  # nothing sent to the alert's channels
    assert store.deliveries(sub.id)[0]["status"] == "delivered"
