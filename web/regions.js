// Regions of images: the box a result matched (drawn on its card and in the deep-zoom view) and "search this
// detail" (a box the user drags on the deep-zoom view, or the part in view, becomes an item term with a
// region). Regions sent and drawn are in IMAGE PIXELS ("x,y,w,h"), the Image API's coordinates, which are
// also OpenSeadragon's image coordinates; a result's `region` (canvas coordinates) is only shown as text.

import { el } from "./common.js";

const BOX = /^(\d+),(\d+),(\d+),(\d+)$/;
// Smaller drags are taken for clicks: a box of a few pixels holds nothing a model can see.
const MIN_DRAG_PX = 12;

export function parseBox(text) {
  const m = BOX.exec(String(text || ""));
  if (!m) return null;
  const [x, y, w, h] = m.slice(1).map(Number);
  return w > 0 && h > 0 ? { x, y, w, h } : null;
}

export const boxText = (b) => `${b.x},${b.y},${b.w},${b.h}`;

// A "detail" of the search state is "<item id>:<x,y,w,h>" (the form it has in shared links).
export function parseDetail(value) {
  const at = String(value).lastIndexOf(":");
  if (at < 1) return null;
  const box = parseBox(value.slice(at + 1));
  return box ? { id: value.slice(0, at), region: boxText(box) } : null;
}

export const detailValue = (id, box) => `${id}:${boxText(box)}`;

// The region a card should draw, as fractions of the whole image, or null. Only when the card's thumbnail
// is the whole image: a region's thumbnail is usually the region itself (nothing to draw), but level-0
// services cannot crop and "no derivatives" licences forbid it, and then the thumbnail stays whole.
export function regionOnWholeThumb(r) {
  const box = parseBox(r.image_region);
  const svc = r.image_service;
  if (!box || !svc || !svc.width || !svc.height || !r.thumbnail.url) return null;
  if (!r.thumbnail.url.startsWith(`${svc.id}/`)) return null; // not a service image: its extent is unknown
  const regionPart = r.thumbnail.url.slice(svc.id.length + 1).split("/")[0];
  if (regionPart !== "full") return null;
  return { x: box.x / svc.width, y: box.y / svc.height, w: box.w / svc.width, h: box.h / svc.height };
}

// Draws ``frac`` over ``img`` inside its box (``object-fit: contain`` leaves bands around the picture, so
// the box is placed on the picture as laid out, in percentages of the frame so that it follows resizing).
export function drawCardRegion(frame, img, frac) {
  const mark = el("span", { class: "region-box", "aria-hidden": "true" });
  const place = () => {
    const fw = frame.clientWidth;
    const fh = frame.clientHeight;
    if (!img.naturalWidth || !fw || !fh) return;
    const scale = Math.min(fw / img.naturalWidth, fh / img.naturalHeight);
    const pw = (img.naturalWidth * scale) / fw;
    const ph = (img.naturalHeight * scale) / fh;
    const left = (1 - pw) / 2 + frac.x * pw;
    const top = (1 - ph) / 2 + frac.y * ph;
    // CSSOM, not style attributes: the Content-Security-Policy forbids those.
    Object.assign(mark.style, { left: pct(left), top: pct(top), width: pct(frac.w * pw), height: pct(frac.h * ph) });
    frame.append(mark);
  };
  if (img.complete && img.naturalWidth) requestAnimationFrame(place);
  else img.addEventListener("load", place, { once: true });
}

const pct = (v) => `${(v * 100).toFixed(3)}%`;

// The region overlay of the deep-zoom view; ``osd`` has opened the image.
export function overlayRegion(osd, box, { zoom }) {
  const rect = osd.viewport.imageToViewportRectangle(box.x, box.y, box.w, box.h);
  osd.addOverlay({ element: el("div", { class: "region-overlay", "aria-hidden": "true" }), location: rect });
  if (zoom) osd.viewport.fitBounds(padded(rect), true);
}

// A little margin around the region, so that its outline is not on the viewer's edge.
function padded(rect) {
  const m = Math.max(rect.width, rect.height) * 0.08;
  return new window.OpenSeadragon.Rect(rect.x - m, rect.y - m, rect.width + 2 * m, rect.height + 2 * m);
}

// The image rectangle (whole pixels, clipped to the image) between two viewer-element points.
function imageBox(osd, a, b) {
  const size = osd.world.getItemAt(0).getContentSize();
  const p = osd.viewport.viewerElementToImageCoordinates(a);
  const q = osd.viewport.viewerElementToImageCoordinates(b);
  const x0 = Math.max(0, Math.min(p.x, q.x));
  const y0 = Math.max(0, Math.min(p.y, q.y));
  const x1 = Math.min(size.x, Math.max(p.x, q.x));
  const y1 = Math.min(size.y, Math.max(p.y, q.y));
  const box = { x: Math.round(x0), y: Math.round(y0), w: Math.round(x1 - x0), h: Math.round(y1 - y0) };
  return box.w > 0 && box.h > 0 ? box : null;
}

// The part of the image in view (the keyboard's way to choose a detail: zoom with + and -, pan with the
// arrows, then search what is shown).
export function boxInView(osd) {
  const c = osd.viewport.getContainerSize();
  const OSD = window.OpenSeadragon;
  return imageBox(osd, new OSD.Point(0, 0), new OSD.Point(c.x, c.y));
}

// Drag-a-box on the viewer while ``active()``: panning is off, a rubber band follows the pointer, and the
// box (image pixels) goes to ``onBox`` on release.
export function wireDragBox(viewer, getOsd, { active, onBox }) {
  const OSD = window.OpenSeadragon;
  let start = null;
  let band = null;
  const at = (e) => {
    const r = viewer.getBoundingClientRect();
    return new OSD.Point(e.clientX - r.left, e.clientY - r.top);
  };
  const bandTo = (p) => {
    Object.assign(band.style, {
      left: `${Math.min(start.x, p.x)}px`, top: `${Math.min(start.y, p.y)}px`,
      width: `${Math.abs(p.x - start.x)}px`, height: `${Math.abs(p.y - start.y)}px`,
    });
  };
  const end = () => { start = null; band?.remove(); band = null; };
  viewer.addEventListener("pointerdown", (e) => {
    if (!active() || !getOsd() || e.button !== 0) return;
    e.preventDefault();
    e.stopPropagation();
    start = at(e);
    band = el("div", { class: "drag-band", "aria-hidden": "true" });
    viewer.append(band);
    bandTo(start);
    viewer.setPointerCapture?.(e.pointerId);
  }, { capture: true });
  viewer.addEventListener("pointermove", (e) => { if (start) { e.stopPropagation(); bandTo(at(e)); } }, { capture: true });
  viewer.addEventListener("pointerup", (e) => {
    if (!start) return;
    e.stopPropagation();
    const a = start;
    const b = at(e);
    end();
    if (Math.abs(b.x - a.x) < MIN_DRAG_PX || Math.abs(b.y - a.y) < MIN_DRAG_PX) return;
    const osd = getOsd();
    const box = osd && imageBox(osd, a, b);
    if (box) onBox(box);
  }, { capture: true });
  viewer.addEventListener("pointercancel", end, { capture: true });
  viewer.addEventListener("lostpointercapture", () => { if (start) end(); });
}
