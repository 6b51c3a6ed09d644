"""The data sets the gallery's templates are checked against, and what their numbers must be.

`seed_saas(fake)` writes a small Stripe account into the fake Stripe API (tests/fakes/stripe_api.py)
for a sync to load; `SAAS_EXPECTED` holds its numbers, worked out by hand from the objects
below (see the comments), never by running the templates' SQL. The months are June to
November 2025; every amount a customer pays is written next to their name.

USD customers (line amounts in cents; MRR in dollars at each month's last instant):
  A  $100/mo, calendar-month lines Jun-Nov, no price on the line (normalised by its period);
     a one-off $500 invoice item on July's invoice (not recurring: not MRR)
  B  $50/mo Jul-Aug, $80/mo Sep-Nov (price: monthly); September's invoice also carries a
     $15 proration line (not MRR)                                   -> new Jul, expansion Sep
  C  $200/mo Jun-Aug, $150/mo Sep-Nov                              -> contraction Sep
  D  $60/mo on lines from the 15th (Jun 15-Jul 15, Jul 15-Aug 15, Aug 15-Sep 15), canceled
     at once on Aug 20 (ended_at): nothing at Aug's end              -> churned Aug
  E  $1200 a year, one line Aug 15 2025 - Aug 15 2026 (no price: 12 months) = $100/mo
  F  trialing Oct-Nov: $0 lines                                     -> never a paying customer
  H  $40/mo from Oct with a $10 discount on each line = $30/mo       -> new Oct
  I  3 seats x $20 = $60/mo Jun-Nov (price monthly, quantity 3)
  L  a void invoice of $999 in Oct and a draft one in Nov            -> nothing
EUR: G EUR 90/mo Jun-Nov.  JPY: J 1200 yen/mo Oct-Nov (zero-decimal: 1200 is 1200 yen).

MRR USD:  Jun A100+C200+D60+I60 = 420;  Jul +B50 = 470;  Aug -D60 +E100 = 510;
          Sep B 50->80, C 200->150 = 490;  Oct +H30 = 520;  Nov 520.
Customers: Jun 4 (A C D I), Jul 5, Aug 5 (D out, E in), Sep 5, Oct 6, Nov 6.
Refunds (USD, succeeded only): Jul 20 $30 of A's July charge; Sep 10 the whole $150 of
C's September charge; Oct 5 a $25 refund of I's that failed (not counted). EUR: Oct 3 EUR 20.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from tests.fakes.stripe_api import StripeFake


def unix(y: int, m: int, d: int = 1) -> int:
    return int(datetime(y, m, d, tzinfo=UTC).timestamp())


def month_start(y: int, m: int) -> int:
    return unix(y + (m - 1) // 12, (m - 1) % 12 + 1)


MONTHS = ["2025-06", "2025-07", "2025-08", "2025-09", "2025-10", "2025-11"]
RANGE = {"from": "2025-06-01", "to": "2025-11-30"}

SAAS_EXPECTED: dict[str, Any] = {
    "usd": {
        "mrr": dict(zip(MONTHS, [420, 470, 510, 490, 520, 520], strict=True)),
        "customers": dict(zip(MONTHS, [4, 5, 5, 5, 6, 6], strict=True)),
        # (new, expansion, contraction, churned) — contraction and churn as negative numbers
        "movements": {
            "2025-06": (420, 0, 0, 0),  # May had nothing: every June customer is new
            "2025-07": (50, 0, 0, 0),
            "2025-08": (100, 0, 0, -60),
            "2025-09": (0, 30, -50, 0),
            "2025-10": (30, 0, 0, 0),
            "2025-11": (0, 0, 0, 0),
        },
        # churned customers / paying customers at the end of the month before
        "customer_churn": {"2025-08": 1 / 5},
        # (churned + contraction MRR) / MRR at the end of the month before
        "mrr_churn": {"2025-08": 60 / 470, "2025-09": 50 / 510},
        "refunds": {"2025-07": (1, 30), "2025-09": (1, 150)},
    },
    "eur": {
        "mrr": dict.fromkeys(MONTHS, 90),
        "customers": dict.fromkeys(MONTHS, 1),
        "refunds": {"2025-10": (1, 20)},
    },
    "jpy": {
        "mrr": {**dict.fromkeys(MONTHS, 0), "2025-10": 1200, "2025-11": 1200},
        "customers": {**dict.fromkeys(MONTHS, 0), "2025-10": 1, "2025-11": 1},
    },
}


def _line(fake: StripeFake, invoice: dict[str, Any], index: int, **fields: Any) -> None:
    """Change an invoice line in the fake's own object (what Stripe would have sent)."""
    fake.get(invoice["id"])["lines"]["data"][index].update(fields)


