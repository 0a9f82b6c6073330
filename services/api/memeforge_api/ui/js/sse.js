// Server-sent events over fetch(): EventSource cannot send an Authorization header,
// and the API may need one. Yields {event, id, data} for each event in the stream.

import { api } from "./api.js";

export async function* events(path, { signal } = {}) {
  const response = await api(path, { headers: { accept: "text/event-stream" }, signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const message = { event: "message", id: "", data: "" };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue; // keep-alive comment
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (name === "data") message.data += (message.data ? "\n" : "") + text;
        else if (name === "event" || name === "id") message[name] = text;
      }
      if (message.data) yield message;
    }
  }
}
