import { describe, expect, it } from "vitest";
import type { Alert } from "../insightApi";
import { DraftProblem, alertBody, draftFromAlert, emptyDraft, historyText, paramsText, problemSection, ruleText, scheduleText } from "./alertForm";
import { changeText, comparePair, diffLines, revisionLabel, toggleSelected } from "./revisionDiff";
import { asOfLabel, cronText, scheduleProblemField, snapshotAsRun, snapshotBanner } from "./snapshotTime";

describe("diffLines", () => {
  it("tells file headers, hunks, additions, removals and context apart", () => {
    const diff = "--- v1\n+++ v3\n@@ -1,2 +1,2 @@\n select 1\n-from a\n+from b\n";
    expect(diffLines(diff).map((l) => l.kind)).toEqual(["file", "file", "hunk", "context", "del", "add"]);
    expect(diffLines(diff)[4].text).toBe("-from a");
  });
  it("is empty for no diff and keeps a removed line that starts with dashes", () => {
    expect(diffLines("")).toEqual([]);
    expect(diffLines("@@ -1 +1 @@\n--- a comment\n+x").map((l) => l.kind)).toEqual(["hunk", "file", "add"]);
    expect(diffLines("@@ -1 +1 @@\r\n-a\r\n+b").map((l) => l.text)).toEqual(["@@ -1 +1 @@", "-a", "+b"]);
  });
});

describe("changeText", () => {
  it.each([
    [null, "(none)"],
    [undefined, "(none)"],
    ["", '""'],
    ["Signups", "Signups"],
    [3, "3"],
    [{ type: "bar", y: ["n"] }, '{"type":"bar","y":["n"]}'],
  ])("%j reads %s", (value, text) => expect(changeText(value)).toBe(text));
});

describe("revisions", () => {
  it("labels a revision with who, when and where it was restored from", () => {
    const rev = { version: 3, created_by: "ada", created_at: "2026-12-02T09:00:00Z", restored_from: 1 };
    expect(revisionLabel(rev, () => "then")).toBe("v3 · ada · then · restored from v1");
    expect(revisionLabel({ ...rev, restored_from: null }, () => "then")).toBe("v3 · ada · then");
  });
  it("compares the newer against the older of two picks, whatever their order", () => {
    expect(comparePair([1, 3])).toEqual({ version: 3, against: 1 });
    expect(comparePair([4, 2])).toEqual({ version: 4, against: 2 });
    expect(comparePair([4])).toBeNull();
    expect(comparePair([])).toBeNull();
  });
  it("keeps at most the two latest picks", () => {
    expect(toggleSelected([], 3)).toEqual([3]);
    expect(toggleSelected([3], 1)).toEqual([3, 1]);
    expect(toggleSelected([3, 1], 2)).toEqual([1, 2]);
    expect(toggleSelected([3, 1], 3)).toEqual([1]);
  });
});

const insight = { id: 42, params: { region: ["EU", "US"], range: "last_7_days" } };

