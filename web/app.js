// iconosearch web UI: plain ES module, no framework. The URL holds the whole state (except an uploaded
// image, which cannot live in a link), so searches can be shared, bookmarked and navigated with back/forward.

const LESS_WEIGHT = -0.5;
const PAGE_SIZE = 24;
const SPINNER_DELAY_MS = 300;
const TYPING_DELAY_MS = 300;
const IMAGE_MAX_SIDE = 640;
const EXAMPLES = ["a map of a harbour", "portrait of a woman", "flowers in a vase", "a ship at sea", "a church"];
const LIST_KEYS = ["less", "like", "unlike", "collection", "institution", "rights", "lang"];
const FACET_LABELS = {
  collection: "Collection",
  institution: "Institution",
  rights: "Rights",
  language: "Language",
  lang: "Language",
};
const FACET_PARAM = { collection: "collection", institution: "institution", rights: "rights", language: "lang", lang: "lang" };
const RIGHTS_LABELS = { open: "Open (free to reuse)", restricted: "Restricted", unknown: "Not stated" };

const $ = (id) => document.getElementById(id);
const els = {
  form: $("search-form"), q: $("q"), imageInput: $("image-input"), parts: $("query-parts"),
  lessForm: $("less-form"), lessInput: $("less-input"), keywords: $("keywords-toggle"),
  facets: $("facets"), centuries: $("century-facet"), yearFrom: $("year-from"), yearTo: $("year-to"),
  applyYears: $("apply-years"), clearFilters: $("clear-filters"), results: $("results"),
  status: $("status"), spinner: $("spinner"), message: $("message"), grid: $("grid"),
  loadMore: $("load-more"), sentinel: $("sentinel"), dialog: $("detail"), viewer: $("viewer"),
  toast: $("toast"), drop: $("drop-overlay"), filtersDetails: $("filters-details"),
};

// ------------------------------------------------------------------ state <-> URL

function emptyState() {
  return {
    q: "", less: [], like: [], unlike: [], keywords: false,
    collection: [], institution: [], rights: [], lang: [],
    year_from: null, year_to: null, item: null, pages: 1,
  };
}

function stateFromUrl(search = location.search) {
  const p = new URLSearchParams(search);
  const s = emptyState();
  s.q = p.get("q") || "";
  for (const key of LIST_KEYS) s[key] = p.getAll(key).filter(Boolean);
  s.keywords = p.get("kw") === "1";
  s.year_from = intOrNull(p.get("year_from"));
  s.year_to = intOrNull(p.get("year_to"));
  s.item = p.get("item") || null;
  s.pages = Math.min(Math.max(intOrNull(p.get("pages")) || 1, 1), 20);
  return s;
}

function urlFromState(s) {
  const p = new URLSearchParams();
  if (s.q) p.set("q", s.q);
  for (const key of LIST_KEYS) for (const v of s[key]) p.append(key, v);
  if (s.keywords) p.set("kw", "1");
  if (s.year_from !== null) p.set("year_from", String(s.year_from));
  if (s.year_to !== null) p.set("year_to", String(s.year_to));
  if (s.pages > 1) p.set("pages", String(s.pages));
  if (s.item) p.set("item", s.item);
  const qs = p.toString();
  return qs ? `/?${qs}` : "/";
}

function intOrNull(v) {
  if (v === null || v === undefined || v === "") return null;
  const n = Number.parseInt(v, 10);
  return Number.isFinite(n) ? n : null;
}

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
let openerElement = null;
let osd = null;

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

class ApiError extends Error {
  constructor(problem, status) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.problem = problem;
    this.status = status;
    this.code = problem.code || "error";
  }
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { headers: { Accept: "application/json" }, ...options });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError({ detail: "The server cannot be reached. Check your connection and try again.", code: "network" }, 0);
  }
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : { detail: await response.text() };
  if (!response.ok) throw new ApiError(body, response.status);
  return body;
}

function hasTerms(s) {
  return Boolean(s.q.trim() || s.less.length || s.like.length || s.unlike.length || image);
}

