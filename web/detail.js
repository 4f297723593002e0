// The detail panel of one image: deep zoom, catalogue facts, rights, viewer links, permalink, citation.

import { $, bestText, el, rightsName, safeHref, truncate } from "./common.js";
import { currentLang, t } from "./i18n.js";
import { labelSpan } from "./iconclass.js";
import { boxInView, overlayRegion, parseBox, wireDragBox } from "./regions.js";

let osd = null;
let shownId = null; // the item in the deep-zoom view
let selecting = false;
let setSelecting = () => {};

function link(label, href) {
  const safe = href ? safeHref(href) : null;
  return safe ? el("li", {}, el("a", { href: safe, rel: "noopener", target: "_blank" }, label)) : null;
}

// ``result``: the search result the item was opened from (its score and band), if any.
export function fillDetail(item, result, permalink) {
  const page = bestText(item.canvas_label);
  const name = bestText(item.title) || bestText(item.manifest_label) || bestText(item.label) || t("card.untitled");
  const title = page && page !== name ? `${name} — ${page}` : name;
  $("detail-title").textContent = title;
  const caption = bestText(item.caption);
  $("detail-caption").textContent = caption && caption !== name ? caption : "";

  const facts = $("detail-facts");
  facts.replaceChildren();
  const addFact = (key, v) => { if (v) facts.append(el("dt", {}, t(key)), el("dd", {}, v)); };
  const providers = item.providers.map((p) => bestText(p.label)).filter(Boolean).join("; ");
  addFact("detail.creator", bestText(item.creator));
  addFact("detail.date", item.date ? item.date.display : null);
  addFact("detail.institution", providers);
  addFact("detail.collection", item.collection);
  const n = item.canvas_index + 1;
  addFact("detail.image", item.region ? t("detail.canvasRegion", { n, region: item.region }) : t("detail.canvas", { n }));
  if (result && result.matched_region) facts.append(el("dt", {}, t("detail.match")), el("dd", { class: "detail-match" }, t("detail.matchedDetail")));
  if (result && typeof result.score === "number") {
    const score = result.score.toFixed(3);
    const text = result.relevance ? t("detail.relevanceValue", { band: t(`band.${result.relevance}One`), score }) : t("detail.score", { score });
    facts.append(el("dt", {}, t("detail.relevance")), el("dd", { class: "detail-score" }, text));
  }

  const rights = $("detail-rights");
  rights.replaceChildren();
  if (item.attribution) {
    const label = bestText(item.attribution.label) || t("detail.attribution");
    rights.append(el("p", { class: "attribution" }, el("strong", {}, label), " ", bestText(item.attribution.value)));
  }
  const rightsHref = item.rights ? safeHref(item.rights) : null;
  if (item.rights) {
    const name = rightsHref ? el("a", { href: rightsHref, rel: "noopener", target: "_blank" }, rightsName(item.rights)) : rightsName(item.rights);
    rights.append(el("p", {}, el("span", { class: `badge rights-badge rights-${item.rights_class}` }, t(`rights.${item.rights_class}`)), " ", t("detail.rightsLabel"), " ", name, " ", el("span", { class: "uri" }, item.rights)));
  } else {
    rights.append(el("p", { class: "no-rights" }, t("rights.notStated")));
  }

  const links = $("detail-links");
  links.replaceChildren();
  const add = (label, href) => { const li = link(label, href); if (li) links.append(li); };
  // A result that matched a detail opens the viewers on that detail (the item's own links show its canvas).
  const viewers = (result && result.matched_region && result.viewers) || item.viewers;
  add(t("detail.openViewer"), viewers.viewer);
  for (const h of item.homepage) add(t("detail.atInstitution", { name: bestText(h.label) || h.id }), h.id);
  for (const p of item.providers) if (p.homepage) add(t("detail.website", { name: bestText(p.label) || t("detail.institution") }), p.homepage);
  add(t("detail.manifest"), item.manifest);
  add(t("detail.openMirador"), viewers.mirador);
  add(t("detail.openUV"), viewers.universal_viewer);
  links.append(el("li", {}, el("span", {}, t("detail.contentState")), " ", el("code", { class: "content-state", title: viewers.content_state }, truncate(viewers.content_state, 48))));

  $("permalink").value = permalink;
  const citation = [title, bestText(item.creator), item.date?.display, providers.replaceAll("; ", ", "), item.attribution ? bestText(item.attribution.value) : null, item.rights ? rightsName(item.rights) : null]
    .filter(Boolean).join(". ");
  $("citation").value = t("detail.accessed", { citation, manifest: item.manifest, permalink, date: new Date().toISOString().slice(0, 10) });

  const meta = $("detail-metadata");
  meta.replaceChildren();
  if (item.summary && bestText(item.summary)) meta.append(el("dt", {}, t("detail.summary")), el("dd", {}, bestText(item.summary)));
  for (const m of item.metadata) meta.append(el("dt", {}, bestText(m.label)), el("dd", {}, bestText(m.value)));
  $("detail-metadata-section").hidden = !meta.children.length;

  // Machine-suggested ICONCLASS subjects: their own section, never among the catalogue's metadata.
  const suggested = $("detail-suggested");
  suggested.replaceChildren();
  for (const s of item.suggested_subjects || []) {
    const score = el("span", { class: "count" }, t("detail.suggestedScore", { score: s.score.toFixed(2) }));
    // Stored labels are the English texts the subjects were scored by; shown in the interface language.
    const label = labelSpan(s.notation, currentLang(), s.label, "en");
    suggested.append(el("li", { "data-notation": s.notation }, el("code", {}, s.notation), " ", label, " ", score));
  }
  $("detail-suggested-section").hidden = !suggested.children.length;
}

