// Live preview: the captions drawn in the browser with the renderer's own OFL fonts.
// An approximation of the server's fitting (wrap, then shrink until it fits); the
// server render is the truth.

export const FONT_FAMILIES = { anton: "Anton", "noto-sans": "Noto Sans ExtraBold" };
const LINE_HEIGHT = 1.15; // em
const DEFAULT_OUTLINE = 1 / 15; // em, as the renderer

export function fontsReady() {
  return Promise.all(Object.values(FONT_FAMILIES).map((f) => document.fonts.load(`48px "${f}"`)));
}

function wrap(ctx, text, width) {
  const lines = [];
  for (const paragraph of text.split("\n")) {
    let line = "";
    for (const word of paragraph.split(/\s+/).filter(Boolean)) {
      const next = line ? `${line} ${word}` : word;
      if (line && ctx.measureText(next).width > width) {
        lines.push(line);
        line = word;
      } else line = next;
    }
    lines.push(line);
  }
  return lines;
}

function fit(ctx, text, family, width, height, maxSize, minSize) {
  let size = Math.max(minSize, Math.floor(maxSize));
  for (;;) {
    ctx.font = `${size}px "${family}"`;
    const lines = wrap(ctx, text, width);
    const fits = lines.length * size * LINE_HEIGHT <= height &&
      lines.every((l) => ctx.measureText(l).width <= width);
    if (fits || size <= minSize) return { size, lines };
    size = Math.max(minSize, size - Math.max(1, Math.floor(size * 0.05)));
  }
}

/** Draw every box's text on the canvas, sized to the template's pixels. */
export function drawPreview(canvas, boxes, imageWidth, imageHeight) {
  canvas.width = imageWidth;
  canvas.height = imageHeight;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, imageWidth, imageHeight);
  for (const box of boxes) {
    const raw = box.case === "none" ? box.text : box.text.toUpperCase();
    if (!raw.trim()) continue;
    const w = box.width * imageWidth;
    const hgt = box.height * imageHeight;
    const family = FONT_FAMILIES[box.font] || FONT_FAMILIES.anton;
    const maxSize = box.max_font_size || hgt;
    const { size, lines } = fit(ctx, raw, family, w, hgt, maxSize, box.min_font_size || 10);
    const lineH = size * LINE_HEIGHT;
    const total = lines.length * lineH;
    ctx.save();
    ctx.translate((box.x + box.width / 2) * imageWidth, (box.y + box.height / 2) * imageHeight);
    ctx.rotate((-(box.rotation || 0) * Math.PI) / 180); // the API's rotation is counter-clockwise
    ctx.font = `${size}px "${family}"`;
    ctx.textAlign = box.align || "center";
    ctx.textBaseline = "middle";
    ctx.lineJoin = "round";
    const x = box.align === "left" ? -w / 2 : box.align === "right" ? w / 2 : 0;
    let y = box.valign === "top" ? -hgt / 2 : box.valign === "bottom" ? hgt / 2 - total : -total / 2;
    const outline = (box.outline_width ?? DEFAULT_OUTLINE) * size;
    for (const line of lines) {
      const lineY = y + lineH / 2;
      if (outline > 0) {
        ctx.lineWidth = outline * 2; // a stroke is centred on the path: twice the outline
        ctx.strokeStyle = box.outline_color || "#000000";
        ctx.strokeText(line, x, lineY);
      }
      ctx.fillStyle = box.color || "#ffffff";
      ctx.fillText(line, x, lineY);
      y += lineH;
    }
    ctx.restore();
  }
}
