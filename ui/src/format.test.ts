import { describe, expect, it } from "vitest";
import { cellText, compareCells, elapsedSince, formatAge, formatDuration, runningLabel, toCsv, toTsv } from "./format";

describe("toCsv", () => {
  it("quotes what needs quoting and leaves NULL empty", () => {
    const csv = toCsv(["name", "n", "props"], [
      ['say "hi", ok', 1, { a: [1, 2] }],
      [null, 2.5, null],
      ["line\nbreak", -1, "plain"],
    ]);
    expect(csv).toBe(
      'name,n,props\r\n"say ""hi"", ok",1,"{""a"":[1,2]}"\r\n,2.5,\r\n"line\nbreak",-1,plain\r\n',
    );
  });
});

describe("toTsv", () => {
  it("flattens tabs and newlines", () => {
    expect(toTsv(["a", "b"], [["x\ty", null], ["1\n2", true]])).toBe("a\tb\nx y\t\n1 2\ttrue");
  });
});

describe("compareCells", () => {
  it("sorts numbers numerically, numeric strings too, NULLs last", () => {
    const values = [10, null, 9, 100];
    expect([...values].sort(compareCells)).toEqual([9, 10, 100, null]);
    expect(["10", "9", "100"].sort(compareCells)).toEqual(["9", "10", "100"]);
    expect(["b", null, "a"].sort(compareCells)).toEqual(["a", "b", null]);
  });
});

describe("cellText and durations", () => {
  it("renders JSON compactly", () => {
    expect(cellText({ plan: "pro" })).toBe('{"plan":"pro"}');
    expect(cellText(false)).toBe("false");
  });
  it("formats durations and ages", () => {
    expect(formatDuration(12.3)).toBe("12 ms");
    expect(formatDuration(1530)).toBe("1.5 s");
    expect(formatDuration(125_000)).toBe("2 min 5 s");
    expect(formatAge(12.3)).toBe("12 s ago");
    expect(formatAge(300)).toBe("5 min ago");
  });
});

describe("the running timer", () => {
  it("never reads a negative time", () => {
    // a start time later than the clock read (a stale "now", a clock set back): 0, not -745 ms
    expect(runningLabel(10_745, 10_000)).toBe("Running… 0 ms");
    expect(formatDuration(-745)).toBe("0 ms");
    expect(formatDuration(Number.NaN)).toBe("0 ms");
    expect(elapsedSince(500, 200)).toBe(0);
  });
  it("counts up from the submission", () => {
    expect(runningLabel(1000, 1000)).toBe("Running… 0 ms");
    expect(runningLabel(1000, 1745)).toBe("Running… 745 ms");
    expect(runningLabel(1000, 3500)).toBe("Running… 2.5 s");
    expect(elapsedSince(200, 500)).toBe(300);
  });
});