describe("alertBody", () => {
  it("builds a threshold alert on the insight with a Slack channel", () => {
    const d = { ...emptyDraft("Europe/Berlin"), name: "too few", column: "n", op: "<" as const, value: "10" };
    d.channels = [{ name: "ops", type: "slack", target: " https://hooks.example/x ", extra: "" }];
    expect(alertBody(d, insight, true)).toEqual({
      name: "too few",
      insight,
      rule: { type: "threshold", column: "n", op: "<", value: 10, rows: "first" },
      schedule: { cron: "0 9 * * *", timezone: "Europe/Berlin" },
      channels: { ops: { type: "slack", webhook_url: "https://hooks.example/x" } },
      notify_on_change_only: true,
      notify_resolved: true,
    });
  });
  it("compares a non-numeric threshold as text and builds every channel type", () => {
    const d = { ...emptyDraft("UTC"), name: "a", column: "status", op: "==" as const, value: "down", scheduleKind: "every" as const, every: "10m" };
    d.channels = [
      { name: "mail", type: "email", target: "a@example.com, b@example.com", extra: "[sqlbook]" },
      { name: "hook", type: "webhook", target: "https://example.com/h", extra: "s3cret" },
      { name: "teams", type: "teams", target: "https://example.com/t", extra: "" },
    ];
    const body = alertBody(d, insight, true);
    expect(body.rule).toEqual({ type: "threshold", column: "status", op: "==", value: "down", rows: "first" });
    expect(body.schedule).toEqual({ every: "10m", timezone: "UTC" });
    expect("channels" in body && body.channels).toEqual({
      mail: { type: "email", to: ["a@example.com", "b@example.com"], subject_prefix: "[sqlbook]" },
      hook: { type: "webhook", url: "https://example.com/h", secret: "s3cret" },
      teams: { type: "teams", webhook_url: "https://example.com/t" },
    });
  });
  it("builds rules without columns and a change rule", () => {
    const d = { ...emptyDraft("UTC"), name: "a", ruleType: "no_rows" as const, replaceChannels: false };
    expect(alertBody(d, insight, false).rule).toEqual({ type: "no_rows" });
    const c = { ...d, ruleType: "change" as const, column: "n", value: "20", direction: "down" as const, op: ">=" as const };
    expect(alertBody(c, insight, false).rule).toEqual({ type: "change", column: "n", measure: "percent", direction: "down", op: ">=", value: 20 });
  });
  it.each([
    [{ name: " " }, "name"],
    [{ column: "" }, "rule.column"],
    [{ value: "" }, "rule.value"],
    [{ ruleType: "change" as const, value: "lots" }, "rule.value"],
    [{ cron: "" }, "schedule"],
    [{ channels: [] }, "channels"],
    [{ channels: [{ name: "ops", type: "slack" as const, target: "", extra: "" }] }, "channels.ops"],
    [{ channels: [{ name: "a", type: "email" as const, target: " , ", extra: "" }] }, "channels.a"],
    [
      {
        channels: [
          { name: "x", type: "teams" as const, target: "https://a", extra: "" },
          { name: "x", type: "teams" as const, target: "https://b", extra: "" },
        ],
      },
      "channels.x",
    ],
  ])("refuses %j naming %s", (patch, field) => {
    const d = { ...emptyDraft("UTC"), name: "a", column: "n", value: "1", channels: [{ name: "ops", type: "slack" as const, target: "https://h", extra: "" }], ...patch };
    try {
      alertBody(d, insight, true);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(DraftProblem);
      expect((err as DraftProblem).field).toBe(field);
    }
  });
});

const stored: Alert = {
  id: 7,
  name: "few signups",
  enabled: true,
  state: "ok",
  next_due_at: null,
  last_evaluated_at: null,
  insight: { id: 42, params: {} },
  rule: { type: "change", column: "n", measure: "absolute", direction: "up", op: ">", value: 5 },
  schedule: { cron: null, timezone: "Europe/Paris", every_seconds: 7200 },
  channels: { ops: { type: "slack", webhook_url: "**********" } },
  notify_on_change_only: false,
  notify_resolved: true,
  created_at: "",
  updated_at: "",
};

describe("editing a stored alert", () => {
  it("fills the form and keeps the stored channels unless replaced", () => {
    const d = draftFromAlert(stored, "UTC");
    expect(d).toMatchObject({ name: "few signups", ruleType: "change", column: "n", value: "5", measure: "absolute", direction: "up", op: ">", scheduleKind: "every", every: "2h", timezone: "Europe/Paris", replaceChannels: false, notifyOnChangeOnly: false });
    expect(d.channels).toEqual([{ name: "ops", type: "slack", target: "", extra: "" }]);
    const body = alertBody(d, insight, false);
    expect("channels" in body).toBe(false);
    expect(body.schedule).toEqual({ every: "2h", timezone: "Europe/Paris" });
    expect(() => alertBody({ ...d, replaceChannels: true }, insight, false)).toThrow(DraftProblem);
  });
});

describe("list texts", () => {
  it("reads rules and schedules", () => {
    expect(ruleText({ type: "threshold", column: "n", op: ">=", value: 3, rows: "first" })).toBe("n >= 3");
    expect(ruleText({ type: "threshold", column: "n", op: ">=", value: 3, rows: "all" })).toBe("n >= 3 (all rows)");
    expect(ruleText(stored.rule)).toBe("n changes up > 5");
    expect(ruleText({ type: "change", column: "n", value: 20 })).toBe("n changes >= 20%");
    expect(ruleText({ type: "any_rows" })).toBe("any rows");
    expect(scheduleText(stored.schedule)).toBe("every 2h");
    expect(scheduleText({ cron: "0 9 * * 1-5", timezone: "UTC", every_seconds: null })).toBe("0 9 * * 1-5 (UTC)");
    expect(paramsText(insight.params)).toBe("region=EU,US · range=last_7_days");
    expect(paramsText({ range: { from: "2026-01-01", to: "2026-02-01" } })).toBe('range={"from":"2026-01-01","to":"2026-02-01"}');
    expect(paramsText({})).toBe("defaults");
    expect(cronText("0 9 * * 1-5")).toBe("weekdays at 09:00 (0 9 * * 1-5)");
    expect(cronText("5 4 * * *")).toBe("5 4 * * *");
  });
  it.each([
    ["rule.threshold.value: Input should be a finite number", "rule"],
    ["schedule: '0 9 *' is not a cron expression", "schedule"],
    ["channel 'ops': webhook_url: must be an http(s) URL", "channels"],
    ["channels: ops not configured (configured: none)", "channels"],
    ["owner_channel 'x' is not one of channels", "channels"],
    ["name: String should have at least 1 character", "name"],
    ["insight.params.region: not one of the options", "params"],
    ["an alert named 'x' exists", null],
  ])("places %j in %s", (message, section) => expect(problemSection(message)).toBe(section));
});

