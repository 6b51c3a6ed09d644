"""Real local receivers for notification tests: an HTTP server that records requests (and
plays Slack's Web API), an SMTP server (aiosmtpd), and pytest fixtures for both.

Use the fixtures `recorder` and `smtp` by importing their functions into a test module::

    from tests.notify_receivers import recorder_fixture, smtp_fixture  # noqa: F401
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

WAIT_S = 10.0  # how long helpers wait for something that should happen at once


# --- HTTP ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # names lower-cased
    body: bytes
    json: Any  # the parsed body when it is JSON, else None
    form: dict[str, str] | None  # the parsed body when it is form-encoded

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class SlackFile:
    """A file uploaded through the files upload v2 dance."""

    file_id: str
    filename: str
    length: int  # as announced to files.getUploadURLExternal
    data: bytes = b""
    uploaded: bool = False
    title: str | None = None
    channel_id: str | None = None  # once shared by files.completeUploadExternal
    initial_comment: str | None = None
    alt_txt: str | None = None


@dataclass
class _Scripted:
    status: int
    body: bytes
    headers: dict[str, str]
    path: str | None


@dataclass
class _Hold:
    path: str
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)


class Recorder:
    """An HTTP server on 127.0.0.1 that records every request.

    By default it answers 200 `ok`; `chat.postMessage` (any path ending so) gets Slack's
    `{"ok": true, ...}`, or `{"ok": false, "error": ...}` after `slack_error(...)`.
    It plays Slack's files upload v2 with its wire shapes: `files.getUploadURLExternal`
    (form: filename, length) answers an `upload_url` on this server and a `file_id`; a POST
    of the bytes there answers `OK - <length>`; `files.completeUploadExternal` (form: files
    as JSON `[{"id", "title"}]`, channel_id, initial_comment) answers the shared files, or
    `file_not_found` for an id whose bytes never came (or not as many as announced).
    `uploads` holds what was shared: `SlackFile`s in order.
    `respond(status, times=N)` scripts the next N answers (optionally for one path only);
    `hold(path)` keeps requests to `path` waiting until `release()`.
    """

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._lock = threading.Condition()
        self._script: deque[_Scripted] = deque()
        self._holds: dict[str, _Hold] = {}
        self._slack_error: str | None = None
        self.files: dict[str, SlackFile] = {}  # by file_id, in order of getUploadURLExternal
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # lifecycle

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        for hold in self._holds.values():
            hold.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(WAIT_S)

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # behaviour

    def respond(
        self,
        status: int,
        *,
        times: int = 1,
        body: bytes | str | dict[str, Any] = b"",
        headers: dict[str, str] | None = None,
        path: str | None = None,
    ) -> None:
        """Answer `status` to the next `times` requests (to `path` only, when given)."""
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        raw = raw.encode() if isinstance(raw, str) else raw
        with self._lock:
            for _ in range(times):
                self._script.append(_Scripted(status, raw, dict(headers or {}), path))

    def slack_error(self, error: str | None = "channel_not_found") -> None:
        """Make `chat.postMessage` answer `{"ok": false, "error": error}` (None: ok again)."""
        self._slack_error = error

    def hold(self, path: str) -> _Hold:
        """Requests to `path` wait (up to WAIT_S) until `.release.set()`; `.arrived` is set
        when the first one comes in."""
        hold = self._holds[path] = _Hold(path)
        return hold

    # inspection

    def wait_for(
        self, count: int = 1, *, path: str | None = None, timeout: float = WAIT_S
    ) -> list[Request]:
        """The requests (to `path`, when given) once there are at least `count` of them."""

        def matching() -> list[Request]:
            return [r for r in self.requests if path is None or r.path == path]

        with self._lock:
            if not self._lock.wait_for(lambda: len(matching()) >= count, timeout=timeout):
                raise AssertionError(
                    f"expected {count} request(s) to {path or '*'}, got {matching()}"
                )
            return matching()

    def to(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    @property
    def uploads(self) -> list[SlackFile]:
        """The files shared in a channel by files.completeUploadExternal, in order."""
        with self._lock:
            return [f for f in self.files.values() if f.channel_id is not None]

    # the server side

    def _next_script(self, path: str) -> _Scripted | None:
        with self._lock:
            for item in self._script:
                if item.path is None or item.path == path:
                    self._script.remove(item)
                    return item
        return None

    def _answer(self, req: Request) -> tuple[int, bytes, dict[str, str]]:
        scripted = self._next_script(req.path)
        if scripted is not None:
            return scripted.status, scripted.body, scripted.headers
        route = req.path.rsplit("?", 1)[0]
        json_headers = {"Content-Type": "application/json; charset=utf-8"}
        if route.endswith(("/files.getUploadURLExternal", "/files.completeUploadExternal")):
            body = (
                {"ok": False, "error": self._slack_error}
                if self._slack_error
                else self._files_upload(route.rsplit("/", 1)[1], req)
            )
            return 200, json.dumps(body).encode(), json_headers
        if route.startswith("/upload/v1/"):
            with self._lock:
                file = self.files.get(route.rsplit("/", 1)[1])
                if file is None:
                    return 404, b"not found", {"Content-Type": "text/plain"}
                file.data, file.uploaded = req.body, True
            return 200, f"OK - {len(req.body)}".encode(), {"Content-Type": "text/plain"}
        if route.endswith("/chat.postMessage"):
            if self._slack_error:
                body = {"ok": False, "error": self._slack_error}
                return 200, json.dumps(body).encode(), json_headers
            args = req.json if isinstance(req.json, dict) else (req.form or {})
            body = {
                "ok": True,
                "channel": args.get("channel"),
                "ts": f"{time.time():.6f}",
                "message": {"text": args.get("text")},
            }
            return 200, json.dumps(body).encode(), json_headers
        return 200, b"ok", {"Content-Type": "text/plain"}

    def _files_upload(self, method: str, req: Request) -> dict[str, Any]:
        """Slack's answers of files.getUploadURLExternal and files.completeUploadExternal."""
        if not (req.header("Authorization") or "").startswith("Bearer "):
            return {"ok": False, "error": "not_authed"}
        args = req.form or (req.json if isinstance(req.json, dict) else {})
        with self._lock:
            if method == "files.getUploadURLExternal":
                if not args.get("filename") or not str(args.get("length", "")).isdigit():
                    return {"ok": False, "error": "invalid_arguments"}
                file_id = f"F{len(self.files) + 1:010d}"
                self.files[file_id] = SlackFile(
                    file_id, args["filename"], int(args["length"]), alt_txt=args.get("alt_txt")
                )
                return {
                    "ok": True,
                    "upload_url": f"{self.url}/upload/v1/{file_id}",
                    "file_id": file_id,
                }
            try:
                entries = json.loads(args.get("files") or "")
            except ValueError:
                return {"ok": False, "error": "invalid_arguments"}
            if not isinstance(entries, list) or not entries:
                return {"ok": False, "error": "invalid_arguments"}
            shared = []
            for entry in entries:
                file = self.files.get(str(entry.get("id")))
                if file is None or not file.uploaded or len(file.data) != file.length:
                    return {"ok": False, "error": "file_not_found"}
                shared.append((file, entry.get("title")))
            for file, title in shared:
                file.title = title
                file.channel_id = args.get("channel_id")
                file.initial_comment = args.get("initial_comment")
            return {
                "ok": True,
                "files": [{"id": f.file_id, "title": f.title or f.filename} for f, _ in shared],
            }

    def _record(self, handler: BaseHTTPRequestHandler) -> Request:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        ctype = headers.get("content-type", "")
        parsed: Any = None
        form: dict[str, str] | None = None
        if "json" in ctype:
            with contextlib.suppress(ValueError):
                parsed = json.loads(body)
        elif "x-www-form-urlencoded" in ctype:
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        req = Request(handler.command, handler.path, headers, body, parsed, form)
        with self._lock:
            self.requests.append(req)
            self._lock.notify_all()
        return req

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                req = recorder._record(self)
                hold = recorder._holds.get(req.path)
                if hold is not None:
                    hold.arrived.set()
                    hold.release.wait(WAIT_S)
                status, body, headers = recorder._answer(req)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does with X-Sqlbook-Signature: recompute and compare in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len("sha256=") :])


