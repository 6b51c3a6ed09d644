import { describe, expect, it } from "vitest";
import { subscriptionChannel } from "../dashboards/subscriptionForm";
import { DraftProblem, channelConfig, newChannel, phoneNumbers } from "./alertForm";

const ACCOUNT = { accountSid: "AC0123", authToken: "tok", from: "+15017122661", baseUrl: "" };

describe("sms and whatsapp channels", () => {
  it("builds an sms channel from the form", () => {
    const c = { ...newChannel("sms", "phones"), target: "+1 (415) 555-0101, +447700900123", twilio: ACCOUNT };
    expect(channelConfig(c)).toEqual({ type: "sms", account_sid: "AC0123", auth_token: "tok", from: "+15017122661", to: ["+1 (415) 555-0101", "+447700900123"] });
  });
  it("takes a messaging service and a region's API root", () => {
    const mg = "MG" + "a".repeat(32);
    const c = { ...newChannel("whatsapp", "wa"), target: "whatsapp:+447700900123", twilio: { ...ACCOUNT, from: mg, baseUrl: " https://api.dublin.ie1.twilio.com " } };
    expect(channelConfig(c)).toEqual({ type: "whatsapp", account_sid: "AC0123", auth_token: "tok", messaging_service_sid: mg, to: ["whatsapp:+447700900123"], base_url: "https://api.dublin.ie1.twilio.com" });
  });
  it.each([
    ["", "channels.phones"],
    ["+14155550101, 555-0101", "channels.phones.to[1]"],
  ])("refuses the numbers %j naming %s", (numbers, field) => {
    try {
      phoneNumbers("channels.phones", numbers);
      throw new Error("accepted");
    } catch (err) {
      expect(err).toBeInstanceOf(DraftProblem);
      expect((err as DraftProblem).field).toBe(field);
    }
  });
  it("names the missing account field", () => {
    const c = { ...newChannel("sms", "phones"), target: "+14155550101", twilio: { ...ACCOUNT, authToken: " " } };
    expect(() => channelConfig(c)).toThrow("channels.phones.auth_token: required");
  });
  it("signs in with an API key when one is given", () => {
    const c = { ...newChannel("sms", "phones"), target: "+14155550101", twilio: { ...ACCOUNT, apiKeySid: " SK1 " } };
    expect(channelConfig(c)).toMatchObject({ account_sid: "AC0123", api_key_sid: "SK1", auth_token: "tok" });
  });
  it("a subscription takes them too", () => {
    const d = { name: "phones", type: "sms" as const, to: "+14155550101", twilio: ACCOUNT, slack: "webhook" as const, webhookUrl: "", token: "", channel: "" };
    expect(subscriptionChannel(d)).toMatchObject({ type: "sms", to: ["+14155550101"], from: "+15017122661" });
  });
});
