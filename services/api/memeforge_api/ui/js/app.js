// Hash router: each page is a module exporting render(main, ...params).

import * as gallery from "./gallery.js";
import * as upload from "./upload.js";
import * as editor from "./editor.js";
import * as follow from "./follow.js";
import * as history from "./history.js";

const routes = [
  [/^#?\/?$/, gallery, "Templates"],
  [/^#\/upload$/, upload, "Add a template"],
  [/^#\/edit\/([A-Za-z0-9_-]+)$/, editor, "Editor"],
  [/^#\/memes\/([0-9a-f]+)$/, follow, "Meme"],
  [/^#\/history$/, history, "My memes"],
];

let current = null; // the page's AbortController: leaving a page stops its streams

function show() {
  const main = document.getElementById("main");
  current?.abort();
  current = new AbortController();
  const hash = location.hash || "#/";
  const route = routes.find(([pattern]) => pattern.test(hash));
  main.replaceChildren();
  if (!route) {
    document.title = "Not found · memeforge";
    main.append(Object.assign(document.createElement("h1"), { textContent: "Page not found" }));
    return;
  }
  const [pattern, page, title] = route;
  document.title = `${title} · memeforge`;
  page.render(main, current.signal, ...hash.match(pattern).slice(1));
  if (document.activeElement && document.activeElement !== document.body) main.focus();
}

/** History shows only where the API has "my memes" (GET /memes in its OpenAPI). */
async function detectHistory() {
  try {
    const spec = await (await fetch("/openapi.json")).json();
    document.getElementById("nav-history").hidden = !spec.paths?.["/memes"]?.get;
  } catch {
    /* no description to read: leave it hidden */
  }
}

window.addEventListener("hashchange", show);
show();
detectHistory();