def seed_saas(fake: StripeFake) -> dict[str, Any]:
    """The account described above; returns the objects by name."""
    made: dict[str, Any] = {}
    product = fake.create_product(name="Pro", created=unix(2025, 1))
    monthly = {
        amount: fake.create_price(product=product["id"], unit_amount=amount, created=unix(2025, 1))
        for amount in (5000, 8000, 2000, 4000)
    }

    def customer(name: str) -> dict[str, Any]:
        return fake.create_customer(email=f"{name.lower()}@example.com", name=name,
                                    created=unix(2025, 1))  # fmt: skip

    def subscription(cus: dict[str, Any], price: dict[str, Any], start: int, **extra: Any) -> Any:
        return fake.create_subscription(
            customer=cus["id"], prices=[price["id"]], created=start, **extra
        )

    def invoice(
        cus: dict[str, Any],
        sub: dict[str, Any] | None,
        amount: int,
        start: int,
        end: int,
        currency: str = "usd",
        price: dict[str, Any] | None = None,
        status: str = "paid",
        **line: Any,
    ) -> dict[str, Any]:
        inv = fake.create_invoice(
            customer=cus["id"],
            subscription=sub["id"] if sub else None,
            lines=((amount, "plan"),),
            currency=currency,
            created=start,
            status=status,
        )
        _line(fake, inv, 0, period={"start": start, "end": end}, price=price, proration=False,
              **line)  # fmt: skip
        return inv

    # A: $100 calendar months Jun-Nov, no price on the lines; a one-off item in July
    a = customer("A")
    a_sub = subscription(a, monthly[5000], month_start(2025, 6))
    for m in range(6, 12):
        inv = invoice(a, a_sub, 10_000, month_start(2025, m), month_start(2025, m + 1))
        made[f"a_{m}"] = inv
    jul = fake.get(made["a_7"]["id"])
    jul["lines"]["data"].append(
        {**jul["lines"]["data"][0], "id": "il_a_oneoff", "amount": 50_000,
         "type": "invoiceitem", "proration": False}
    )  # fmt: skip
    # B: $50 Jul-Aug, $80 Sep-Nov, monthly prices; a proration line in September
    b = customer("B")
    b_sub = subscription(b, monthly[5000], month_start(2025, 7))
    for m in range(7, 12):
        price = monthly[5000] if m < 9 else monthly[8000]
        inv = invoice(b, b_sub, price["unit_amount"], month_start(2025, m),
                      month_start(2025, m + 1), price=price)  # fmt: skip
        if m == 9:
            sep = fake.get(inv["id"])
            sep["lines"]["data"].append(
                {**sep["lines"]["data"][0], "id": "il_b_proration", "amount": 1_500,
                 "proration": True, "period": {"start": unix(2025, 9, 15),
                                               "end": month_start(2025, 10)}}
            )  # fmt: skip
    # C: $200 Jun-Aug, $150 Sep-Nov
    c = customer("C")
    c_sub = subscription(c, monthly[5000], month_start(2025, 6))
    for m in range(6, 12):
        inv = invoice(c, c_sub, 20_000 if m < 9 else 15_000, month_start(2025, m),
                      month_start(2025, m + 1))  # fmt: skip
        made[f"c_{m}"] = inv
    # D: $60 from the 15th, canceled at once on Aug 20
    d = customer("D")
    d_sub = subscription(
        d, monthly[2000], unix(2025, 6, 15), status="canceled",
        canceled_at=unix(2025, 8, 20), ended_at=unix(2025, 8, 20),
    )  # fmt: skip
    for m in (6, 7, 8):
        invoice(d, d_sub, 6_000, unix(2025, m, 15), unix(2025, m + 1, 15))
    # E: $1200 a year from Aug 15 (no price on the line: 12 months by its period)
    e = customer("E")
    e_sub = subscription(e, monthly[5000], unix(2025, 8, 15))
    invoice(e, e_sub, 120_000, unix(2025, 8, 15), unix(2026, 8, 15))
    # F: trialing, $0 lines
    f = customer("F")
    f_sub = subscription(f, monthly[4000], month_start(2025, 10), status="trialing",
                         trial_end=month_start(2025, 12))  # fmt: skip
    for m in (10, 11):
        invoice(f, f_sub, 0, month_start(2025, m), month_start(2025, m + 1), price=monthly[4000])
    # H: $40 with a $10 discount from October
    h = customer("H")
    h_sub = subscription(h, monthly[4000], month_start(2025, 10))
    for m in (10, 11):
        discount = [{"amount": 1_000, "discount": "di_1"}]
        invoice(h, h_sub, 4_000, month_start(2025, m), month_start(2025, m + 1),
                price=monthly[4000], discount_amounts=discount)  # fmt: skip
    # I: 3 seats x $20
    i = customer("I")
    i_sub = subscription(i, monthly[2000], month_start(2025, 6))
    for m in range(6, 12):
        inv = invoice(i, i_sub, 6_000, month_start(2025, m), month_start(2025, m + 1),
                      price=monthly[2000], quantity=3)  # fmt: skip
        made[f"i_{m}"] = inv
    # L: a void invoice and a draft one
    lcus = customer("L")
    l_sub = subscription(lcus, monthly[5000], month_start(2025, 10))
    invoice(lcus, l_sub, 99_900, month_start(2025, 10), month_start(2025, 11), status="void")
    invoice(lcus, l_sub, 99_900, month_start(2025, 11), month_start(2025, 12), status="draft")
    # G: EUR 90; J: 1200 yen
    g = customer("G")
    eur = fake.create_price(product=product["id"], unit_amount=9000, currency="eur",
                            created=unix(2025, 1))  # fmt: skip
    g_sub = subscription(g, eur, month_start(2025, 6))
    for m in range(6, 12):
        inv = invoice(g, g_sub, 9_000, month_start(2025, m), month_start(2025, m + 1), "eur",
                      price=eur)  # fmt: skip
        made[f"g_{m}"] = inv
    j = customer("J")
    jpy = fake.create_price(product=product["id"], unit_amount=1200, currency="jpy",
                            created=unix(2025, 1))  # fmt: skip
    j_sub = subscription(j, jpy, month_start(2025, 10))
    for m in (10, 11):
        invoice(j, j_sub, 1_200, month_start(2025, m), month_start(2025, m + 1), "jpy", price=jpy)

    # refunds, each at its own time
    def refund(inv: dict[str, Any], when: int, amount: int | None = None) -> dict[str, Any]:
        fake.clock.now = when
        return fake.refund(fake.get(inv["id"])["charge"], amount=amount)

    refund(made["a_7"], unix(2025, 7, 20), 3_000)
    refund(made["c_9"], unix(2025, 9, 10))
    failed = refund(made["i_10"], unix(2025, 10, 5), 2_500)
    fake.update(failed["id"], status="failed")
    refund(made["g_10"], unix(2025, 10, 3), 2_000)
    fake.clock.now = unix(2025, 12, 1)
    return made


