import { useId, useState } from "react";
import { CRON_PRESETS } from "./snapshotTime";

/** A time zone field that offers the IANA names the browser knows while typing. */
export function TimeZoneInput({ value, onChange, invalid }: { value: string; onChange(zone: string): void; invalid?: boolean }) {
  const list = useId();
  const [zones] = useState<string[]>(() => {
    try {
      return Intl.supportedValuesOf("timeZone");
    } catch {
      return ["UTC"];
    }
  });
  return (
    <label>
      Time zone
      <input value={value} list={list} aria-invalid={invalid || undefined} autoComplete="off" onChange={(e) => onChange(e.target.value)} />
      <datalist id={list}>
        {zones.map((z) => (
          <option key={z} value={z} />
        ))}
      </datalist>
    </label>
  );
}

/** A cron field that offers a few presets (every hour, every day at 09:00, …). */
export function CronInput({ value, onChange, invalid }: { value: string; onChange(cron: string): void; invalid?: boolean }) {
  const list = useId();
  return (
    <label>
      Cron
      <input value={value} list={list} aria-invalid={invalid || undefined} placeholder="0 9 * * 1-5" autoComplete="off" onChange={(e) => onChange(e.target.value)} />
      <datalist id={list}>
        {CRON_PRESETS.map((p) => (
          <option key={p.cron} value={p.cron}>
            {p.label}
          </option>
        ))}
      </datalist>
    </label>
  );
}