function requestBody(s, cursor) {
  const terms = [];
  if (s.q.trim()) terms.push({ kind: "text", value: s.q.trim(), weight: 1 });
  if (image) terms.push({ kind: "image", value: image.b64, weight: 1 });
  for (const id of s.like) terms.push({ kind: "item", value: id, weight: 1 });
  for (const t of s.less) terms.push({ kind: "text", value: t, weight: LESS_WEIGHT });
  for (const id of s.unlike) terms.push({ kind: "item", value: id, weight: LESS_WEIGHT });
  return {
    terms,
    filters: {
      collections: s.collection, institutions: s.institution, rights: s.rights, languages: s.lang,
      year_from: s.year_from, year_to: s.year_to,
    },
    keywords: s.keywords && s.q.trim() ? s.q.trim() : null,
    k: PAGE_SIZE,
    cursor: cursor || null,
    facets: !cursor,
  };
}

function filterQuery(s) {
  const p = new URLSearchParams();
  for (const [key, param] of [["collection", "collection"], ["institution", "institution"], ["rights", "rights"], ["lang", "lang"]]) {
    for (const v of s[key]) p.append(param, v);
  }
  if (s.year_from !== null) p.set("year_from", String(s.year_from));
  if (s.year_to !== null) p.set("year_to", String(s.year_to));
  return p.toString();
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

function syncControls() {
  if (document.activeElement !== els.q) els.q.value = state.q;
  els.keywords.checked = state.keywords;
  els.yearFrom.value = state.year_from ?? "";
  els.yearTo.value = state.year_to ?? "";
  document.title = state.q ? `${state.q} — iconosearch` : "iconosearch — search heritage images";
}

function renderParts() {
  const parts = [];
  if (state.q.trim()) parts.push({ kind: "words", label: `Words: “${state.q.trim()}”`, remove: () => ({ ...state, q: "" }) });
  if (image) parts.push({ kind: "image", label: `Image: ${image.name}`, thumb: image.dataUrl, note: "not included in shared links", remove: () => { image = null; lastKey = null; return { ...state }; } });
  for (const id of state.like) parts.push({ kind: "like", label: `Like: ${shortLabel(id)}`, thumb: thumbOf(id), remove: () => ({ ...state, like: state.like.filter((x) => x !== id) }) });
  for (const t of state.less) parts.push({ kind: "less", label: `Less of: “${t}”`, remove: () => ({ ...state, less: state.less.filter((x) => x !== t) }) });
  for (const id of state.unlike) parts.push({ kind: "less", label: `Less like: ${shortLabel(id)}`, thumb: thumbOf(id), remove: () => ({ ...state, unlike: state.unlike.filter((x) => x !== id) }) });
  els.parts.replaceChildren();
  if (parts.length < 2 && !parts.some((p) => p.kind !== "words")) return;
  const intro = el("span", { class: "parts-intro" }, "Your search combines:");
  const list = el("ul", { class: "chips", "aria-label": "Parts of your search" });
  for (const part of parts) {
    const li = el("li", { class: `chip chip-${part.kind}` });
    if (part.thumb) li.append(el("img", { src: part.thumb, alt: "", width: "28", height: "28" }));
    li.append(el("span", {}, part.label));
    if (part.note) li.append(el("span", { class: "note" }, ` (${part.note})`));
    const btn = el("button", { type: "button", class: "chip-remove", "aria-label": `Remove ${part.label}` }, "✕");
    btn.addEventListener("click", () => navigate({ ...part.remove(), pages: 1, item: null }));
    li.append(btn);
    list.append(li);
  }
  els.parts.append(intro, list, el("span", { class: "parts-help" }, "Results match these together; “less of” parts push results away."));
}

function shortLabel(id) {
  const r = known.get(id);
  return r ? truncate(bestText(r.caption) || bestText(r.label) || id, 40) : id;
}

function thumbOf(id) {
  const r = known.get(id);
  return r && r.thumbnail ? r.thumbnail.url : null;
}

async function startSearch() {
  if (inflight) inflight.abort();
  results = [];
  nextCursor = null;
  els.grid.replaceChildren();
  els.loadMore.hidden = true;
  hideMessage();
  if (!hasTerms(state)) {
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
    lastFacets = page.facets || lastFacets;
    renderFacets(page.facets);
    appendResults(page.results);
    nextCursor = page.next_cursor;
    // Restore as many pages as the URL says were loaded.
    for (let i = 1; i < state.pages && nextCursor; i++) {
      page = await search(nextCursor, controller.signal);
      appendResults(page.results);
      nextCursor = page.next_cursor;
    }
    const ms = Math.round(performance.now() - started);
    if (!results.length) showNoResults();
    else els.status.textContent = `${results.length}${nextCursor ? "+" : ""} results · ${ms} ms`;
    els.loadMore.hidden = !nextCursor;
    renderParts();
  } catch (err) {
    if (err.name === "AbortError") return;
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

function search(cursor, signal) {
  return api("/api/search", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(requestBody(state, cursor)),
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
    history.replaceState(null, "", urlFromState(state));
    els.status.textContent = `${results.length}${nextCursor ? "+" : ""} results`;
    els.loadMore.hidden = !nextCursor;
  } catch (err) {
    toast(err.message);
  } finally {
    loadingMore = false;
    els.loadMore.disabled = false;
  }
}

function appendResults(page) {
  const frag = document.createDocumentFragment();
  for (const r of page) {
    if (results.some((x) => x.id === r.id)) continue;
    results.push(r);
    known.set(r.id, r);
    frag.append(card(r, results.length));
  }
  els.grid.append(frag);
  updateLanguageFacet();
}

function card(r, position) {
  const caption = bestText(r.caption) || bestText(r.label) || "Untitled image";
  const li = el("li", { class: "card", "data-id": r.id });
  const w = r.thumbnail.width || Math.round(300 * (r.aspect_ratio || 1));
  const h = r.thumbnail.height || 300;
  const open = el("button", {
    type: "button", class: "thumb", "aria-label": `Result ${position}: ${truncate(caption, 120)}. Open details`,
    style: `aspect-ratio: ${w} / ${h}`,
  });
  if (r.thumbnail.url) {
    const img = el("img", { src: r.thumbnail.url, alt: truncate(caption, 200), loading: "lazy", decoding: "async", width: String(w), height: String(h) });
    img.addEventListener("error", () => img.classList.add("broken"), { once: true });
    open.append(img);
  } else {
    open.append(el("span", { class: "no-image" }, "No preview"));
  }
  open.addEventListener("click", () => openItem(r.id, open));
  const meta = el("div", { class: "card-meta" });
  meta.append(el("p", { class: "card-caption" }, truncate(caption, 90)));
  const line = el("p", { class: "card-line" });
  const bits = [r.date ? r.date.display : null, bestText(r.providers[0]?.label) || r.collection].filter(Boolean);
  line.append(el("span", {}, bits.join(" · ")));
  line.append(el("span", { class: "score", title: "Similarity to your search (higher is closer)" }, r.score.toFixed(2)));
  meta.append(line);
  if (r.duplicates.size > 1) {
    meta.append(el("p", { class: "dups" }, `+${r.duplicates.size - 1} more ${r.duplicates.size - 1 === 1 ? "copy" : "copies"} of this image`));
  }
  const more = el("button", { type: "button", class: "more-like", "aria-label": `More like result ${position}` }, "More like this");
  more.addEventListener("click", () => { image = null; navigate({ ...emptyFilters(state), like: [r.id] }); });
  li.append(open, meta, more);
  return li;
}

function emptyFilters(s) {
  // "More like this" keeps the filters but starts a new query.
  return { ...s, q: "", less: [], like: [], unlike: [], item: null, pages: 1, keywords: false };
}

// ------------------------------------------------------------------ facets

function renderFacets(facets) {
  els.facets.replaceChildren();
  if (!facets) return;
  for (const [name, counts] of Object.entries(facets)) {
    if (name === "century" || !FACET_PARAM[name]) continue;
    const param = FACET_PARAM[name];
    const stateKey = param;
    const selected = new Set(state[stateKey]);
    const values = Object.entries(counts).sort((a, b) => b[1] - a[1]);
    for (const v of selected) if (!(v in counts)) values.push([v, 0]);
    if (!values.length) continue;
    const fs = el("fieldset", { class: "facet", "data-facet": name });
    fs.append(el("legend", {}, FACET_LABELS[name] || name));
    for (const [value, count] of values.slice(0, 30)) {
      const id = `f-${name}-${value}`.replace(/[^a-zA-Z0-9_-]/g, "_");
      const input = el("input", { type: "checkbox", id, value });
      input.checked = selected.has(value);
      input.addEventListener("change", () => toggleFilter(stateKey, value, input.checked));
      const label = el("label", { for: id }, name === "rights" ? RIGHTS_LABELS[value] || value : value);
      label.append(el("span", { class: "count" }, ` ${count}`));
      fs.append(el("div", { class: "facet-row" }, input, label));
    }
    els.facets.append(fs);
  }
  renderCenturies(facets.century || {});
  updateLanguageFacet();
}

function updateLanguageFacet() {
  if (lastFacets && (lastFacets.language || lastFacets.lang)) return;
  // The index has no language facet: offer the caption languages of the results shown.
  const langs = new Map();
  for (const r of results) for (const lang of Object.keys(r.caption || {})) if (lang !== "none") langs.set(lang, (langs.get(lang) || 0) + 1);
  for (const l of state.lang) if (!langs.has(l)) langs.set(l, 0);
  let fs = els.facets.querySelector('[data-facet="lang"]');
  if (!langs.size) { fs?.remove(); return; }
  if (!fs) {
    fs = el("fieldset", { class: "facet", "data-facet": "lang" });
    els.facets.append(fs);
  }
  fs.replaceChildren(el("legend", {}, "Caption language"));
  for (const [lang, count] of [...langs.entries()].sort((a, b) => b[1] - a[1])) {
    const id = `f-lang-${lang}`.replace(/[^a-zA-Z0-9_-]/g, "_");
    const input = el("input", { type: "checkbox", id, value: lang });
    input.checked = state.lang.includes(lang);
    input.addEventListener("change", () => toggleFilter("lang", lang, input.checked));
    const label = el("label", { for: id }, languageName(lang));
    if (count) label.append(el("span", { class: "count" }, ` ${count}`));
    fs.append(el("div", { class: "facet-row" }, input, label));
  }
}

function renderCenturies(counts) {
  els.centuries.replaceChildren();
  // Keys are century numbers or labels such as "19th c." / "1st c. BCE".
  const number = (key) => { const n = Number.parseInt(key, 10); return /BCE|BC\b|^-/.test(key) ? -Math.abs(n) : n; };
  const entries = Object.entries(counts).map(([c, n]) => [number(c), n]).filter(([c]) => Number.isFinite(c)).sort((a, b) => a[0] - b[0]);
  for (const [c, n] of entries) {
    const [from, to] = centuryYears(c);
    const active = state.year_from === from && state.year_to === to;
    const b = el("button", { type: "button", class: active ? "chip active" : "chip", "aria-pressed": String(active) }, `${ordinal(c)} c.`);
    b.append(el("span", { class: "count" }, ` ${n}`));
    b.addEventListener("click", () => navigate({ ...state, year_from: active ? null : from, year_to: active ? null : to, pages: 1, item: null }));
    els.centuries.append(b);
  }
}

function centuryYears(c) {
  return c > 0 ? [(c - 1) * 100 + 1, c * 100] : [c * 100, (c + 1) * 100 - 1];
}

function ordinal(c) {
  if (c <= 0) return `${-c} BCE`;
  const s = c % 100 >= 11 && c % 100 <= 13 ? "th" : { 1: "st", 2: "nd", 3: "rd" }[c % 10] || "th";
  return `${c}${s}`;
}

function toggleFilter(key, value, on) {
  const list = state[key].filter((v) => v !== value);
  if (on) list.push(value);
  navigate({ ...state, [key]: list, pages: 1, item: null });
}

// ------------------------------------------------------------------ messages

async function showWelcome() {
  let info = null;
  try {
    info = await api("/api/collections");
  } catch (err) {
    showError(err);
    return;
  }
  if (!info.count) {
    showMessage("empty-index", "No images have been indexed yet",
      "This service has no searchable images yet. Harvest a collection and build the index (iconosearch harvest, then iconosearch index); the page picks the new index up without a restart.");
    return;
  }
  const box = showMessage("welcome", "Search heritage images by words or by example",
    `Describe what you are looking for, drop or paste an image, or use “Search by image”. ${info.count} images from ${info.collections.length} collection(s).`);
  box.append(examplesList());
  try {
    const facets = await api(`/api/facets${filterQuery(state) ? `?${filterQuery(state)}` : ""}`);
    lastFacets = facets.facets;
    renderFacets(facets.facets);
  } catch (_err) {
    // Facets are optional on the welcome page.
  }
}

function showNoResults() {
  els.status.textContent = "No results";
  const filtered = state.collection.length || state.institution.length || state.rights.length || state.lang.length || state.year_from !== null || state.year_to !== null;
  const box = showMessage("no-results", "No results",
    filtered ? "Nothing matches this search with the filters chosen." : "Nothing matches this search.");
  const ul = el("ul", { class: "suggestions" });
  if (filtered) {
    const b = el("button", { type: "button", class: "link-button" }, "Remove all filters");
    b.addEventListener("click", clearFilters);
    ul.append(el("li", {}, b));
  }
  if (state.less.length || state.unlike.length) ul.append(el("li", {}, "Remove some “less of” parts."));
  ul.append(el("li", {}, "Use fewer or more general words, or describe what is visible rather than names."));
  box.append(ul, examplesList());
}

function showError(err) {
  els.status.textContent = "";
  if (err.code === "index-not-ready") {
    showMessage("empty-index", "No images have been indexed yet", "Harvest a collection and build the index; searches will work as soon as it is ready.");
    return;
  }
  const box = showMessage("error", err.status >= 500 || err.status === 0 ? "Something went wrong" : "This search cannot be answered", err.message);
  const retry = el("button", { type: "button" }, "Try again");
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
  const wrap = el("p", { class: "examples" }, "Try: ");
  EXAMPLES.forEach((ex, i) => {
    const a = el("a", { href: urlFromState({ ...emptyState(), q: ex }) }, ex);
    a.addEventListener("click", (e) => { e.preventDefault(); image = null; navigate({ ...state, q: ex, like: [], unlike: [], less: [], pages: 1, item: null }); });
    wrap.append(a);
    if (i < EXAMPLES.length - 1) wrap.append(", ");
  });
  return wrap;
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
    toast(err.status === 404 ? "That image is no longer in the index." : err.message);
    navigate({ ...state, item: null }, { replace: true });
    return;
  }
  if (shownItem !== item.id) return;
  known.set(item.id, { ...known.get(item.id), ...item });
  fillDetail(item);
  if (!els.dialog.open) els.dialog.showModal();
  $("detail-close").focus();
  showViewer(item);
}

function fillDetail(item) {
  const page = bestText(item.canvas_label);
  const name = bestText(item.manifest_label) || bestText(item.label) || "Untitled image";
  const title = page && page !== name ? `${name} — ${page}` : name;
  $("detail-title").textContent = title;
  $("detail-caption").textContent = bestText(item.caption) || "";
  const facts = $("detail-facts");
  facts.replaceChildren();
  const addFact = (k, v) => { if (v) facts.append(el("dt", {}, k), el("dd", {}, v)); };
  addFact("Date", item.date ? item.date.display : null);
  addFact("Institution", item.providers.map((p) => bestText(p.label)).filter(Boolean).join("; "));
  addFact("Collection", item.collection);
  addFact("Image", item.canvas_index !== undefined ? `Canvas ${item.canvas_index + 1}${item.region ? `, region ${item.region}` : ""}` : null);

  const rights = $("detail-rights");
  rights.replaceChildren();
  if (item.attribution) {
    rights.append(el("p", { class: "attribution" }, el("strong", {}, `${bestText(item.attribution.label) || "Attribution"}: `), allText(item.attribution.value)));
  }
  if (item.rights) {
    rights.append(el("p", {}, "Rights: ", el("a", { href: item.rights, rel: "noopener", target: "_blank" }, rightsName(item.rights)), el("span", { class: "uri" }, ` (${item.rights})`)));
  }
  if (!item.rights) rights.append(el("p", { class: "no-rights" }, "Rights: not stated by the publisher. Check with the institution before reuse."));

  const links = $("detail-links");
  links.replaceChildren();
  const addLink = (label, href) => { if (href) links.append(el("li", {}, el("a", { href, rel: "noopener", target: "_blank" }, label))); };
  for (const h of item.homepage) addLink(`At the institution: ${bestText(h.label) || h.id}`, h.id);
  for (const p of item.providers) if (p.homepage) addLink(`${bestText(p.label) || "Institution"} website`, p.homepage);
  addLink("IIIF manifest", item.manifest);
  addLink("Open in Mirador", item.viewers.mirador);
  addLink("Open in Universal Viewer", item.viewers.universal_viewer);
  const cs = `${location.origin}/?iiif-content=${item.viewers.content_state}`;
  links.append(el("li", {}, el("span", {}, "IIIF Content State: "), el("code", { class: "content-state", title: cs }, truncate(item.viewers.content_state, 48))));

  const permalink = `${location.origin}${urlFromState({ ...emptyState(), item: item.id })}`;
  $("permalink").value = permalink;
  const provider = item.providers.map((p) => bestText(p.label)).filter(Boolean).join(", ");
  const citation = [title, item.date?.display, provider, item.attribution ? allText(item.attribution.value) : null, item.rights ? rightsName(item.rights) : null]
    .filter(Boolean).join(". ");
  $("citation").value = `${citation}. IIIF manifest: ${item.manifest}. ${permalink} (accessed ${new Date().toISOString().slice(0, 10)}).`;

  const meta = $("detail-metadata");
  meta.replaceChildren();
  for (const m of item.metadata) meta.append(el("dt", {}, bestText(m.label)), el("dd", {}, allText(m.value)));
  if (item.summary && bestText(item.summary)) meta.prepend(el("dt", {}, "Summary"), el("dd", {}, allText(item.summary)));
  $("detail-metadata-section").hidden = !meta.children.length;

  const dups = $("detail-duplicates");
  dups.replaceChildren();
  for (const id of item.duplicates.ids) {
    const a = el("a", { href: urlFromState({ ...state, item: id }) }, id);
    a.addEventListener("click", (e) => { e.preventDefault(); navigate({ ...state, item: id }); });
    dups.append(el("li", {}, a));
  }
  $("detail-duplicates-section").hidden = !item.duplicates.ids.length;
}

function showViewer(item) {
  if (osd) { osd.destroy(); osd = null; }
  els.viewer.replaceChildren();
  const alt = truncate(bestText(item.caption) || bestText(item.label) || "Image", 200);
  els.viewer.setAttribute("aria-label", `Zoomable image: ${alt}`);
  const fallback = () => {
    const src = item.image_url || item.thumbnail.url;
    if (src) els.viewer.replaceChildren(el("img", { src, alt, class: "viewer-fallback" }));
  };
  if (!window.OpenSeadragon || !(item.image_service || item.image_url)) { fallback(); return; }
  const tileSources = item.image_service ? item.image_service.info_url : { type: "image", url: item.image_url };
  osd = window.OpenSeadragon({
    element: els.viewer, prefixUrl: "/vendor/openseadragon/images/", tileSources,
    showNavigator: false, gestureSettingsMouse: { clickToZoom: false }, visibilityRatio: 0.5,
  });
  osd.addHandler("open-failed", fallback);
  if (item.region) {
    const [x, y, w, h] = item.region.split(",").map(Number);
    osd.addOnceHandler("open", () => {
      const rect = osd.viewport.imageToViewportRectangle(x, y, w, h);
      osd.viewport.fitBounds(rect, true);
    });
  }
}

els.dialog.addEventListener("close", () => {
  if (osd) { osd.destroy(); osd = null; }
  shownItem = null;
  if (state.item) navigate({ ...state, item: null });
  const back = openerElement && document.contains(openerElement) ? openerElement : state && results.length ? els.grid.querySelector(".thumb") : els.q;
  back?.focus();
});
$("detail-close").addEventListener("click", () => els.dialog.close());
els.dialog.addEventListener("click", (e) => { if (e.target === els.dialog) els.dialog.close(); });
$("detail-more").addEventListener("click", () => { const id = state.item; image = null; els.dialog.close(); navigate({ ...emptyFilters(state), like: [id] }); });
$("detail-add").addEventListener("click", () => { const id = state.item; els.dialog.close(); navigate({ ...state, like: [...new Set([...state.like, id])], item: null, pages: 1 }); });
$("detail-less").addEventListener("click", () => { const id = state.item; els.dialog.close(); navigate({ ...state, unlike: [...new Set([...state.unlike, id])], like: state.like.filter((x) => x !== id), item: null, pages: 1 }); });
for (const b of document.querySelectorAll("[data-copy]")) {
  b.addEventListener("click", async () => {
    const field = $(b.dataset.copy);
    try {
      await navigator.clipboard.writeText(field.value);
      toast("Copied");
    } catch (_err) {
      field.select();
      toast("Press Ctrl+C to copy");
    }
  });
}

// ------------------------------------------------------------------ query input

let typingTimer = null;
els.q.addEventListener("input", () => {
  clearTimeout(typingTimer);
  typingTimer = setTimeout(() => {
    const replace = typingSession;
    typingSession = true;
    navigate({ ...state, q: els.q.value, pages: 1, item: null }, { replace });
  }, TYPING_DELAY_MS);
});
els.form.addEventListener("submit", (e) => {
  e.preventDefault();
  clearTimeout(typingTimer);
  const replace = typingSession && state.q === els.q.value;
  typingSession = false;
  navigate({ ...state, q: els.q.value, pages: 1, item: null }, { replace });
  if (state.q.trim() || image) els.results.focus({ preventScroll: true });
});
els.q.addEventListener("blur", () => { typingSession = false; });
els.lessForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const t = els.lessInput.value.trim();
  if (!t) return;
  els.lessInput.value = "";
  navigate({ ...state, less: [...new Set([...state.less, t])], pages: 1, item: null });
});
els.keywords.addEventListener("change", () => navigate({ ...state, keywords: els.keywords.checked, pages: 1, item: null }));
els.applyYears.addEventListener("click", applyYears);
for (const input of [els.yearFrom, els.yearTo]) input.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); applyYears(); } });
els.clearFilters.addEventListener("click", clearFilters);
els.loadMore.addEventListener("click", loadMore);
$("home-link").addEventListener("click", (e) => { e.preventDefault(); image = null; navigate(emptyState()); });

