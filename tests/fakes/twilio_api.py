"""A fake Twilio Messages API on 127.0.0.1 for the SMS and WhatsApp channels, speaking the
wire shapes of https://www.twilio.com/docs/messaging/api/message-resource.

    with TwilioFake.running() as fake:
        sid, token = fake.add_account()
        fake.add_number(sid, "+15017122661")                 # an SMS-capable From number
        fake.add_whatsapp_sender(sid, "+14155238886")        # a WhatsApp sender
        httpx.post(f"{fake.url}/2010-04-01/Accounts/{sid}/Messages.json", auth=(sid, token),
                   data={"To": "+15558675310", "From": "+15017122661", "Body": "hi"})

HTTP: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (form-encoded `To`, `From` or
`MessagingServiceSid`, `Body` and/or `ContentSid` + `ContentVariables`, HTTP Basic auth
`AccountSid:AuthToken`) answers 201 with the Message resource (`sid` SM…, `status`
"queued", `num_segments` counted as carriers do: GSM-7 160/153 characters, else UCS-2 70/67
code units); `GET …/Messages/{sid}.json` reads one back. Errors carry Twilio's body
`{"code", "message", "more_info", "status"}`: 401 20003 (bad credentials), 404 20404 (another
account, unknown path or Content SID), 400 21604/21603/21602 (To/From/Body missing), 21211
(invalid 'To'), 21212 (invalid 'From'), 21606 (From not a number of the account), 21617
(body over 1600 characters), 21610 (recipient replied STOP), 21910 (From and To on different
channels), 63007 (no WhatsApp sender for From); injected ones by `fail_next` (429 20429,
500 20500, …; with or without Retry-After). A free-form WhatsApp message to someone who has
not written within 24 hours is accepted (201) and then fails asynchronously with error
63016, as Twilio does; `open_whatsapp_session` opens the window.

`messages` holds every message created (with the credentials and content type it came with),
`requests` every request; `reset` forgets everything so one server serves a module.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API_VERSION = "2010-04-01"
MAX_BODY_CHARS = 1600
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# the North American plan: area code and exchange start with 2-9 (Twilio checks numbers
# against each country's plan, not only the E.164 shape)
_NANP = re.compile(r"^\+1[2-9]\d{2}[2-9]\d{6}$")


def valid_number(number: str) -> bool:
    return bool(_E164.match(number)) and (not number.startswith("+1") or bool(_NANP.match(number)))


# GSM 03.38: the basic alphabet (one septet each) and the extension table (two: ESC + char)
GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = set("^{}\\[~]|€\f")


def segments(body: str) -> tuple[int, str]:
    """(segments, "GSM-7" | "UCS-2") a carrier bills `body` as."""
    if all(c in GSM_BASIC or c in GSM_EXTENDED for c in body):
        septets = sum(2 if c in GSM_EXTENDED else 1 for c in body)
        return (1 if septets <= 160 else math.ceil(septets / 153)), "GSM-7"
    units = len(body.encode("utf-16-le")) // 2
    return (1 if units <= 70 else math.ceil(units / 67)), "UCS-2"


@dataclass
class Account:
    sid: str
    token: str
    numbers: set[str] = field(default_factory=set)  # SMS-capable From numbers (E.164)
    whatsapp: set[str] = field(default_factory=set)  # WhatsApp senders (E.164)
    services: dict[str, list[str]] = field(default_factory=dict)  # MG… -> its numbers
    contents: set[str] = field(default_factory=set)  # approved templates (HX…)
    api_keys: dict[str, str] = field(default_factory=dict)  # SK… -> its secret


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    content_type: str
    auth: tuple[str, str] | None
    form: dict[str, str]
    status: int


@dataclass
class Message:
    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    messaging_service_sid: str | None
    content_sid: str | None
    content_variables: dict[str, Any] | None
    status: str
    error_code: int | None
    num_segments: int
    encoding: str
    date_created: str

    def resource(self) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": self.date_created,
            "date_sent": None,
            "date_updated": self.date_created,
            "direction": "outbound-api",
            "error_code": self.error_code,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(self.num_segments),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": self.to,
            "uri": f"{uri}.json",
        }


@dataclass
class _Fault:
    remaining: int
    status: int
    code: int
    message: str
    retry_after: float | None


class TwilioError(Exception):
    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        body = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        return JSONResponse(body, status_code=self.status, headers=headers)


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


class TwilioFake:
    """The fake's state and its Python API; `running()` serves it over HTTP."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.url = ""
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.accounts: dict[str, Account] = {}
            self.messages: list[Message] = []
            self.requests: list[RecordedRequest] = []
            self.unsubscribed: set[str] = set()
            self.sessions: set[str] = set()  # WhatsApp users who wrote within 24 h
            self._faults: list[_Fault] = []
            self._arrived = threading.Condition(self._lock)

    # --- set-up ------------------------------------------------------------------------------

    def add_account(self, sid: str | None = None, token: str | None = None) -> tuple[str, str]:
        sid = sid or _sid("AC")
        token = token or secrets.token_hex(16)
        with self._lock:
            self.accounts[sid] = Account(sid, token)
        return sid, token

    def add_api_key(self, account_sid: str) -> tuple[str, str]:
        """An API key of the account (SK…, secret): Basic auth `SK…:secret` instead of
        `AC…:auth token`, on the account's paths."""
        sid, secret = _sid("SK"), secrets.token_hex(16)
        with self._lock:
            self.accounts[account_sid].api_keys[sid] = secret
        return sid, secret

    def add_number(self, account_sid: str, number: str) -> None:
        with self._lock:
            self.accounts[account_sid].numbers.add(number)

    def add_whatsapp_sender(self, account_sid: str, number: str) -> None:
        with self._lock:
            self.accounts[account_sid].whatsapp.add(number)

    def add_messaging_service(self, account_sid: str, numbers: list[str]) -> str:
        sid = _sid("MG")
        with self._lock:
            self.accounts[account_sid].services[sid] = list(numbers)
        return sid

    def add_content(self, account_sid: str) -> str:
        sid = _sid("HX")
        with self._lock:
            self.accounts[account_sid].contents.add(sid)
        return sid

    def unsubscribe(self, number: str) -> None:
        """The recipient replied STOP: Twilio refuses further messages to them (21610)."""
        with self._lock:
            self.unsubscribed.add(number)

    def open_whatsapp_session(self, number: str) -> None:
        """The WhatsApp user wrote to the sender: free-form messages go through for 24 h."""
        with self._lock:
            self.sessions.add(number)

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 429,
        code: int | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """The next `n` message requests answer `status` with Twilio's body (429: code 20429
        "Too Many Requests"; 500: 20500), with a Retry-After header when given."""
        code = code or {429: 20429, 500: 20500, 503: 20503}.get(status, status * 100)
        message = message or {
            20429: "Too Many Requests",
            20500: "An internal server error has occurred",
            20503: "Service unavailable",
        }.get(code, "Error")
        with self._lock:
            self._faults.append(_Fault(n, status, code, message, retry_after))

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Message]:
        """The messages once at least `n` were created (AssertionError after `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.messages)} of {n} messages arrived")
                self._arrived.wait(left)
            return list(self.messages)

    # --- serving -----------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def running(cls) -> Iterator[TwilioFake]:
        """The fake served by uvicorn on a free loopback port, in a daemon thread."""
        fake = cls()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        app = Starlette(
            routes=[
                Route(
                    f"/{API_VERSION}/Accounts/{{account}}/Messages.json",
                    fake._create,
                    methods=["POST"],
                ),
                Route(
                    f"/{API_VERSION}/Accounts/{{account}}/Messages/{{sid}}.json",
                    fake._fetch,
                    methods=["GET"],
                ),
            ]
        )
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert server.started, "the Twilio fake did not start (see the captured stderr)"
        fake.url = f"http://127.0.0.1:{port}"
        try:
            yield fake
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()

    # --- HTTP --------------------------------------------------------------------------------

    @staticmethod
    def _credentials(request: Request) -> tuple[str, str] | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return (user, password) if sep else None

    def _account(self, request: Request, credentials: tuple[str, str] | None) -> Account:
        account: Account | None = None
        if credentials is not None:
            user, password = credentials
            for candidate in self.accounts.values():
                if (user, password) == (candidate.sid, candidate.token) or (
                    candidate.api_keys.get(user) == password
                ):
                    account = candidate
        if account is None:
            raise TwilioError(401, 20003, "Authenticate")
        if request.path_params["account"] != account.sid:
            raise TwilioError(
                404, 20404, f"The requested resource {request.url.path} was not found"
            )
        return account

    async def _create(self, request: Request) -> Response:
        raw = (await request.body()).decode("utf-8", "replace")
        content_type = request.headers.get("content-type", "")
        # Twilio reads form parameters only: a JSON body arrives as no parameters at all
        form = (
            dict(parse_qsl(raw, keep_blank_values=True))
            if content_type.startswith("application/x-www-form-urlencoded")
            else {}
        )
        credentials = self._credentials(request)
        status = 201
        with self._lock:
            try:
                account = self._account(request, credentials)
                fault = next((f for f in self._faults if f.remaining > 0), None)
                if fault is not None:
                    fault.remaining -= 1
                    headers = (
                        {"Retry-After": f"{fault.retry_after:g}"}
                        if fault.retry_after is not None
                        else None
                    )
                    status = fault.status
                    return TwilioError(fault.status, fault.code, fault.message).response(headers)
                message = self._message(account, form)
                self.messages.append(message)
                self._arrived.notify_all()
                # the answer to the create is always the queued message: a failure that
                # comes later (63016) shows when the message is read back
                created = {**message.resource(), "status": "queued", "error_code": None}
                return JSONResponse(created, status_code=201)
            except TwilioError as err:
                status = err.status
                return err.response()
            finally:
                self.requests.append(
                    RecordedRequest(
                        "POST", request.url.path, content_type, credentials, form, status
                    )
                )

    async def _fetch(self, request: Request) -> Response:
        with self._lock:
            try:
                account = self._account(request, self._credentials(request))
                sid = request.path_params["sid"]
                found = next(
                    (m for m in self.messages if m.sid == sid and m.account_sid == account.sid),
                    None,
                )
                if found is None:
                    raise TwilioError(
                        404, 20404, f"The requested resource {request.url.path} was not found"
                    )
                return JSONResponse(found.resource())
            except TwilioError as err:
                return err.response()

    def _message(self, account: Account, form: dict[str, str]) -> Message:
        to = form.get("To", "").strip()
        sender = form.get("From", "").strip()
        service = form.get("MessagingServiceSid", "").strip() or None
        body = form.get("Body", "")
        content_sid = form.get("ContentSid", "").strip() or None
        if not to:
            raise TwilioError(400, 21604, "A 'To' phone number is required.")
        if not sender and not service:
            raise TwilioError(400, 21603, "A 'From' phone number is required.")
        if not body and not content_sid:
            raise TwilioError(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY_CHARS:
            raise TwilioError(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        to_whatsapp = to.startswith("whatsapp:")
        to_number = to.removeprefix("whatsapp:")
        if not valid_number(to_number):
            raise TwilioError(400, 21211, f"Invalid 'To' Phone Number: {to_number}")
        if service is not None and not sender:
            numbers = account.services.get(service)
            if numbers is None:
                raise TwilioError(
                    404, 20404, f"The requested resource /Services/{service} was not found"
                )
            sender = numbers[0] if numbers else ""
            if to_whatsapp:
                sender = f"whatsapp:{sender}"
        if sender.startswith("whatsapp:") != to_whatsapp:
            raise TwilioError(
                400, 21910, "Invalid From and To pair. From and To should be of the same channel"
            )
        sender_number = sender.removeprefix("whatsapp:")
        if not valid_number(sender_number):
            raise TwilioError(400, 21212, f"Invalid From Number: {sender_number}")
        if to_whatsapp and sender_number not in account.whatsapp:
            raise TwilioError(
                400, 63007, "Twilio could not find a Channel with the specified From address"
            )
        if not to_whatsapp and sender_number not in account.numbers:
            raise TwilioError(
                400,
                21606,
                f"The From phone number {sender_number} is not a valid, SMS-capable inbound "
                "phone number or short code for your account.",
            )
        if to_number in self.unsubscribed:
            raise TwilioError(400, 21610, "Attempt to send to unsubscribed recipient")
        variables: dict[str, Any] | None = None
        if content_sid is not None:
            if content_sid not in account.contents:
                raise TwilioError(
                    404, 20404, f"The requested resource /Content/{content_sid} was not found"
                )
            try:
                variables = json.loads(form.get("ContentVariables") or "{}")
            except ValueError:
                raise TwilioError(
                    400, 21656, "The ContentVariables Parameter is invalid."
                ) from None
        status, error = "queued", None
        if to_whatsapp and content_sid is None and to_number not in self.sessions:
            # accepted, then failed by WhatsApp: outside the 24-hour window a business may
            # only send an approved template
            status, error = "failed", 63016
        count, encoding = segments(body)
        return Message(
            sid=_sid("SM"),
            account_sid=account.sid,
            to=to,
            from_=sender,
            body=body,
            messaging_service_sid=service,
            content_sid=content_sid,
            content_variables=variables,
            status=status,
            error_code=error,
            num_segments=count,
            encoding=encoding,
            date_created=formatdate(usegmt=True),
        )
