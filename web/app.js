// iconosearch web UI: plain ES modules, no framework. The URL holds the whole state (except an uploaded
// image, which cannot live in a link), so searches can be shared, bookmarked and navigated with back/forward.

import { $, api, bestText, el, initSite, rightsName, truncate } from "./common.js";
import { closeViewer, fillDetail, fillDuplicates, showViewer, wireDetailSearch } from "./detail.js";
import { hasFilters, renderCenturies, renderFacets, renderLanguageFacet } from "./facets.js";
import { applyStatic, currentLang, t } from "./i18n.js";
import { wireImageInput } from "./image-query.js";
import { detailValue, drawCardRegion, parseDetail, regionOnWholeThumb } from "./regions.js";
import { emptyState, filterQuery, intOrNull, ownItemOfContentState, requestBody, stateFromUrl, urlFromState } from "./state.js";
import { wireSuggestions } from "./suggest.js";

const SPINNER_DELAY_MS = 300;
const TYPING_DELAY_MS = 300;
const DEFAULT_EXAMPLES = ["ships in a harbour", "a portrait of a woman", "flowers in a vase"];

const els = {
  form: $("search-form"), q: $("q"), imageInput: $("image-input"), parts: $("query-parts"),
  lessForm: $("less-form"), lessInput: $("less-input"), keywords: $("keywords-toggle"), combine: $("combine-toggle"),
  facets: $("facets"), langFacet: $("lang-facet"), centuries: $("century-facet"), centuryEmpty: $("century-empty"), yearFrom: $("year-from"), yearTo: $("year-to"),
  applyYears: $("apply-years"), clearFilters: $("clear-filters"), results: $("results"), sort: $("sort"),
  status: $("status"), bandHelp: $("band-help"), spinner: $("spinner"), message: $("message"), grid: $("grid"),
  loadMore: $("load-more"), sentinel: $("sentinel"), dialog: $("detail"), viewer: $("viewer"),
  toast: $("toast"), drop: $("drop-overlay"), filtersDetails: $("filters-details"), options: $("options"),
};

// Searches differ when anything but the open item or the number of loaded pages differs.
function searchKey(s) {
  return JSON.stringify({ ...s, item: null, pages: 1, image: image ? image.key : null });
}

let state = stateFromUrl();
let image = null; // {b64, dataUrl, name, key}: the uploaded query image (not in the URL)
let results = []; // results shown, in order
const known = new Map(); // id -> result or item (for chips, detail)
let nextCursor = null;
let lastKey = null;
let inflight = null;
let loadingMore = false;
let typingSession = false;
let lastFacets = null;
let lastTotal = null;
let lastMs = null;
let openerElement = null;
let collections = [];
let examples = DEFAULT_EXAMPLES;

const imagesByKey = new Map(); // uploaded images stay out of URLs; history entries refer to them by key

function navigate(next, { replace = false } = {}) {
  const url = urlFromState(next);
  const entry = { image: image ? image.key : null };
  if (replace) history.replaceState(entry, "", url);
  else if (url !== location.pathname + location.search || (history.state?.image ?? null) !== entry.image) {
    history.pushState(entry, "", url);
  }
  state = next;
  render();
}

window.addEventListener("popstate", (e) => {
  state = stateFromUrl();
  image = e.state && e.state.image ? imagesByKey.get(e.state.image) || null : null;
  typingSession = false;
  render();
});

// ------------------------------------------------------------------ API

function hasTerms(s) {
  return Boolean(s.q.trim() || s.less.length || s.like.length || s.unlike.length || s.detail.length || image);
}

// ------------------------------------------------------------------ rendering

function render() {
  syncControls();
  renderParts();
  const key = searchKey(state);
  if (key !== lastKey) {
    lastKey = key;
    startSearch();
  } else {
    updateDetail();
  }
}

// Everything drawn from strings again, in the new language (results stay, no new search).
function rerenderTexts() {
  syncControls();
  renderParts();
  const shown = results;
  els.grid.replaceChildren();
  results = [];
  appendResults(shown);
  drawFacets(lastFacets);
  updateStatus();
  if (!hasTerms(state)) { lastKey = null; render(); }
  if (state.item) { shownItem = null; updateDetail(); }
}