function applyYears() {
  navigate({ ...state, year_from: intOrNull(els.yearFrom.value), year_to: intOrNull(els.yearTo.value), pages: 1, item: null });
}

function clearFilters() {
  navigate({ ...state, collection: [], institution: [], rights: [], lang: [], year_from: null, year_to: null, pages: 1, item: null });
}

new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting)) loadMore();
}, { rootMargin: "600px" }).observe(els.sentinel);

// ------------------------------------------------------------------ image queries: picker, drop, paste

els.imageInput.addEventListener("change", () => {
  const file = els.imageInput.files && els.imageInput.files[0];
  if (file) useImage(file);
  els.imageInput.value = "";
});
let dragDepth = 0;
window.addEventListener("dragenter", (e) => { if (hasFile(e)) { dragDepth++; els.drop.hidden = false; } });
window.addEventListener("dragleave", () => { dragDepth = Math.max(0, dragDepth - 1); if (!dragDepth) els.drop.hidden = true; });
window.addEventListener("dragover", (e) => { if (hasFile(e)) e.preventDefault(); });
window.addEventListener("drop", (e) => {
  dragDepth = 0;
  els.drop.hidden = true;
  const file = e.dataTransfer && [...e.dataTransfer.files].find((f) => f.type.startsWith("image/"));
  if (!file) return;
  e.preventDefault();
  useImage(file);
});
window.addEventListener("paste", (e) => {
  const file = e.clipboardData && [...e.clipboardData.files].find((f) => f.type.startsWith("image/"));
  if (file) { e.preventDefault(); useImage(file); }
});