# --- captured events: web analytics, funnel, retention ------------------------------------
#
# T is a Monday at least four whole weeks before today (UTC); W0..W3 are the weeks from T.
# Web analytics reads days T+1 (D1) and T+2 (D2):
#   u1 D1 10:00 / (from www.google.com), 10:05 /pricing, 10:10 signed_up   -> session of 600 s
#   u2 D1 11:00 / (direct)                                                  -> bounce
#   u3 D1 12:00 /blog (from news.ycombinator.com, utm_source hn), 12:00:30 / -> 30 s
#   u1 D2 09:00 /pricing, 09:01 purchased                                   -> 60 s (no bounce)
#   u4 D2 15:00 /                                                            -> bounce
#   totals: 4 visitors, 5 sessions, 7 pageviews, 2 bounces (40 %), 690 s / 5 = 138 s
# Funnel ($pageview -> signed_up -> purchased, 14 days), whole four weeks:
#   u1 reaches step 3; u5 (W1 Mon pageview, signup 30 min later, purchase 15 days later: out
#   of the window) step 2; u6 (signup at 09:00 before the first pageview at 09:05) step 1;
#   u2, u3, u4 step 1  -> 6, 2, 1
# Retention ($pageview -> $pageview, weekly), whole four weeks: cohort W0 = u1..u4, W1 = u5, u6;
#   later pageviews: u1 W1 and W3, u4 W1, u2 W2, u5 W2.

DESKTOP_CHROME = {"$browser": "Chrome", "$os": "Mac OS X", "$device_type": "Desktop"}
DESKTOP_FIREFOX = {"$browser": "Firefox", "$os": "Windows", "$device_type": "Desktop"}
MOBILE_SAFARI = {"$browser": "Mobile Safari", "$os": "iOS", "$device_type": "Mobile"}


def week_zero(today: date) -> date:
    """T: the Monday four weeks before this week's."""
    return today - timedelta(days=today.weekday() + 28)