function syncControls() {
  if (document.activeElement !== els.q) els.q.value = state.q;
  els.keywords.checked = state.keywords;
  els.yearFrom.value = state.year_from ?? "";
  els.yearTo.value = state.year_to ?? "";
  els.sort.value = state.sort;
  document.title = state.q ? t("site.titleQuery", { query: state.q }) : t("site.title");
}

function renderParts() {
  const parts = [];
  if (state.q.trim()) parts.push({ kind: "words", label: t("parts.words", { text: state.q.trim() }), remove: () => ({ ...state, q: "" }) });
  if (image) parts.push({ kind: "image", label: t("parts.image", { name: image.name }), thumb: image.dataUrl, note: t("parts.imageNote"), remove: () => { image = null; lastKey = null; return { ...state }; } });
  for (const id of state.like) parts.push({ kind: "like", label: t("parts.like", { label: shortLabel(id) }), thumb: thumbOf(id), remove: () => ({ ...state, like: state.like.filter((x) => x !== id) }) });
  for (const d of state.detail) {
    const { id } = parseDetail(d);
    learn(id);
    parts.push({ kind: "detail", label: t("parts.detail", { label: shortLabel(id) }), thumb: thumbOf(id), remove: () => ({ ...state, detail: state.detail.filter((x) => x !== d) }) });
  }
  for (const tx of state.less) parts.push({ kind: "less", label: t("parts.lessOf", { text: tx }), remove: () => ({ ...state, less: state.less.filter((x) => x !== tx) }) });
  for (const id of state.unlike) parts.push({ kind: "less", label: t("parts.lessLike", { label: shortLabel(id) }), thumb: thumbOf(id), remove: () => ({ ...state, unlike: state.unlike.filter((x) => x !== id) }) });
  els.parts.replaceChildren();
  if (parts.length < 2 && !parts.some((p) => p.kind !== "words")) return;
  const list = el("ul", { class: "chips", "aria-label": t("parts.intro") });
  for (const part of parts) {
    const li = el("li", { class: `chip chip-${part.kind}` });
    if (part.thumb) li.append(el("img", { src: part.thumb, alt: "", width: "28", height: "28" }));
    li.append(el("span", {}, part.label));
    if (part.note) li.append(el("span", { class: "note" }, ` ${part.note}`));
    const btn = el("button", { type: "button", class: "chip-remove", "aria-label": t("parts.remove", { label: part.label }) }, "✕");
    btn.addEventListener("click", () => navigate({ ...part.remove(), pages: 1, item: null }));
    li.append(btn);
    list.append(li);
  }
  els.parts.append(el("span", { class: "parts-intro" }, t("parts.intro")), list, el("span", { class: "parts-help" }, t("parts.help")));
}

function titleOf(r) {
  return bestText(r.title) || bestText(r.label) || bestText(r.caption) || t("card.untitled");
}

function shortLabel(id) {
  const r = known.get(id);
  return r ? truncate(titleOf(r), 40) : id;
}

// An item named only by the URL (a shared "detail of" search): fetched once, for its chip's title and image.
const learning = new Set();
function learn(id) {
  if (known.has(id) || learning.has(id)) return;
  learning.add(id);
  api(`/api/items/${encodeURIComponent(id)}`).then((item) => { known.set(id, item); renderParts(); }, () => {});
}

function thumbOf(id) {
  const r = known.get(id);
  return r && r.thumbnail ? r.thumbnail.url : null;
}

async function startSearch() {
  if (inflight) inflight.abort();
  nextCursor = null;
  lastTotal = null;
  els.loadMore.hidden = true;
  if (!hasTerms(state)) {
    clearResults();
    els.status.textContent = "";
    await showWelcome();
    updateDetail();
    return;
  }
  const controller = new AbortController();
  inflight = controller;
  const spinnerTimer = setTimeout(() => { els.spinner.hidden = false; els.results.setAttribute("aria-busy", "true"); }, SPINNER_DELAY_MS);
  const started = performance.now();
  try {
    let page = await search(null, controller.signal);
    if (controller.signal.aborted) return;
    // The previous results stay until these arrive, so that the page does not jump while searching.
    clearResults();
    lastFacets = page.facets || lastFacets;
    lastTotal = page.total;
    appendResults(page.results);
    nextCursor = page.next_cursor;
    // Restore as many pages as the URL says were loaded.
    for (let i = 1; i < state.pages && nextCursor; i++) {
      page = await search(nextCursor, controller.signal);
      appendResults(page.results);
      nextCursor = page.next_cursor;
    }
    lastMs = Math.round(performance.now() - started);
    drawFacets(lastFacets);
    if (!results.length) showNoResults();
    updateStatus();
    els.loadMore.hidden = !nextCursor;
    renderParts();
  } catch (err) {
    if (err.name === "AbortError") return;
    clearResults();
    showError(err);
  } finally {
    clearTimeout(spinnerTimer);
    if (inflight === controller) {
      inflight = null;
      els.spinner.hidden = true;
      els.results.removeAttribute("aria-busy");
    }
  }
  updateDetail();
}

