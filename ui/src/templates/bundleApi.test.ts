import { describe, expect, it } from "vitest";
import { bundleFileName, exportPath, parseBundleText } from "./bundleApi";

describe("bundleFileName", () => {
  it("names the file as the server does: kind and a slug of the name", () => {
    expect(bundleFileName({ kind: "dashboard", name: "Plans to import" })).toBe("dashboard-plans-to-import.json");
    expect(bundleFileName({ kind: "insight", name: "  Revenue / MRR (EUR)!" })).toBe("insight-revenue-mrr-eur.json");
    expect(bundleFileName({ kind: "alert", name: "→→" })).toBe("alert-alert.json");
  });
});

describe("parseBundleText", () => {
  it("reads a bundle and says why a file is not one", () => {
    expect(parseBundleText('{"sqlbook_bundle": 1, "kind": "insight", "name": "x"}').name).toBe("x");
    expect(() => parseBundleText("{nope")).toThrow(/not JSON/);
    expect(() => parseBundleText('{"kind": "insight"}')).toThrow(/not a sqlbook bundle/);
    expect(() => parseBundleText("[1]")).toThrow(/not a sqlbook bundle/);
  });
});

describe("exportPath", () => {
  it("escapes a plugin's name", () => {
    expect(exportPath("plugin", "big number")).toBe("/api/export/plugin/big%20number");
    expect(exportPath("dashboard", 7)).toBe("/api/export/dashboard/7");
  });
});