def captured_events(t: date) -> list[dict[str, Any]]:
    def at(days: int, hh: int, mm: int = 0, ss: int = 0) -> str:
        return datetime.combine(t + timedelta(days=days), time(hh, mm, ss), UTC).isoformat()

    def pageview(who: str, when: str, path: str, device: dict[str, str], **props: Any) -> Any:
        properties = {"$pathname": path, "$current_url": f"https://shop.example{path}",
                      **device, **props}  # fmt: skip
        return {"event": "$pageview", "distinct_id": who, "timestamp": when,
                "properties": properties}  # fmt: skip

    def other(name: str, who: str, when: str, device: dict[str, str]) -> Any:
        return {"event": name, "distinct_id": who, "timestamp": when, "properties": dict(device)}

    google = {"$referrer": "https://www.google.com/search?q=shop"}
    hn = {"$referrer": "https://news.ycombinator.com/item?id=1", "utm_source": "hn"}
    return [
        pageview("u1", at(1, 10), "/", DESKTOP_CHROME, **google),
        pageview("u1", at(1, 10, 5), "/pricing", DESKTOP_CHROME),
        other("signed_up", "u1", at(1, 10, 10), DESKTOP_CHROME),
        pageview("u2", at(1, 11), "/", DESKTOP_FIREFOX),
        pageview("u3", at(1, 12), "/blog", MOBILE_SAFARI, **hn),
        pageview("u3", at(1, 12, 0, 30), "/", MOBILE_SAFARI),
        pageview("u1", at(2, 9), "/pricing", DESKTOP_CHROME),
        other("purchased", "u1", at(2, 9, 1), DESKTOP_CHROME),
        pageview("u4", at(2, 15), "/", MOBILE_SAFARI),
        # weeks 1-3
        pageview("u5", at(7, 10), "/", DESKTOP_CHROME),
        other("signed_up", "u5", at(7, 10, 30), DESKTOP_CHROME),
        other("signed_up", "u6", at(8, 9), DESKTOP_FIREFOX),
        pageview("u6", at(8, 9, 5), "/", DESKTOP_FIREFOX),
        pageview("u1", at(9, 8), "/", DESKTOP_CHROME),
        pageview("u4", at(11, 8), "/", MOBILE_SAFARI),
        pageview("u5", at(14, 8), "/", DESKTOP_CHROME),
        pageview("u2", at(17, 8), "/", DESKTOP_FIREFOX),
        other("purchased", "u5", at(22, 10), DESKTOP_CHROME),
        pageview("u1", at(23, 8), "/", DESKTOP_CHROME),
    ]


def event_days(t: date) -> list[date]:
    return sorted({t + timedelta(days=d) for d in (1, 2, 7, 8, 9, 11, 14, 17, 22, 23)})


def web_range(t: date) -> dict[str, str]:
    return {"from": (t + timedelta(days=1)).isoformat(), "to": (t + timedelta(days=2)).isoformat()}


def four_weeks(t: date) -> dict[str, str]:
    return {"from": t.isoformat(), "to": (t + timedelta(days=27)).isoformat()}


WEB_EXPECTED: dict[str, Any] = {
    "totals": {
        "visitors": 4,
        "sessions": 5,
        "pageviews": 7,
        "bounce_rate": 0.4,
        "avg_session_seconds": 138.0,
        "pages_per_session": 1.4,
    },  # fmt: skip
    # per day D1, D2: (visitors, sessions, pageviews)
    "daily": [(3, 3, 5), (2, 2, 2)],
    # page: (pageviews, visitors summed per day, entries, exits)
    "pages": [("/", 4, 4, 3, 3), ("/pricing", 2, 2, 1, 2), ("/blog", 1, 1, 1, 0)],
    # referrer: (sessions, visitors summed per day, bounce rate)
    "referrers": [
        ("(direct)", 3, 3, 0.6667),
        ("news.ycombinator.com", 1, 1, 0.0),
        ("www.google.com", 1, 1, 0.0),
    ],  # fmt: skip
    "devices": [("Desktop", 3), ("Mobile", 2)],
    "browsers": [("Chrome", 2), ("Mobile Safari", 2), ("Firefox", 1)],
    "utm": [("hn", "(none)", "(none)", 1)],
}
FUNNEL_EXPECTED: dict[str, Any] = {
    # (step, persons, conversion rate, step conversion rate)
    "steps": [(1, 6, 1.0, None), (2, 2, 0.3333, 0.3333), (3, 1, 0.1667, 0.5)],
    # week offset from T: (started, converted)
    "weekly": {0: (4, 1), 1: (2, 0)},
}
RETENTION_EXPECTED: dict[str, Any] = {
    # cohort week offset: (persons, week_1 .. week_8 percentages; None: not started by the end)
    "cohorts": {
        0: (4, [50.0, 25.0, 25.0, None, None, None, None, None]),
        1: (2, [50.0, 0.0, None, None, None, None, None, None]),
    },
    # week: (persons, returned, retained %)
    "curve": [(1, 6, 3, 50.0), (2, 6, 1, 16.7), (3, 4, 1, 25.0)],
}