function clearResults() {
  results = [];
  els.grid.replaceChildren();
  els.bandHelp.hidden = true;
  hideMessage();
}

function updateStatus() {
  if (!hasTerms(state)) return;
  if (!results.length) { els.status.textContent = t("none.title"); return; }
  const bits = [];
  if (lastTotal) {
    const relation = lastTotal.basis === "relevance" ? lastTotal.relation : lastTotal.relation === "gte" ? "gte" : "eq";
    bits.push(t(`total.${lastTotal.basis}.${relation}`, { count: lastTotal.count }));
  }
  bits.push(t("total.shown", { count: results.length }));
  if (lastMs !== null) bits.push(t("total.time", { ms: lastMs }));
  els.status.replaceChildren(...bits.flatMap((b, i) => (i ? [el("span", { class: "sep", "aria-hidden": "true" }, " · "), el("span", {}, b)] : [el("span", { class: "total" }, b)])));
  els.bandHelp.hidden = !results.some((r) => r.relevance);
}

function search(cursor, signal) {
  return api("/api/search", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(requestBody(state, image, cursor, currentLang())),
    signal,
  });
}

async function loadMore() {
  if (!nextCursor || loadingMore || inflight) return;
  loadingMore = true;
  els.loadMore.disabled = true;
  try {
    const page = await search(nextCursor, undefined);
    appendResults(page.results);
    nextCursor = page.next_cursor;
    state = { ...state, pages: state.pages + 1 };
    history.replaceState(history.state, "", urlFromState(state));
    updateStatus();
    els.loadMore.hidden = !nextCursor;
  } catch (err) {
    toast(err.message);
  } finally {
    loadingMore = false;
    els.loadMore.disabled = false;
  }
}

// Results are grouped by relevance band (strong / possible / weak) when sorted by relevance; in date order
// each card carries its band instead.
function groupOf(r) {
  if (state.sort !== "relevance") return "date";
  return r.relevance || "none";
}

function groupList(group) {
  let section = els.grid.querySelector(`section[data-group="${group}"]`);
  if (!section) {
    const headingId = `group-${group}`;
    const heading = group === "date" ? el("p", { class: "band-note", id: headingId }, t("band.dateNote")) : el("h2", { class: "band-heading", id: headingId }, t(`band.${group}`));
    section = el("section", { class: `band band-${group}`, "data-group": group, "aria-labelledby": headingId }, heading, el("ol", { class: "grid" }));
    els.grid.append(section);
  }
  return section.querySelector("ol");
}

function appendResults(page) {
  for (const r of page) {
    if (results.some((x) => x.id === r.id)) continue;
    results.push(r);
    known.set(r.id, r);
    groupList(groupOf(r)).append(card(r, results.length));
  }
  renderLanguageFacet(els.langFacet, results, state, toggleFilter);
}