function hasFile(e) {
  return e.dataTransfer && [...e.dataTransfer.types].includes("Files");
}

async function useImage(file) {
  if (!file.type.startsWith("image/")) { toast("That file is not an image."); return; }
  if (file.size > 20 * 1024 * 1024) { toast("That image is larger than 20 MB."); return; }
  let dataUrl;
  try {
    dataUrl = await shrink(file);
  } catch (_err) {
    toast("This image cannot be read. Try a JPEG or PNG.");
    return;
  }
  image = { b64: dataUrl.split(",")[1], dataUrl, name: file.name || "pasted image", key: `${file.name}:${file.size}:${Date.now()}` };
  imagesByKey.set(image.key, image);
  lastKey = null;
  navigate({ ...state, pages: 1, item: null });
}

// Downscale in the browser: the model sees a few hundred pixels, so there is no need to send more.
async function shrink(file) {
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, IMAGE_MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  return canvas.toDataURL("image/jpeg", 0.9);
}

// ------------------------------------------------------------------ text helpers

const preferred = [...new Set([...(navigator.languages || []).map((l) => l.toLowerCase().split("-")[0]), "en", "none"])];

function bestText(map) {
  if (!map) return "";
  for (const lang of preferred) if (map[lang] && map[lang].length) return map[lang].join(" ");
  const first = Object.values(map).find((v) => v && v.length);
  return first ? first.join(" ") : "";
}