# --- SMTP ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None  # the user the client logged in as, if it did


class _Handler:
    def __init__(self, receiver: SMTPReceiver):
        self.receiver = receiver

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        r = self.receiver
        with r._lock:
            if r._reject:
                return r._reject.popleft()
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        message = message_from_bytes(data, policy=policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if session.auth_data is not None else None
        mail = Mail(envelope.mail_from or "", list(envelope.rcpt_tos), message, login)
        with r._lock:
            r.messages.append(mail)
            r._lock.notify_all()
        return "250 Message accepted"


class _Controller(Controller):
    """aiosmtpd's Controller on port 0: learn the port the OS picked before the self-check."""

    def _trigger_server(self) -> None:
        sockets = getattr(self.server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        super()._trigger_server()


class SMTPReceiver:
    """A real SMTP server on 127.0.0.1 that keeps what it is sent.

    `credentials=(user, password)` makes it accept AUTH (without TLS) for that login only.
    `reject("451 4.3.0 try later", times=1)` makes the next DATA fail with that reply.
    """

    def __init__(self, credentials: tuple[str, str] | None = None):
        self.messages: list[Mail] = []
        self._lock = threading.Condition()
        self._reject: deque[str] = deque()
        self.credentials = credentials
        kwargs: dict[str, Any] = {}
        if credentials is not None:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        self._controller = _Controller(_Handler(self), hostname="127.0.0.1", port=0, **kwargs)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.credentials is not None
            and (auth_data.login.decode(), auth_data.password.decode()) == self.credentials
        )
        if ok:
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def reject(self, reply: str, *, times: int = 1) -> None:
        with self._lock:
            self._reject.extend([reply] * times)

    def wait_for(self, count: int = 1) -> list[Mail]:
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.messages) >= count, timeout=WAIT_S):
                raise AssertionError(f"expected {count} mail(s), got {len(self.messages)}")
            return list(self.messages)

    def start(self) -> SMTPReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SMTPReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def smtp_server(credentials: tuple[str, str] | None = None) -> Iterator[SMTPReceiver]:
    with SMTPReceiver(credentials) as receiver:
        yield receiver


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(name="recorder")
def recorder_fixture() -> Iterator[Recorder]:
    with Recorder() as rec:
        yield rec


@pytest.fixture(name="smtp")
def smtp_fixture() -> Iterator[SMTPReceiver]:
    with smtp_server() as receiver:
        yield receiver
