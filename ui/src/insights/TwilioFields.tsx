import type { TwilioDraft } from "./alertForm";

/** The Twilio account of an sms or whatsapp channel: Account SID, auth token (a secret:
 * stored sealed, shown masked), the sending number or messaging service, and an optional
 * API root (a Twilio region). The phone numbers that receive are the channel's target. */
export function TwilioFields({ type, value, numbers, invalid, onChange, onNumbers }: { type: "sms" | "whatsapp"; value: TwilioDraft; numbers: string; invalid?: boolean; onChange(next: TwilioDraft): void; onNumbers(next: string): void }) {
  const set = (patch: Partial<TwilioDraft>) => onChange({ ...value, ...patch });
  return (
    <>
      <label className="wide">
        {type === "whatsapp" ? "WhatsApp numbers" : "Phone numbers"}
        <input value={numbers} type="text" inputMode="tel" aria-invalid={invalid} placeholder="+14155550100, +447700900123" autoComplete="off" onChange={(e) => onNumbers(e.target.value)} />
      </label>
      <label>
        Account SID
        <input value={value.accountSid} aria-invalid={invalid} placeholder="AC…" autoComplete="off" onChange={(e) => set({ accountSid: e.target.value })} />
      </label>
      <label>
        Auth token
        <input value={value.authToken} type="password" aria-invalid={invalid} autoComplete="off" onChange={(e) => set({ authToken: e.target.value })} />
      </label>
      <label>
        API key SID
        <input value={value.apiKeySid ?? ""} placeholder="optional: SK…" autoComplete="off" title="optional: an API key of the account; its secret goes in Auth token" onChange={(e) => set({ apiKeySid: e.target.value })} />
      </label>
      <label>
        From
        <input value={value.from} aria-invalid={invalid} placeholder={type === "whatsapp" ? "+14155238886 or MG…" : "+15017122661 or MG…"} autoComplete="off" title="a number of the Twilio account, or a messaging service SID (MG…)" onChange={(e) => set({ from: e.target.value })} />
      </label>
      <label>
        Twilio API URL
        <input value={value.baseUrl} type="url" placeholder="https://api.twilio.com" autoComplete="off" title="optional: a Twilio region's API root" onChange={(e) => set({ baseUrl: e.target.value })} />
      </label>
    </>
  );
}
