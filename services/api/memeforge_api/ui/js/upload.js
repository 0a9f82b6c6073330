// Add a template: drag & drop or pick a file, name it, optionally give default boxes.

import { api } from "./api.js";
import { h, field, problemBox, showProblem } from "./dom.js";

export function render(main) {
  const file = h("input", { type: "file", id: "file", accept: "image/jpeg,image/png,image/webp,image/gif", required: true });
  const preview = h("img", { alt: "", hidden: true });
  const chosen = h("p", { class: "hint", id: "chosen", "aria-live": "polite" }, "No file chosen yet.");
  const drop = h("div", { class: "drop", id: "drop" },
    h("p", {}, "Drop an image here, or"),
    field("Choose an image", file, "JPEG, PNG, WebP or GIF."),
    chosen, preview);
  const name = h("input", { id: "name", required: true, maxLength: 200, autocomplete: "off" });
  const boxes = h("textarea", { id: "boxes", rows: 4, spellcheck: false,
    placeholder: '[{"x":0.05,"y":0.05,"width":0.9,"height":0.2}]' });
  const error = problemBox(null);
  const submit = h("button", { type: "submit" }, "Upload template");
  const form = h("form", { class: "narrow", id: "upload-form", novalidate: true },
    drop,
    field("Name", name),
    field("Default boxes (optional)", boxes,
      "JSON list of boxes in fractions of the image (x, y, width, height, optional style). Leave empty for a caption on top and one at the bottom."),
    error, h("div", { class: "actions" }, submit));
  main.append(h("h1", {}, "Add a template"), form);

  let picked = null;
  function pick(selected) {
    if (!selected) return;
    picked = selected;
    chosen.textContent = `${selected.name} (${Math.ceil(selected.size / 1024)} KiB)`;
    if (!name.value) name.value = selected.name.replace(/\.[^.]+$/, "").replace(/[-_]+/g, " ");
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(selected);
    preview.hidden = false;
  }
  file.addEventListener("change", () => pick(file.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    pick(e.dataTransfer.files[0]);
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!picked) return showProblem(error, new Error("choose an image first"));
    if (!name.value.trim()) return showProblem(error, new Error("give the template a name"));
    const body = new FormData();
    body.append("file", picked);
    body.append("name", name.value.trim());
    if (boxes.value.trim()) body.append("boxes", boxes.value.trim());
    submit.disabled = true;
    showProblem(error, null);
    try {
      const template = await (await api("/templates", { method: "POST", body })).json();
      location.hash = `#/edit/${template.id}`;
    } catch (err) {
      showProblem(error, err);
      error.focus?.();
    } finally {
      submit.disabled = false;
    }
  });
}
