import { describe, expect, it } from "vitest";
import type { Connection } from "../connectionApi";
import {
  cronProblem,
  cursorEntries,
  describeConfig,
  describeSync,
  draftsFrom,
  editFormOf,
  parseServiceAccount,
  patchOf,
  propertyIdProblem,
  reportsFrom,
  stateLabel,
  stripeKeyShape,
  webhookAddress,
  webhookSecretProblem,
} from "./model";

const stripe: Connection = {
  id: 7,
  kind: "stripe",
  name: "billing",
  project_id: 1,
  config: { mode: "test", key_kind: "restricted", key_last4: "wxyz", has_webhook_secret: false },
  schedule: "0 * * * *",
  paused: false,
  auth_error: null,
  created_at: "2026-12-01T00:00:00Z",
  updated_at: "2026-12-01T00:00:00Z",
  version: 3,
  webhook_url: "/webhooks/stripe/7",
};

const ga4: Connection = {
  ...stripe,
  id: 8,
  kind: "ga4",
  name: "site",
  config: { property_id: "123456", client_email: "reader@p.iam.gserviceaccount.com", reports: [{ name: "by_campaign", dimensions: ["date", "sessionCampaignName"], metrics: ["sessions"] }] },
  webhook_url: null,
};

describe("stripeKeyShape", () => {
  it.each([
    ["sk_test_abc123", { ok: true, mode: "test", kind: "secret" }],
    ["  rk_live_ZZ9  ", { ok: true, mode: "live", kind: "restricted" }],
  ])("%s is a usable key", (key, shape) => expect(stripeKeyShape(key)).toEqual(shape));

  it.each([
    ["pk_live_abc", "publishable"],
    ["whsec_abc", "webhook signing secret"],
    ["sk_prod_abc", "starts with rk_live_"],
    ["", "starts with rk_live_"],
  ])("%s is refused, saying why", (key, why) => {
    const shape = stripeKeyShape(key);
    expect(shape.ok).toBe(false);
    if (!shape.ok) expect(shape.problem).toContain(why);
  });

  it("never repeats the key in its message", () => {
    const shape = stripeKeyShape("sk_prod_SECRETVALUE");
    expect(!shape.ok && shape.problem).not.toContain("SECRETVALUE");
  });

  it("checks a webhook secret's prefix only when one is given", () => {
    expect(webhookSecretProblem("")).toBeNull();
    expect(webhookSecretProblem("whsec_abc")).toBeNull();
    expect(webhookSecretProblem("sk_test_abc")).toContain("whsec_");
  });
});

describe("parseServiceAccount", () => {
  const key = { type: "service_account", project_id: "p", client_email: "r@p.iam.gserviceaccount.com", private_key: "-----BEGIN PRIVATE KEY-----\nMIIsecret\n-----END PRIVATE KEY-----\n", token_uri: "https://oauth2.googleapis.com/token" };

  it("reads a key file", () => {
    const parsed = parseServiceAccount(JSON.stringify(key));
    expect(parsed).toEqual({ ok: true, key, clientEmail: key.client_email, projectId: "p" });
  });

  it.each([
    ["{not json", "not JSON"],
    ["[1]", "JSON object"],
    [JSON.stringify({ ...key, type: "authorized_user" }), "authorized_user"],
    [JSON.stringify({ ...key, private_key: undefined, token_uri: "" }), "no private_key, token_uri"],
  ])("refuses %s", (text, why) => {
    const parsed = parseServiceAccount(text);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) {
      expect(parsed.problem).toContain(why);
      expect(parsed.problem).not.toContain("MIIsecret");
    }
  });

  it("wants a numeric property id, not a measurement id", () => {
    expect(propertyIdProblem("123456")).toBeNull();
    expect(propertyIdProblem("G-ABC123")).toContain("digits only");
    expect(propertyIdProblem(" ")).toContain("needed");
  });
});