function card(r, position) {
  const title = titleOf(r);
  const li = el("li", { class: "card", "data-id": r.id });
  const open = el("button", { type: "button", class: "thumb", "aria-label": t("card.open", { position, title: truncate(title, 120) }) });
  if (r.thumbnail.url) {
    const w = r.thumbnail.width || Math.round(300 * (r.aspect_ratio || 1));
    const h = r.thumbnail.height || 300;
    const img = el("img", { src: r.thumbnail.url, alt: truncate(bestText(r.caption) || title, 200), loading: "lazy", decoding: "async", width: String(w), height: String(h) });
    img.addEventListener("error", () => img.classList.add("broken"), { once: true });
    open.append(img);
    const region = regionOnWholeThumb(r);
    if (region) drawCardRegion(open, img, region);
  } else {
    open.append(el("span", { class: "no-image" }, t("card.noPreview")));
  }
  open.addEventListener("click", () => openItem(r.id, open));
  const meta = el("div", { class: "card-meta" });
  meta.append(el("h3", { class: "card-title", title }, title));
  const creator = bestText(r.creator);
  meta.append(el("p", { class: "card-creator" }, creator || "\u00a0"));
  const provider = bestText(r.providers[0]?.label) || r.collection;
  meta.append(el("p", { class: "card-line" }, el("span", { class: "card-date" }, r.date ? r.date.display : ""), el("span", { class: "card-provider", title: provider }, provider)));
  const badges = el("p", { class: "card-badges" });
  const statement = r.rights ? t("rights.statement", { statement: `${rightsName(r.rights)} (${r.rights})` }) : t("rights.notStated");
  badges.append(el("span", { class: `badge rights-badge rights-${r.rights_class}`, title: statement }, t(`rights.${r.rights_class}`), el("span", { class: "visually-hidden" }, ` ${statement}`)));
  if (state.sort !== "relevance" && r.relevance) badges.append(el("span", { class: `badge band-badge band-${r.relevance}` }, t(`band.${r.relevance}One`)));
  if (r.matched_region) badges.append(el("span", { class: "badge detail-badge" }, t("card.matchedDetail")));
  if (r.duplicates.size > 1) badges.append(el("span", { class: "dups" }, t("card.copies", { count: r.duplicates.size - 1 })));
  meta.append(badges);
  const more = el("button", { type: "button", class: "more-like", "aria-label": t("card.moreLikeLabel", { position }) }, t("card.moreLike"));
  more.addEventListener("click", () => { image = null; navigate({ ...emptyFilters(state), like: [r.id] }); });
  li.append(open, meta, more);
  return li;
}

function emptyFilters(s) {
  // "More like this" keeps the filters but starts a new query.
  return { ...s, q: "", less: [], like: [], unlike: [], detail: [], item: null, pages: 1, keywords: false };
}

// ------------------------------------------------------------------ facets

function drawFacets(facets) {
  const noResults = hasTerms(state) && !results.length && lastKey !== null;
  renderFacets(els.facets, facets, state, { toggle: toggleFilter, noResults });
  // Shown with the first facets, so that they do not push the date filter down as they arrive.
  $("date-facet").hidden = false;
  els.clearFilters.hidden = false;
  renderCenturies(els.centuries, els.centuryEmpty, facets ? facets.century : {}, state, {
    noResults,
    pick: (from, to) => navigate({ ...state, year_from: from, year_to: to, pages: 1, item: null }),
  });
  renderLanguageFacet(els.langFacet, results, state, toggleFilter);
}

function toggleFilter(key, value, on) {
  const list = state[key].filter((v) => v !== value);
  if (on) list.push(value);
  navigate({ ...state, [key]: list, pages: 1, item: null });
}

// ------------------------------------------------------------------ messages

async function showWelcome() {
  let info = null;
  let facets = null;
  try {
    // Facets first, so that the filters do not move the page after the welcome appears.
    [info, facets] = await Promise.all([
      api("/api/collections"),
      api(`/api/facets${filterQuery(state) ? `?${filterQuery(state)}` : ""}`).catch(() => null),
    ]);
  } catch (err) {
    showError(err);
    return;
  }
  const served = info.collections.filter((c) => c.count);
  collections = served.map((c) => ({ name: c.name, label: c.label || c.name }));
  // The collections' own example searches (configured per collection), else general ones.
  const own = [...new Set(served.flatMap((c) => c.example_queries || []))];
  examples = own.length ? own : DEFAULT_EXAMPLES;
  if (facets) {
    lastFacets = facets.facets;
    drawFacets(facets.facets);
  }
  if (!info.count) {
    showMessage("empty-index", t("empty.title"), t("empty.text"));
    return;
  }
  const box = showMessage("welcome", t("welcome.title"), t("welcome.text", { count: info.count, collections: info.collections.length }));
  box.append(examplesList());
}