describe("asOfLabel", () => {
  const now = new Date("2026-12-03T12:00:00Z");
  it("gives the time alone for today, in the time zone asked", () => {
    expect(asOfLabel("2026-12-03T09:00:00Z", now, "UTC")).toBe("data as of 09:00");
    expect(asOfLabel("2026-12-03T09:05:00Z", now, "Europe/Berlin")).toBe("data as of 10:05");
    expect(asOfLabel("2026-12-03T00:30:00Z", now, "UTC")).toBe("data as of 00:30");
  });
  it("adds the day (and another year) otherwise", () => {
    expect(asOfLabel("2026-12-02T23:30:00Z", now, "UTC")).toBe("data as of 2 Dec 23:30");
    expect(asOfLabel("2026-12-02T23:30:00Z", now, "Europe/Berlin")).toBe("data as of 00:30");
    expect(asOfLabel("2025-12-31T08:00:00Z", now, "UTC")).toBe("data as of 31 Dec 2025 08:00");
    expect(asOfLabel("nonsense", now, "UTC")).toBe("data as of an unknown time");
  });
});

describe("the latest snapshot on the page", () => {
  const latest = {
    columns: [{ name: "n", type: "int4" }],
    rows: [[3]],
    row_count: 1,
    truncated: false,
    taken_at: "2026-12-03T09:01:00Z",
    data_as_of: "2026-12-03T09:00:00Z",
    schedule_id: 5,
    version: 2,
    parameters: { range: { from: "2026-11-26", to: "2026-12-03" } },
    params: { range: "last_7_days" },
  };
  const now = new Date("2026-12-03T14:00:00Z");
  it("says when its data is from and with which values (the schedule's own)", () => {
    expect(snapshotBanner(latest, now, "UTC")).toBe("Snapshot — data as of 09:00, values: range=last_7_days");
    expect(snapshotBanner({ ...latest, data_as_of: null, params: undefined }, now, "UTC")).toBe(
      'Snapshot — data as of 09:01, values: range={"from":"2026-11-26","to":"2026-12-03"}',
    );
  });
  it("becomes a run result the table and chart take", () => {
    const run = snapshotAsRun(latest, 42);
    expect(run).toMatchObject({ insight_id: 42, version: 2, rows: [[3]], elapsed_ms: 0, data_as_of: "2026-12-03T09:00:00Z" });
  });
});

describe("scheduleProblemField", () => {
  it.each([
    ["cron: not a cron expression", "cron"],
    ["timezone: unknown time zone Mars/Base", "timezone"],
    ["params.k: 'x' is not a number", "params"],
    ["params: too many", "params"],
    ["name: String should have at most 200 characters", "name"],
    ["no snapshot schedule 3 of insight 4", null],
    ["cronjob", null],
  ])("%s → %s", (message, field) => expect(scheduleProblemField(message)).toBe(field));
});

describe("historyText", () => {
  it("says the state change, a test, what it found and where it went", () => {
    const entry = {
      previous_state: "ok",
      state: "triggered",
      reason: "n > 5",
      test: true,
      evaluation: { summary: "n is 7 (> 5)", error: null, deliveries: [{ channel: "ops", ok: true }, { channel: "mail", ok: false }] },
    };
    expect(historyText(entry)).toBe("ok → triggered · test · n is 7 (> 5) · sent to ops, mail (failed)");
  });
  it("keeps a steady state short and prefers the error", () => {
    expect(historyText({ previous_state: "ok", state: "ok", reason: null, test: false, evaluation: null })).toBe("ok");
    expect(historyText({ previous_state: "ok", state: "error", reason: "x", test: false, evaluation: { error: "division by zero" } })).toBe("ok → error · division by zero");
  });
});
