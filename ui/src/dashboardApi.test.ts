import { describe, expect, it } from "vitest";
import { readNdjson } from "./dashboardApi";

/** A response body that hands over the text in the given pieces, as a network does. */
function body(pieces: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const piece of pieces) controller.enqueue(encoder.encode(piece));
      controller.close();
    },
  });
}

describe("readNdjson", () => {
  it("calls back once a line, whatever the chunks", async () => {
    const seen: unknown[] = [];
    await readNdjson(body(['{"tile_id": 1, "sour', 'ce": "live"}\n{"tile_id"', ': 2}\n', '\n{"tile_id": 3}']), (line) => seen.push(line));
    expect(seen).toEqual([{ tile_id: 1, source: "live" }, { tile_id: 2 }, { tile_id: 3 }]);
  });

  it("keeps a multi-byte character split over two chunks", async () => {
    const bytes = new TextEncoder().encode('{"name": "Umsatz €"}\n');
    const cut = bytes.indexOf(0xe2) + 1; // inside the euro sign
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.slice(0, cut));
        controller.enqueue(bytes.slice(cut));
        controller.close();
      },
    });
    const seen: unknown[] = [];
    await readNdjson(stream, (line) => seen.push(line));
    expect(seen).toEqual([{ name: "Umsatz €" }]);
  });

  it("hands over each line before the stream ends", async () => {
    const encoder = new TextEncoder();
    let push: ((text: string | null) => void) | undefined;
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        push = (text) => (text === null ? controller.close() : controller.enqueue(encoder.encode(text)));
      },
    });
    const seen: unknown[] = [];
    const done = readNdjson(stream, (line) => seen.push(line));
    push?.('{"tile_id": 1}\n');
    await new Promise((r) => setTimeout(r, 0));
    expect(seen).toEqual([{ tile_id: 1 }]);
    push?.(null);
    await done;
  });
});
