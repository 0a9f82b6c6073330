// Gallery: template thumbnails, paged with the API's cursor, filtered by name.

import { apiJson, presigned } from "./api.js";
import { h, field, problemBox } from "./dom.js";

const PAGE = 24;
const MAX_PAGES_PER_LOAD = 5;

export function render(main, signal) {
  let cursor = null;
  let loaded = [];
  const filter = h("input", { type: "search", id: "filter", autocomplete: "off", placeholder: "e.g. cat" });
  const list = h("ul", { class: "gallery", id: "gallery", "aria-live": "polite" });
  const status = h("div");
  const more = h("button", { type: "button", class: "secondary", id: "load-more", hidden: true, onclick: load }, "Load more");
  main.append(
    h("h1", {}, "Pick a template"),
    h("div", { class: "toolbar" },
      h("div", { class: "filter" }, field("Filter by name", filter)),
      h("a", { class: "button secondary", href: "#/upload" }, "Add a template")),
    status, list, h("div", { class: "more" }, more),
  );
  filter.addEventListener("input", draw);

  const urls = new Map(); // template id → presigned image URL, fetched once per page view
  function thumbnail(t) {
    const img = h("img", { alt: "", width: 160, height: 120 });
    if (!urls.has(t.id)) urls.set(t.id, presigned(t.links.image, signal).then((p) => p.url));
    urls.get(t.id).then((url) => { img.src = url; }, () => { img.alt = "(image unavailable)"; });
    return img;
  }

  function matches(t) {
    const q = filter.value.trim().toLowerCase();
    return !q || t.name.toLowerCase().includes(q) || t.id.includes(q);
  }

  function draw() {
    const shown = loaded.filter(matches);
    list.replaceChildren(...shown.map((t) =>
      h("li", {}, h("a", { href: `#/edit/${t.id}`, "data-template": t.id },
        thumbnail(t), h("span", {}, t.name)))));
    status.replaceChildren();
    if (!loaded.length) {
      status.append(h("div", { class: "empty" }, h("p", {}, "No templates yet."),
        h("a", { class: "button", href: "#/upload" }, "Add the first one")));
    } else if (!shown.length) {
      status.append(h("p", { class: "empty" }, cursor
        ? `No loaded template matches “${filter.value}”. Load more to search further.`
        : `No template matches “${filter.value}”.`));
    }
    more.hidden = !cursor;
  }

  async function load() {
    more.disabled = true;
    try {
      // A page may hold fewer items than asked (even none, e.g. where the caller's own
      // templates end and the public ones begin): follow the cursor, a few pages at most.
      let fetched = 0;
      for (let pages = 0; pages < MAX_PAGES_PER_LOAD; pages++) {
        const query = new URLSearchParams({ limit: String(PAGE - fetched) });
        if (cursor) query.set("cursor", cursor);
        const page = await apiJson(`/templates?${query}`, { signal });
        loaded = loaded.concat(page.items);
        fetched += page.items.length;
        cursor = page.next_cursor;
        if (!cursor || fetched >= PAGE) break;
      }
      draw();
    } catch (error) {
      if (signal.aborted) return;
      status.replaceChildren(problemBox(error),
        h("button", { type: "button", onclick: load }, "Try again"));
    } finally {
      more.disabled = false;
    }
  }
  load();
}