function showNoResults() {
  const filtered = hasFilters(state);
  const box = showMessage("no-results", t("none.title"), filtered ? t("none.filtered") : t("none.plain"));
  const ul = el("ul", { class: "suggestions" });
  if (filtered) {
    const b = el("button", { type: "button", class: "link-button" }, t("none.removeFilters"));
    b.addEventListener("click", clearFilters);
    ul.append(el("li", {}, b));
  }
  if (state.less.length || state.unlike.length) ul.append(el("li", {}, t("none.removeLess")));
  ul.append(el("li", {}, t("none.general")));
  box.append(ul, examplesList());
}

function showError(err) {
  els.status.textContent = "";
  if (err.code === "index-not-ready") {
    showMessage("empty-index", t("empty.title"), t("empty.short"));
    return;
  }
  const box = showMessage("error", err.status >= 500 || err.status === 0 ? t("error.title") : t("error.refused"), err.message);
  const retry = el("button", { type: "button" }, t("error.retry"));
  retry.addEventListener("click", () => { lastKey = null; render(); });
  box.append(retry);
}

function showMessage(kind, title, text) {
  els.message.hidden = false;
  els.message.className = `message message-${kind}`;
  els.message.dataset.kind = kind;
  els.message.replaceChildren(el("h2", {}, title), el("p", {}, text));
  return els.message;
}

function hideMessage() {
  els.message.hidden = true;
  els.message.replaceChildren();
  delete els.message.dataset.kind;
}

function examplesList() {
  const list = el("ul", { class: "chips examples", "aria-label": t("welcome.try") });
  for (const ex of examples) {
    const a = el("a", { href: urlFromState({ ...emptyState(), q: ex }), class: "chip" }, ex);
    a.addEventListener("click", (e) => { e.preventDefault(); image = null; navigate({ ...state, q: ex, like: [], unlike: [], less: [], pages: 1, item: null }); });
    list.append(el("li", {}, a));
  }
  return el("div", { class: "examples-row" }, el("span", {}, t("welcome.try")), list);
}

function toast(text) {
  els.toast.textContent = text;
  els.toast.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { els.toast.hidden = true; }, 4000);
}

// ------------------------------------------------------------------ detail panel

function openItem(id, opener) {
  openerElement = opener || document.activeElement;
  navigate({ ...state, item: id });
}

let shownItem = null;

async function updateDetail() {
  if (!state.item) {
    if (els.dialog.open) els.dialog.close();
    shownItem = null;
    return;
  }
  if (shownItem === state.item && els.dialog.open) return;
  shownItem = state.item;
  let item;
  try {
    item = await api(`/api/items/${encodeURIComponent(state.item)}`);
  } catch (err) {
    toast(err.status === 404 ? t("error.gone") : err.message);
    navigate({ ...state, item: null }, { replace: true });
    return;
  }
  if (shownItem !== item.id) return;
  const result = results.find((r) => r.id === item.id) || null;
  known.set(item.id, { ...known.get(item.id), ...item });
  fillDetail(item, result, `${location.origin}${urlFromState({ ...emptyState(), item: item.id })}`);
  fillDuplicates(item, (id) => urlFromState({ ...state, item: id }), (id) => navigate({ ...state, item: id }));
  if (!els.dialog.open) els.dialog.showModal();
  $("detail-close").focus();
  showViewer(els.viewer, item, result);
}

els.dialog.addEventListener("close", () => {
  closeViewer();
  shownItem = null;
  if (state.item) navigate({ ...state, item: null });
  const back = openerElement && document.contains(openerElement) ? openerElement : results.length ? els.grid.querySelector(".thumb") : els.q;
  back?.focus();
});
$("detail-close").addEventListener("click", () => els.dialog.close());
els.dialog.addEventListener("click", (e) => { if (e.target === els.dialog) els.dialog.close(); });
$("detail-more").addEventListener("click", () => { const id = state.item; image = null; els.dialog.close(); navigate({ ...emptyFilters(state), like: [id] }); });
$("detail-add").addEventListener("click", () => { const id = state.item; els.dialog.close(); navigate({ ...state, like: [...new Set([...state.like, id])], item: null, pages: 1 }); });
$("detail-less").addEventListener("click", () => { const id = state.item; els.dialog.close(); navigate({ ...state, unlike: [...new Set([...state.unlike, id])], like: state.like.filter((x) => x !== id), item: null, pages: 1 }); });
wireDetailSearch({
  viewer: els.viewer, select: $("detail-select"), inView: $("detail-in-view"), hint: $("select-hint"),
  onDetail: (id, box) => { image = null; els.dialog.close(); navigate({ ...emptyFilters(state), detail: [detailValue(id, box)] }); },
});
for (const b of document.querySelectorAll("[data-copy]")) {
  b.addEventListener("click", async () => {
    const field = $(b.dataset.copy);
    try {
      await navigator.clipboard.writeText(field.value);
      toast(t("copy.done"));
    } catch (_err) {
      field.select();
      toast(t("copy.manual"));
    }
  });
}

