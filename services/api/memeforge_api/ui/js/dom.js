// Tiny DOM helpers: elements are built with properties, never from HTML strings,
// so no text a user or the API supplies is ever parsed as markup.

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name in el && !name.includes("-")) el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** A labelled form control: <label for> + the control (+ an optional hint). */
export function field(labelText, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const parts = [h("label", { htmlFor: id }, labelText), control];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("p", { class: "hint", id: hintId }, hint));
  }
  return h("div", { class: "field" }, parts);
}

/** An error box that speaks the API's problem detail. */
export function problemBox(error) {
  const box = h("div", { class: "alert", role: "alert" });
  showProblem(box, error);
  return box;
}

export function showProblem(box, error) {
  box.replaceChildren();
  if (!error) return;
  const problem = error.problem;
  if (problem) {
    box.append(h("strong", {}, problem.title || "Request failed"));
    if (problem.detail) box.append(": ", problem.detail);
    if (problem.errors) {
      box.append(h("ul", {}, problem.errors.map((e) => h("li", {}, `${(e.loc || []).join(".")}: ${e.msg}`))));
    }
    box.append(" ", h("span", { class: "code" }, `(${problem.status} ${problem.code})`));
  } else {
    box.append(h("strong", {}, "Request failed"), `: ${error.message}`);
  }
}

export function formatTime(iso) {
  const d = new Date(iso);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false }) +
    `.${String(d.getMilliseconds()).padStart(3, "0")}`;
}
