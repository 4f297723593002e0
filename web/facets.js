// The filter panel: facet values with counts from the API. Facets stay visible when a search has no
// results, and an empty facet says why; a facet whose only value is "unknown" tells nothing and is hidden.

import { el, languageName } from "./common.js";
import { currentLang, t } from "./i18n.js";
import { labelSpan } from "./iconclass.js";

const FACET_PARAM = {
  collection: "collection", institution: "institution", rights: "rights", language: "lang", lang: "lang",
  suggested_division: "suggested_division",
};
// Facets of machine-made data: drawn apart from the catalogue's, with a note saying so.
const MACHINE = new Set(["suggested_division"]);
const MAX_VALUES = 30;

export function hasFilters(s) {
  return Boolean(s.collection.length || s.institution.length || s.rights.length || s.lang.length || s.suggested_division.length || s.year_from !== null || s.year_to !== null);
}

function uninformative(counts) {
  const keys = Object.keys(counts);
  return keys.length === 1 && keys[0] === "unknown";
}

function emptyReason(state, noResults) {
  if (hasFilters(state)) return t("facet.emptyFiltered");
  return noResults ? t("facet.emptyNoResults") : t("facet.emptyUnknown");
}

function valueLabel(name, value) {
  if (name === "rights") return t(`rights.${value}Long`);
  // An ICONCLASS top-level division: its notation, and its name from the vocabulary in the interface language.
  if (name === "suggested_division") return el("span", {}, el("code", {}, value), " ", labelSpan(value, currentLang(), ""));
  return value;
}

// ``toggle(key, value, on)`` changes the state; ``noResults`` says whether the search found nothing.
export function renderFacets(container, facets, state, { toggle, noResults }) {
  container.replaceChildren();
  if (!facets) return;
  for (const [name, counts] of Object.entries(facets)) {
    const param = FACET_PARAM[name];
    if (name === "century" || !param) continue;
    if (uninformative(counts) && !state[param].length) continue;
    // Only indexes built with suggestions have any; elsewhere the facet would be empty for good.
    if (MACHINE.has(name) && !Object.keys(counts).length && !state[param].length) continue;
    const selected = new Set(state[param]);
    const values = Object.entries(counts).sort((a, b) => b[1] - a[1]);
    for (const v of selected) if (!(v in counts)) values.push([v, 0]);
    const fs = el("fieldset", { class: MACHINE.has(name) ? "facet facet-machine" : "facet", "data-facet": name });
    fs.append(el("legend", {}, t(`facet.${param}`)));
    if (MACHINE.has(name)) fs.append(el("p", { class: "facet-note" }, t(`facet.${param}Note`)));
    if (!values.length) fs.append(el("p", { class: "facet-empty" }, emptyReason(state, noResults)));
    for (const [value, count] of values.slice(0, MAX_VALUES)) {
      const id = `f-${name}-${value}`.replace(/[^a-zA-Z0-9_-]/g, "_");
      const input = el("input", { type: "checkbox", id, value });
      input.checked = selected.has(value);
      input.addEventListener("change", () => toggle(param, value, input.checked));
      const label = el("label", { for: id }, valueLabel(name, value), el("span", { class: "count" }, ` ${count}`));
      fs.append(el("div", { class: "facet-row" }, input, label));
    }
    container.append(fs);
  }
}

// The index has no language facet: offer the caption languages of the results shown.
export function renderLanguageFacet(container, results, state, toggle) {
  const langs = new Map();
  for (const r of results) for (const lang of Object.keys(r.caption || {})) if (lang !== "none") langs.set(lang, (langs.get(lang) || 0) + 1);
  for (const l of state.lang) if (!langs.has(l)) langs.set(l, 0);
  let fs = container.querySelector('[data-facet="lang"]');
  // One language for everything tells nothing, like a single "unknown".
  if (langs.size < 2 && !state.lang.length) { fs?.remove(); return; }
  if (!fs) {
    fs = el("fieldset", { class: "facet", "data-facet": "lang" });
    container.append(fs);
  }
  fs.replaceChildren(el("legend", {}, t("facet.lang")));
  for (const [lang, count] of [...langs.entries()].sort((a, b) => b[1] - a[1])) {
    const id = `f-lang-${lang}`.replace(/[^a-zA-Z0-9_-]/g, "_");
    const input = el("input", { type: "checkbox", id, value: lang });
    input.checked = state.lang.includes(lang);
    input.addEventListener("change", () => toggle("lang", lang, input.checked));
    const label = el("label", { for: id }, languageName(lang));
    if (count) label.append(el("span", { class: "count" }, ` ${count}`));
    fs.append(el("div", { class: "facet-row" }, input, label));
  }
}

// Century chips; keys are century numbers or labels such as "19th c." / "1st c. BCE" / "unknown".
export function renderCenturies(container, emptyNote, counts, state, { pick, noResults }) {
  container.replaceChildren();
  const number = (key) => { const n = Number.parseInt(key, 10); return /BCE|BC\b|^-/.test(key) ? -Math.abs(n) : n; };
  const entries = Object.entries(counts || {}).map(([c, n]) => [number(c), n]).filter(([c]) => Number.isFinite(c)).sort((a, b) => a[0] - b[0]);
  for (const [c, n] of entries) {
    const [from, to] = centuryYears(c);
    const active = state.year_from === from && state.year_to === to;
    const b = el("button", { type: "button", class: active ? "chip active" : "chip", "aria-pressed": String(active) }, centuryLabel(c));
    b.append(el("span", { class: "count" }, ` ${n}`));
    b.addEventListener("click", () => pick(active ? null : from, active ? null : to));
    container.append(b);
  }
  emptyNote.hidden = entries.length > 0;
  emptyNote.textContent = entries.length ? "" : emptyReason(state, noResults);
}

function centuryYears(c) {
  return c > 0 ? [(c - 1) * 100 + 1, c * 100] : [c * 100, (c + 1) * 100 - 1];
}

function centuryLabel(c) {
  if (c <= 0) return t("century.bce", { n: -c });
  const teen = c % 100 >= 11 && c % 100 <= 13;
  const key = teen ? "century.ordinal" : { 1: "century.ordinal1", 2: "century.ordinal2", 3: "century.ordinal3" }[c % 10] || "century.ordinal";
  return t(key, { n: c });
}
