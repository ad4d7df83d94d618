// Server-sent events over a fetch() body: yields the data of each event.

const EVENT_END = /\r\n\r\n|\n\n|\r\r/;

/** The joined `data:` lines of one event block, or null when it has none. */
export function eventData(block) {
  const data = [];
  for (const line of block.split(/\r\n|\r|\n/)) {
    if (line.startsWith("data:")) {
      const value = line.slice(5);
      data.push(value.startsWith(" ") ? value.slice(1) : value);
    }
  }
  return data.length ? data.join("\n") : null;
}

/** Splits text into complete event blocks and the unfinished rest. */
export function splitEvents(buffer) {
  const blocks = [];
  let rest = buffer;
  for (;;) {
    const match = EVENT_END.exec(rest);
    if (!match) break;
    // A lone "\r" at the end may be half of "\r\n": wait for more text.
    if (match[0] === "\r\r" && match.index + 2 === rest.length) break;
    blocks.push(rest.slice(0, match.index));
    rest = rest.slice(match.index + match[0].length);
  }
  return { blocks, rest };
}

/** Async iterator over the data strings of a streamed SSE response body. */
export async function* sseData(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const { blocks, rest } = splitEvents(buffer + value);
      buffer = rest;
      for (const block of blocks) {
        const data = eventData(block);
        if (data !== null) yield data;
      }
    }
    const last = eventData(buffer);
    if (last !== null) yield last;
  } finally {
    reader.cancel().catch(() => {});
  }
}