describe("reportsFrom", () => {
  it("splits names, puts date first (once), drops blank rows", () => {
    expect(
      reportsFrom([
        { name: "by_campaign", dimensions: "sessionCampaignName, date, sessionSource", metrics: "sessions totalUsers" },
        { name: "", dimensions: "date", metrics: "" },
        { name: "by_country", dimensions: "date,country", metrics: "sessions" },
      ]),
    ).toEqual({
      ok: true,
      reports: [
        { name: "by_campaign", dimensions: ["date", "sessionCampaignName", "sessionSource"], metrics: ["sessions", "totalUsers"] },
        { name: "by_country", dimensions: ["date", "country"], metrics: ["sessions"] },
      ],
    });
  });

  const many = (n: number, stem: string) => Array.from({ length: n }, (_, i) => `${stem}${i}`).join(",");
  it.each([
    [{ name: "By Campaign", dimensions: "date", metrics: "sessions" }, "lowercase letter"],
    [{ name: "x", dimensions: many(9, "d"), metrics: "sessions" }, "at most 9 dimensions"],
    [{ name: "x", dimensions: "date", metrics: many(11, "m") }, "at most 10 metrics"],
    [{ name: "x", dimensions: "date, country", metrics: "" }, "at least one metric"],
    [{ name: "x", dimensions: "country,country", metrics: "sessions" }, "dimension is named twice"],
    [{ name: "daily", dimensions: "date", metrics: "sessions" }, "daily is the name of a default report"],
    [{ name: "report_rows", dimensions: "date", metrics: "sessions" }, "name of a default report"],
  ])("refuses %o", (draft, why) => {
    const r = reportsFrom([draft]);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problem).toContain(why);
  });

  it("takes 8 dimensions besides date and refuses a name used twice", () => {
    expect(reportsFrom([{ name: "x", dimensions: many(8, "d"), metrics: "sessions" }]).ok).toBe(true);
    const twice = reportsFrom([
      { name: "x", dimensions: "date", metrics: "sessions" },
      { name: "x", dimensions: "date", metrics: "users" },
    ]);
    expect(!twice.ok && twice.problem).toContain("two reports have this name");
  });

  it("round-trips the stored reports through drafts", () => {
    const back = reportsFrom(draftsFrom(ga4.config.reports));
    expect(back).toEqual({ ok: true, reports: ga4.config.reports });
  });
});

describe("patchOf", () => {
  it("is empty when nothing changed, and never carries a blank secret", () => {
    expect(patchOf(stripe, editFormOf(stripe))).toEqual({});
    expect(patchOf(ga4, { ...editFormOf(ga4), reports: ga4.config.reports ?? [] })).toEqual({});
  });

  it("carries what changed: name, schedule, pause, a new key and secret", () => {
    const form = { ...editFormOf(stripe), name: " billing-2 ", schedule: "*/15 * * * *", paused: true, apiKey: "rk_test_new", webhookSecret: "whsec_new" };
    expect(patchOf(stripe, form)).toEqual({ name: "billing-2", schedule: "*/15 * * * *", paused: true, api_key: "rk_test_new", webhook_secret: "whsec_new" });
  });

  it("sends a GA4 key and changed reports only, never a Stripe field", () => {
    const sa = { client_email: "r@p", private_key: "k", token_uri: "https://t" };
    const form = { ...editFormOf(ga4), apiKey: "sk_test_x", serviceAccount: sa, reports: [] };
    expect(patchOf(ga4, form)).toEqual({ service_account: sa, reports: [] });
  });

  it("keeps the schedule when its field is emptied", () => {
    expect(patchOf(stripe, { ...editFormOf(stripe), schedule: "  " })).toEqual({});
    expect(cronProblem("")).toBeNull();
    expect(cronProblem("0 * * *")).toContain("5 fields");
    expect(cronProblem("0 5 * * 1-5")).toBeNull();
  });
});

describe("reading a status", () => {
  it("labels states and describes what a connection reads", () => {
    expect(stateLabel("queued")).toBe("sync requested");
    expect(stateLabel("auth_failed")).toBe("credentials refused");
    expect(stateLabel("something_new")).toBe("something_new");
    expect(describeConfig(stripe)).toBe("test mode, restricted key …wxyz");
    expect(describeConfig(ga4)).toBe("property 123456, reader@p.iam.gserviceaccount.com");
  });

  it("sums a sync's rows", () => {
    expect(describeSync(null)).toBe("never");
    expect(describeSync({ mode: "full", status: "succeeded", rows: { "stripe.charges": 1200, "stripe.customers": 34 } })).toBe("full, succeeded, 1,234 rows");
    expect(describeSync({ mode: "incremental", status: "running", rows: {} })).toBe("incremental, running");
  });

  it("shows unix cursors as UTC times and flattens per-table ones", () => {
    expect(cursorEntries({ events_cursor: 1764720000, backfill_done: true, tables: { charges: 1764700000 } })).toEqual([
      ["backfill_done", "true"],
      ["events_cursor", "2025-12-03T00:00:00Z (1764720000)"],
      ["tables.charges", "2025-12-02T18:26:40Z (1764700000)"],
    ]);
    expect(cursorEntries(null)).toEqual([]);
    expect(cursorEntries({ last_complete_date: "2026-12-01", rows: 12 })).toEqual([
      ["last_complete_date", "2026-12-01"],
      ["rows", "12"],
    ]);
  });

  it("makes the webhook URL absolute on the API's origin", () => {
    expect(webhookAddress("http://127.0.0.1:8000", "/webhooks/stripe/7")).toBe("http://127.0.0.1:8000/webhooks/stripe/7");
    expect(webhookAddress("https://sqlbook.example/", "webhooks/stripe/7")).toBe("https://sqlbook.example/webhooks/stripe/7");
    expect(webhookAddress("http://x", "https://public.example/webhooks/stripe/7")).toBe("https://public.example/webhooks/stripe/7");
    expect(webhookAddress("http://x", null)).toBeNull();
  });
});