// ------------------------------------------------------------------ query input

// New words replace an image query unless "combine" is ticked, as an image replaces the words.
function withWords(q) {
  if (image && q.trim() && !els.combine.checked) { image = null; lastKey = null; }
  return { ...state, q, pages: 1, item: null };
}

let typingTimer = null;
els.q.addEventListener("input", () => {
  clearTimeout(typingTimer);
  typingTimer = setTimeout(() => {
    const replace = typingSession;
    typingSession = true;
    navigate(withWords(els.q.value), { replace });
  }, TYPING_DELAY_MS);
});
els.form.addEventListener("submit", (e) => {
  e.preventDefault();
  clearTimeout(typingTimer);
  const replace = typingSession && state.q === els.q.value;
  typingSession = false;
  navigate(withWords(els.q.value), { replace });
  if (state.q.trim() || image) els.results.focus({ preventScroll: true });
});
els.q.addEventListener("blur", () => { typingSession = false; });
els.lessForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const tx = els.lessInput.value.trim();
  if (!tx) return;
  els.lessInput.value = "";
  navigate({ ...state, less: [...new Set([...state.less, tx])], pages: 1, item: null });
});
els.keywords.addEventListener("change", () => navigate({ ...state, keywords: els.keywords.checked, pages: 1, item: null }));
els.sort.addEventListener("change", () => navigate({ ...state, sort: els.sort.value, pages: 1, item: null }));
els.applyYears.addEventListener("click", applyYears);
for (const input of [els.yearFrom, els.yearTo]) input.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); applyYears(); } });
els.clearFilters.addEventListener("click", clearFilters);
els.loadMore.addEventListener("click", loadMore);
$("home-link").addEventListener("click", (e) => { e.preventDefault(); image = null; navigate(emptyState()); });

function applyYears() {
  navigate({ ...state, year_from: intOrNull(els.yearFrom.value), year_to: intOrNull(els.yearTo.value), pages: 1, item: null });
}

function clearFilters() {
  navigate({ ...state, collection: [], institution: [], rights: [], lang: [], suggested_division: [], year_from: null, year_to: null, pages: 1, item: null });
}

new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting)) loadMore();
}, { rootMargin: "600px" }).observe(els.sentinel);

wireSuggestions(els.q, $("suggestions"), {
  collections: () => collections,
  pickSubject: (ref) => { clearTimeout(typingTimer); els.q.value = ref; navigate(withWords(ref)); },
  pickCollection: (name) => { clearTimeout(typingTimer); els.q.value = state.q; navigate({ ...state, collection: [...new Set([...state.collection, name])], pages: 1, item: null }); },
});

// ------------------------------------------------------------------ image queries

wireImageInput({
  input: els.imageInput,
  overlay: els.drop,
  onError: toast,
  onImage: (picked) => {
    image = picked;
    imagesByKey.set(image.key, image);
    lastKey = null;
    // The image replaces the words unless the user asked to combine them.
    const q = els.combine.checked ? state.q : "";
    navigate({ ...state, q, pages: 1, item: null });
  },
});

// ------------------------------------------------------------------ start

async function start() {
  const incoming = new URLSearchParams(location.search).get("iiif-content");
  if (incoming) {
    const own = await ownItemOfContentState(incoming);
    if (!own) { location.replace(`/viewer/?iiif-content=${encodeURIComponent(incoming)}`); return; }
    history.replaceState(null, "", urlFromState({ ...emptyState(), item: own }));
    state = stateFromUrl();
  }
  await initSite(rerenderTexts);
  applyStatic(document);
  // On a phone the filters and the extra options start folded so that results come first.
  const phone = matchMedia("(max-width: 48rem)").matches;
  els.filtersDetails.open = !phone;
  els.options.open = !phone && Boolean(state.less.length || state.keywords);
  render();
}

start();