export function fillDuplicates(item, hrefOf, open) {
  const dups = $("detail-duplicates");
  dups.replaceChildren();
  for (const id of item.duplicates.ids) {
    const a = el("a", { href: hrefOf(id) }, id);
    a.addEventListener("click", (e) => { e.preventDefault(); open(id); });
    dups.append(el("li", {}, a));
  }
  $("detail-duplicates-section").hidden = !item.duplicates.ids.length;
}

// The region to outline and zoom to: the detail a search matched, else the part of the image the record is.
function regionOf(item, result) {
  if (result && result.matched_region && result.image_region) return parseBox(result.image_region);
  return parseBox(item.image_region);
}

export function showViewer(viewer, item, result) {
  closeViewer();
  viewer.replaceChildren();
  shownId = item.id;
  const alt = truncate(bestText(item.title) || bestText(item.caption) || bestText(item.label) || "", 200);
  viewer.setAttribute("aria-label", t("detail.zoom", { alt }));
  const fallback = () => {
    const src = item.image_url || item.thumbnail.url;
    if (src) viewer.replaceChildren(el("img", { src, alt, class: "viewer-fallback" }));
    $("viewer-tools").hidden = true;
  };
  if (!window.OpenSeadragon || !(item.image_service || item.image_url)) { fallback(); return; }
  const tileSources = item.image_service ? item.image_service.info_url : { type: "image", url: item.image_url };
  osd = window.OpenSeadragon({
    element: viewer, prefixUrl: "/vendor/openseadragon/images/", tileSources,
    showNavigator: false, gestureSettingsMouse: { clickToZoom: false }, visibilityRatio: 0.5,
    // Beyond the image's own pixels: masters of a few hundred pixels must still zoom far enough to frame a
    // detail for "search what is in view".
    maxZoomPixelRatio: 4,
  });
  osd.addHandler("open-failed", fallback);
  const region = regionOf(item, result);
  osd.addOnceHandler("open", () => {
    // Image pixels (the Image API's coordinates, which OpenSeadragon's image rectangle uses), not the
    // canvas coordinates of item.region.
    if (region) overlayRegion(osd, region, { zoom: true });
    $("viewer-tools").hidden = false;
  });
}

export function closeViewer() {
  setSelecting(false);
  $("viewer-tools").hidden = true;
  if (osd) { osd.destroy(); osd = null; }
}

// "Search this detail": a box dragged on the deep-zoom view while "select" is pressed, or the part of the
// image in view (the way without a pointer), goes to ``onDetail(itemId, box)`` in image pixels.
export function wireDetailSearch({ viewer, select, inView, hint, onDetail }) {
  setSelecting = (on) => {
    selecting = on;
    select.setAttribute("aria-pressed", String(on));
    viewer.classList.toggle("selecting", on);
    hint.hidden = !on;
    osd?.setMouseNavEnabled(!on);
  };
  select.addEventListener("click", () => setSelecting(!selecting));
  inView.addEventListener("click", () => {
    const box = osd && boxInView(osd);
    if (box) onDetail(shownId, box);
  });
  wireDragBox(viewer, () => osd, {
    active: () => selecting,
    onBox: (box) => { setSelecting(false); onDetail(shownId, box); },
  });
}
