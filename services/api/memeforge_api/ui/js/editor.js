// Editor: the template with its boxes; add, drag, resize, delete and style boxes, see
// the captions live, pick the output, and create the meme.

import { apiJson, postJson, presigned } from "./api.js";
import { h, field, problemBox, showProblem } from "./dom.js";
import { drawPreview, fontsReady } from "./preview.js";

const MIN_SIDE = 0.03; // smallest box side, as a fraction of the image
const STEP = 0.01; // arrow keys move or resize by 1 % of the image (10 % with Alt)

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
const round = (v) => Math.round(v * 10000) / 10000;

function newBox() {
  return { text: "", x: 0.1, y: 0.4, width: 0.8, height: 0.2, font: "anton", color: "#ffffff",
    outline_color: "#000000", outline_width: null, align: "center", valign: "middle",
    case: "upper", rotation: 0 };
}

export async function render(main, signal, templateId) {
  const error = problemBox(null);
  main.append(h("h1", {}, "Loading…"), error);
  let template;
  try {
    template = await apiJson(`/templates/${templateId}`, { signal });
  } catch (err) {
    if (signal.aborted) return;
    main.querySelector("h1").textContent = "Template not available";
    showProblem(error, err);
    main.append(h("a", { href: "#/" }, "Back to the templates"));
    return;
  }
  const boxes = template.boxes.map((b) => ({ ...newBox(), ...b, text: "" }));
  let selected = boxes.length ? 0 : -1;

  const image = h("img", { alt: `Template: ${template.name}`, width: template.width, height: template.height });
  presigned(template.links.image, signal).then((p) => { image.src = p.url; },
    (err) => { if (!signal.aborted) showProblem(error, err); });
  const canvas = h("canvas", { id: "preview", "aria-hidden": "true" });
  const stage = h("div", { class: "stage", id: "stage" }, image, canvas);
  const moveHint = h("p", { class: "hint", id: "box-keys" },
    "Click a box, or pick it in “Edit box”. On the selected box, arrow keys move it, Shift+arrows resize it, Alt takes bigger steps, Delete removes it.");
  const boxPanel = h("fieldset", { id: "box-panel" });
  const format = h("select", { id: "format" }, ["jpeg", "png", "webp"].map((f) => h("option", { value: f }, f.toUpperCase())));
  const maxSide = h("input", { id: "max-side", type: "number", min: 16, max: 8192, inputMode: "numeric", placeholder: "original" });
  const thumb = h("input", { id: "thumbnail-side", type: "number", min: 16, max: 1024, inputMode: "numeric", placeholder: "none" });
  const create = h("button", { type: "submit", id: "create" }, "Create meme");
  const form = h("form", { class: "panel", id: "editor-form", novalidate: true },
    boxPanel,
    h("fieldset", {}, h("legend", {}, "Output"),
      field("Format", format),
      h("div", { class: "row" },
        field("Longest side (px)", maxSide, "Empty keeps the template's size."),
        field("Thumbnail side (px)", thumb, "Empty: no thumbnail."))),
    error, h("div", { class: "actions" }, create));
  main.querySelector("h1").textContent = `Caption “${template.name}”`;
  main.append(h("div", { class: "editor" }, h("div", { class: "canvas-col" }, stage, moveHint), form));

  const redraw = () => drawPreview(canvas, boxes, template.width, template.height);
  fontsReady().then(redraw);

  function place(el, box) {
    el.style.left = `${box.x * 100}%`;
    el.style.top = `${box.y * 100}%`;
    el.style.width = `${box.width * 100}%`;
    el.style.height = `${box.height * 100}%`;
    el.style.transform = box.rotation ? `rotate(${-box.rotation}deg)` : "";
  }

  function label(i) {
    const text = boxes[i].text.trim();
    return `Box ${i + 1} of ${boxes.length}${text ? `: ${text}` : ", empty"}`;
  }

  function drawBoxes(focusIndex) {
    stage.querySelectorAll(".box").forEach((el) => el.remove());
    boxes.forEach((box, i) => {
      const el = h("button", { type: "button", class: i === selected ? "box selected" : "box",
        "data-box": String(i), "aria-label": label(i), "aria-describedby": "box-keys",
        "aria-pressed": String(i === selected), tabIndex: i === selected ? 0 : -1 },
        h("span", { class: "handle", "data-handle": "resize", "aria-hidden": "true" }));
      place(el, box);
      el.addEventListener("pointerdown", (e) => startDrag(e, i, e.target.dataset.handle === "resize"));
      el.addEventListener("focus", () => select(i, false));
      el.addEventListener("keydown", (e) => onBoxKey(e, i));
      stage.append(el);
    });
    if (focusIndex !== undefined) stage.querySelector(`[data-box="${focusIndex}"]`)?.focus();
  }

  function refreshBox(i) {
    const el = stage.querySelector(`[data-box="${i}"]`);
    if (!el) return;
    place(el, boxes[i]);
    el.setAttribute("aria-label", label(i));
    const option = boxPanel.querySelector(`#box-choice option[value="${i}"]`);
    if (option) option.textContent = label(i);
    redraw();
  }

  function select(i, rebuild = true) {
    if (selected === i) return;
    selected = i;
    stage.querySelectorAll(".box").forEach((el) => {
      const on = Number(el.dataset.box) === i;
      el.classList.toggle("selected", on);
      el.setAttribute("aria-pressed", String(on));
      el.tabIndex = on ? 0 : -1; // roving: Tab goes from the selected box to its fields
    });
    if (rebuild) drawBoxes();
    drawPanel();
  }

  function move(i, dx, dy, dw, dh) {
    const b = boxes[i];
    b.width = clamp(b.width + dw, MIN_SIDE, 1);
    b.height = clamp(b.height + dh, MIN_SIDE, 1);
    b.x = clamp(b.x + dx, 0, 1 - b.width);
    b.y = clamp(b.y + dy, 0, 1 - b.height);
    refreshBox(i);
    if (i === selected) syncGeometry();
  }

  function startDrag(event, i, resize) {
    event.preventDefault();
    const el = event.currentTarget;
    el.focus();
    select(i, false);
    const rect = stage.getBoundingClientRect();
    let lastX = event.clientX;
    let lastY = event.clientY;
    el.setPointerCapture(event.pointerId);
    const onMove = (e) => {
      const dx = (e.clientX - lastX) / rect.width;
      const dy = (e.clientY - lastY) / rect.height;
      lastX = e.clientX;
      lastY = e.clientY;
      if (resize) move(i, 0, 0, dx, dy);
      else move(i, dx, dy, 0, 0);
    };
    const onUp = () => {
      el.removeEventListener("pointermove", onMove);
      el.removeEventListener("pointerup", onUp);
      el.removeEventListener("pointercancel", onUp);
    };
    el.addEventListener("pointermove", onMove);
    el.addEventListener("pointerup", onUp);
    el.addEventListener("pointercancel", onUp);
  }

  function onBoxKey(event, i) {
    const step = event.altKey ? STEP * 10 : STEP;
    const arrows = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (event.key in arrows) {
      event.preventDefault();
      const [dx, dy] = arrows[event.key];
      if (event.shiftKey) move(i, 0, 0, dx, dy);
      else move(i, dx, dy, 0, 0);
    } else if (event.key === "Delete" || event.key === "Backspace") {
      event.preventDefault();
      removeBox(i);
    }
  }

  function addBox() {
    boxes.push(newBox());
    selected = boxes.length - 1;
    drawBoxes();
    drawPanel();
    boxPanel.querySelector("#box-text")?.focus();
  }

  function removeBox(i) {
    boxes.splice(i, 1);
    selected = Math.min(i, boxes.length - 1);
    drawBoxes(selected >= 0 ? selected : undefined);
    drawPanel();
    redraw();
    if (selected < 0) boxPanel.querySelector("#add-box")?.focus();
  }

  const geometry = {};
  function syncGeometry() {
    const b = boxes[selected];
    for (const key of ["x", "y", "width", "height"]) {
      if (geometry[key] && document.activeElement !== geometry[key]) geometry[key].value = (b[key] * 100).toFixed(1);
    }
  }

  function drawPanel() {
    boxPanel.replaceChildren(h("legend", {}, selected >= 0 ? `Box ${selected + 1} of ${boxes.length}` : "Boxes"));
    const addButton = h("button", { type: "button", class: "secondary", id: "add-box", onclick: addBox }, "Add box");
    if (selected < 0) {
      boxPanel.append(h("p", {}, "No boxes: add one to write a caption."), addButton);
      return;
    }
    const b = boxes[selected];
    const i = selected;
    const choice = h("select", { id: "box-choice" },
      boxes.map((_, k) => h("option", { value: String(k), selected: k === i }, label(k))));
    choice.addEventListener("change", () => {
      select(Number(choice.value));
      boxPanel.querySelector("#box-choice")?.focus();
    });
    const bind = (el, key, parse = (v) => v) => {
      el.value = b[key] ?? "";
      el.addEventListener("input", () => {
        b[key] = parse(el.value);
        refreshBox(i);
      });
      return el;
    };
    const text = bind(h("textarea", { id: "box-text", rows: 2, maxLength: 500 }), "text");
    const font = bind(h("select", { id: "box-font" },
      h("option", { value: "anton" }, "Anton (classic)"), h("option", { value: "noto-sans" }, "Noto Sans ExtraBold")), "font");
    const color = bind(h("input", { type: "color", id: "box-color" }), "color");
    const outlineColor = bind(h("input", { type: "color", id: "box-outline-color" }), "outline_color");
    const outlineWidth = bind(h("input", { type: "number", id: "box-outline-width", min: 0, max: 0.25, step: 0.01, placeholder: "auto" }),
      "outline_width", (v) => (v === "" ? null : clamp(Number(v), 0, 0.25)));
    const align = bind(h("select", { id: "box-align" }, ["left", "center", "right"].map((a) => h("option", { value: a }, a))), "align");
    const valign = bind(h("select", { id: "box-valign" }, ["top", "middle", "bottom"].map((a) => h("option", { value: a }, a))), "valign");
    const rotation = bind(h("input", { type: "number", id: "box-rotation", min: -180, max: 180, step: 1 }),
      "rotation", (v) => clamp(Number(v) || 0, -180, 180));
    const upper = h("input", { type: "checkbox", id: "box-case", checked: b.case !== "none" });
    upper.addEventListener("change", () => { b.case = upper.checked ? "upper" : "none"; refreshBox(i); });
    for (const key of ["x", "y", "width", "height"]) {
      geometry[key] = h("input", { type: "number", id: `box-${key}`, min: 0, max: 100, step: 0.5 });
      geometry[key].addEventListener("change", () => {
        const delta = clamp(Number(geometry[key].value) / 100 || 0, 0, 1) - b[key];
        const deltas = { x: [delta, 0, 0, 0], y: [0, delta, 0, 0], width: [0, 0, delta, 0], height: [0, 0, 0, delta] };
        move(i, ...deltas[key]);
      });
    }
    boxPanel.append(
      field("Edit box", choice),
      field("Text", text),
      h("div", { class: "row" }, field("Font", font), h("div", { class: "check" }, upper, h("label", { htmlFor: "box-case" }, "Upper case"))),
      h("div", { class: "row" }, field("Text colour", color), field("Outline colour", outlineColor)),
      h("div", { class: "row" }, field("Outline width (em)", outlineWidth), field("Rotation (°)", rotation)),
      h("div", { class: "row" }, field("Align", align), field("Vertical align", valign)),
      h("div", { class: "row" }, field("X (%)", geometry.x), field("Y (%)", geometry.y)),
      h("div", { class: "row" }, field("Width (%)", geometry.width), field("Height (%)", geometry.height)),
      h("div", { class: "actions" }, addButton,
        h("button", { type: "button", class: "danger", id: "delete-box", onclick: () => removeBox(i) }, "Delete box")),
    );
    syncGeometry();
  }

  function spec() {
    const body = {
      template_id: template.id,
      boxes: boxes.filter((b) => b.text.trim()).map((b) => {
        const box = { ...b, x: round(b.x), y: round(b.y), width: round(b.width), height: round(b.height) };
        if (box.outline_width === null) delete box.outline_width;
        return box;
      }),
      format: format.value,
    };
    if (maxSide.value) body.max_side = Number(maxSide.value);
    if (thumb.value) body.thumbnail_side = Number(thumb.value);
    return body;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showProblem(error, null);
    const body = spec();
    if (!body.boxes.length) {
      showProblem(error, new Error("write a caption in at least one box"));
      return;
    }
    create.disabled = true;
    try {
      const meme = await postJson("/memes", body);
      location.hash = `#/memes/${meme.id}`;
    } catch (err) {
      showProblem(error, err);
    } finally {
      create.disabled = false;
    }
  });

  drawBoxes();
  drawPanel();
  redraw();
}
