// A meme's page: its state live over the SSE endpoint, then the image, a download and
// a copy-link button; FAILED says why in words.

import { apiJson, presigned } from "./api.js";
import { h, problemBox, showProblem, formatTime } from "./dom.js";
import { events } from "./sse.js";

const STEPS = ["PENDING", "QUEUED", "RENDERING", "DONE"];
const OPTIONAL = new Set(["QUEUED", "RENDERING"]);
const REASONS = {
  template_not_found: "The template does not exist (or no longer does).",
  corrupt_image: "The template image could not be decoded.",
  image_too_large: "The template image has too many pixels to render.",
  unsupported_format: "That output format is not supported.",
  caption_too_long: "A caption is too long to fit.",
  empty_caption: "There was no caption to draw.",
  render_error: "The renderer could not draw this meme.",
  retries_exhausted: "It failed too many times in a row and was given up on.",
  poison_message: "Its job could not be read by the workers.",
  stuck: "It got stuck and was given up on.",
};

export function reasonInWords(failure) {
  const words = REASONS[failure.reason] || `It failed (${failure.reason}).`;
  return failure.detail ? `${words} Detail: ${failure.detail}` : words;
}

export function render(main, signal, memeId) {
  const states = h("ol", { class: "states", id: "states", "aria-label": "Progress" });
  const status = h("p", { id: "status", role: "status" }, "Waiting for the first update…");
  const error = problemBox(null);
  const result = h("div", { class: "result", id: "result" });
  main.append(h("h1", {}, "Your meme"), states, status, error, result);

  let last = null;
  function update(meme) {
    last = meme;
    const failed = meme.state === "FAILED";
    // QUEUED and RENDERING show only when reached: the consumer writes no QUEUED (items
    // of an older one have it), and a fast render goes PENDING → DONE in one write.
    const shown = STEPS.filter((s) => !OPTIONAL.has(s) || meme.state_times[s]);
    const steps = failed ? [...shown.filter((s) => s !== "DONE" && meme.state_times[s]), "FAILED"] : shown;
    states.replaceChildren(...steps.map((step) => {
      const at = meme.state_times[step];
      return h("li", { class: at ? (step === "FAILED" ? "failed" : "reached") : "", "data-state": step },
        step, at ? h("time", { dateTime: at }, formatTime(at)) : h("span", { class: "visually-hidden" }, " (not yet)"));
    }));
    if (meme.state === "DONE") {
      status.textContent = "Done.";
      showResult(meme).catch((err) => { if (!signal.aborted) showProblem(error, err); });
    } else if (failed) {
      status.textContent = "";
      error.replaceChildren(h("strong", {}, "This meme failed. "), reasonInWords(meme.failure));
    } else {
      status.textContent = `${meme.state[0]}${meme.state.slice(1).toLowerCase()}…`;
    }
  }

  async function showResult(meme) {
    const { url: link, expires_in: ttl } = await presigned(meme.links.image, signal);
    const minutes = Math.round(ttl / 60);
    const copied = h("p", { class: "notice", role: "status" });
    const ext = meme.result.content_type.split("/")[1] || "img";
    result.replaceChildren(
      h("img", { src: link, alt: "The finished meme", id: "meme-image",
        width: meme.result.width, height: meme.result.height }),
      h("div", { class: "actions" },
        h("a", { class: "button", href: link, download: `meme-${meme.id}.${ext}`, id: "download" }, "Download"),
        h("button", { type: "button", class: "secondary", id: "copy-link", onclick: async () => {
          try {
            await navigator.clipboard.writeText(link);
            copied.textContent = `Link copied. It works for ${minutes} minutes.`;
          } catch {
            copied.textContent = `Copy this link: ${link}`;
          }
        } }, "Copy link"),
        h("a", { class: "button secondary", href: `#/edit/${meme.template_id}` }, "Caption it again")),
      copied);
  }

  (async () => {
    try {
      for await (const message of events(`/memes/${memeId}/events`, { signal })) {
        if (message.event === "state") update(JSON.parse(message.data));
      }
      // The stream ends after DONE/FAILED, or at its timeout: then long-poll until terminal.
      while (!signal.aborted && (!last || !["DONE", "FAILED"].includes(last.state))) {
        update(await apiJson(`/memes/${memeId}?wait=20`, { signal }));
      }
    } catch (err) {
      if (!signal.aborted) showProblem(error, err);
    }
  })();
}
