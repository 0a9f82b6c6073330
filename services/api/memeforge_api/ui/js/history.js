// My memes (GET /memes): their states, a link to each, and delete.

import { api, apiJson } from "./api.js";
import { h, problemBox, showProblem, formatTime } from "./dom.js";

export function render(main, signal) {
  const list = h("ul", { class: "history", id: "history" });
  const error = problemBox(null);
  const more = h("button", { type: "button", class: "secondary", hidden: true, onclick: () => load() }, "Load more");
  main.append(h("h1", {}, "My memes"), error, list, h("div", { class: "more" }, more));
  let cursor = null;

  function row(meme) {
    const remove = h("button", { type: "button", class: "danger" }, "Delete");
    remove.setAttribute("aria-label", `Delete meme ${meme.id.slice(0, 8)}`);
    const li = h("li", { "data-meme": meme.id },
      h("a", { class: "grow", href: `#/memes/${meme.id}` }, `${meme.template_id} · ${meme.id.slice(0, 8)}`),
      h("span", {}, meme.state),
      h("time", { dateTime: meme.created_at }, formatTime(meme.created_at)),
      remove);
    remove.addEventListener("click", async () => {
      remove.disabled = true;
      try {
        await api(`/memes/${meme.id}`, { method: "DELETE" });
        li.remove();
        if (!list.children.length) list.append(h("li", {}, "No memes left."));
      } catch (err) {
        showProblem(error, err);
        remove.disabled = false;
      }
    });
    return li;
  }

  async function load() {
    try {
      const query = new URLSearchParams({ limit: "20" });
      if (cursor) query.set("cursor", cursor);
      const page = await apiJson(`/memes?${query}`, { signal });
      list.append(...page.items.map(row));
      if (!list.children.length) list.append(h("li", {}, "No memes yet: pick a template to make one."));
      cursor = page.next_cursor;
      more.hidden = !cursor;
    } catch (err) {
      if (!signal.aborted) showProblem(error, err);
    }
  }
  load();
}