function allText(map) {
  return bestText(map);
}

function truncate(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

function languageName(tag) {
  try {
    return new Intl.DisplayNames([navigator.language || "en"], { type: "language" }).of(tag) || tag;
  } catch (_err) {
    return tag;
  }
}

function rightsName(uri) {
  const u = uri.toLowerCase();
  if (u.includes("publicdomain/zero")) return "CC0 1.0 (public domain dedication)";
  if (u.includes("publicdomain/mark")) return "Public Domain Mark";
  const cc = u.match(/creativecommons\.org\/licenses\/([a-z-]+)\/([0-9.]+)/);
  if (cc) return `CC ${cc[1].toUpperCase()} ${cc[2]}`;
  const rs = u.match(/rightsstatements\.org\/vocab\/([a-z-]+)\//i);
  if (rs) return `RightsStatements.org: ${uri.match(/vocab\/([^/]+)\//)[1]}`;
  return uri;
}

// Link targets come from harvested documents: only http(s) (and same-page relative) URLs may become an
// href or src, so a `javascript:` link in a manifest can never run (the parser drops them too).
// The one exception is the preview of the user's own upload, a `data:image/` URL in an img src.
const URL_ATTRS = new Set(["href", "src"]);
function safeUrl(attr, value) {
  const text = String(value);
  if (attr === "src" && text.startsWith("data:image/")) return text;
  try { return ["http:", "https:"].includes(new URL(text, location.href).protocol) ? text : null; }
  catch { return null; }
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined) continue;
    if (URL_ATTRS.has(k) && safeUrl(k, v) === null) continue;
    node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

// ------------------------------------------------------------------ start

// On a phone the filters start folded so that results come first.
if (matchMedia("(max-width: 48rem)").matches) els.filtersDetails.open = false;
render();
