import { describe, expect, it } from "vitest";
import { DraftProblem } from "../insights/alertForm";
import type { Subscription } from "./panelsApi";
import {
  deliveryText,
  draftFromSubscription,
  emptySubscriptionDraft,
  newSubscriptionChannel,
  subscriptionBody,
  subscriptionProblemSection,
} from "./subscriptionForm";

describe("subscription drafts", () => {
  it("becomes the body the API takes, with email and both kinds of Slack channel", () => {
    const d = emptySubscriptionDraft("Europe/Berlin");
    d.name = "Morning";
    d.channels = [
      { ...newSubscriptionChannel("email", "team"), to: "a@example.com, b@example.com" },
      { ...newSubscriptionChannel("slack", "hook"), webhookUrl: "https://hooks.slack.test/x" },
      { ...newSubscriptionChannel("slack", "bot"), slack: "bot", token: "xoxb-1", channel: "C1" },
    ];
    d.pictures = "tiles";
    d.csvTiles = [4];
    expect(subscriptionBody(d, { range: "last_7_days" }, true)).toEqual({
      name: "Morning",
      cron: "0 8 * * 1-5",
      timezone: "Europe/Berlin",
      pictures: "tiles",
      csv_tiles: [4],
      filters: { range: "last_7_days" },
      enabled: true,
      channels: {
        team: { type: "email", to: ["a@example.com", "b@example.com"] },
        hook: { type: "slack", webhook_url: "https://hooks.slack.test/x" },
        bot: { type: "slack", token: "xoxb-1", channel: "C1" },
      },
    });
  });

  it("names the field that is missing", () => {
    const d = emptySubscriptionDraft("UTC");
    expect(() => subscriptionBody(d, {}, true)).toThrow(DraftProblem);
    d.name = "x";
    expect(() => subscriptionBody(d, {}, true)).toThrow("channels.email.to: required");
    d.channels = [{ ...newSubscriptionChannel("slack", "s"), slack: "bot", token: "t" }];
    expect(() => subscriptionBody(d, {}, true)).toThrow("channels.s.channel: required");
  });

  it("keeps stored (masked) channels when editing unless they are replaced", () => {
    const stored: Subscription = {
      id: 1,
      dashboard_id: 2,
      name: "Daily",
      cron: "0 9 * * *",
      timezone: "UTC",
      channels: { team: { type: "email", to: ["a@example.com"] } },
      pictures: "dashboard",
      csv_tiles: [],
      filters: {},
      enabled: false,
      next_due_at: null,
    };
    const d = draftFromSubscription(stored);
    expect(subscriptionBody(d, {}, false)).not.toHaveProperty("channels");
    expect(subscriptionBody(d, {}, false).enabled).toBe(false);
  });

  it("puts an API message next to the part of the form it names", () => {
    expect(subscriptionProblemSection("channels.team.to.0: example.org is not an allowed domain (allowed: corp.test)")).toBe("channels");
    expect(subscriptionProblemSection("cron: not a cron")).toBe("schedule");
    expect(subscriptionProblemSection("timezone: unknown")).toBe("schedule");
    expect(subscriptionProblemSection("filters.range: bad")).toBe("filters");
    expect(subscriptionProblemSection("csv_tiles.0: no tile 9")).toBe("pictures");
    expect(subscriptionProblemSection("something else")).toBeNull();
  });

  it("reads a delivery", () => {
    expect(
      deliveryText({
        id: 1,
        subscription_id: 1,
        sent_at: "2026-12-03T08:00:00Z",
        status: "partial",
        deliveries: [
          { channel: "team", type: "email", ok: true, error: null },
          { channel: "ops", type: "slack", ok: false, error: "timeout" },
        ],
        summary: { tiles: 3, tile_errors: 1, pictures: 1, csv_files: 2 },
        error: null,
      }),
    ).toBe("3 tiles, 1 failed, 1 picture, 2 CSV · team ok, ops failed (timeout)");
  });
});
