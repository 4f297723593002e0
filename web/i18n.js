// Interface languages: one string file per language in /i18n/<lang>.json. Strings are whole sentences with
// named placeholders ({count}); plural forms are objects keyed by Intl.PluralRules categories. The code never
// joins translated words: every sentence shown is one string of one file.

export const LANGS = ["en", "de", "fr", "nl", "it"];
const DEFAULT = "en";
const STORE_KEY = "iconosearch.lang";

let lang = DEFAULT;
let strings = {};
let fallback = {};
let plural = new Intl.PluralRules(DEFAULT);

export function currentLang() {
  return lang;
}

// The user's choice wins, then the browser's languages, then English.
export function pickLang() {
  let stored = null;
  try { stored = localStorage.getItem(STORE_KEY); } catch (_err) { /* storage may be off */ }
  if (stored && LANGS.includes(stored)) return stored;
  for (const tag of navigator.languages || [navigator.language || DEFAULT]) {
    const primary = String(tag).toLowerCase().split("-")[0];
    if (LANGS.includes(primary)) return primary;
  }
  return DEFAULT;
}

async function load(code) {
  const response = await fetch(`/i18n/${code}.json`);
  if (!response.ok) throw new Error(`strings for ${code}: HTTP ${response.status}`);
  return response.json();
}

export async function setLang(code, { remember = false } = {}) {
  if (!LANGS.includes(code)) code = DEFAULT;
  if (!Object.keys(fallback).length) fallback = await load(DEFAULT);
  strings = code === DEFAULT ? fallback : await load(code);
  lang = code;
  plural = new Intl.PluralRules(code);
  document.documentElement.lang = code;
  if (remember) {
    try { localStorage.setItem(STORE_KEY, code); } catch (_err) { /* storage may be off */ }
  }
  applyStatic(document);
}

export function t(key, params = {}) {
  let value = key in strings ? strings[key] : fallback[key];
  if (value === undefined) return key;
  if (typeof value === "object") {
    const n = Number(params.count ?? 0);
    value = value[plural.select(n)] ?? value.other;
  }
  return value.replace(/\{(\w+)\}/g, (m, name) => (name in params ? format(params[name]) : m));
}

function format(v) {
  return typeof v === "number" ? new Intl.NumberFormat(lang).format(v) : String(v);
}

// Static text in pages: data-i18n="key" sets the text; data-i18n-attr="placeholder:key, aria-label:key".
export function applyStatic(root) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of node.dataset.i18nAttr.split(",")) {
      const [attr, key] = pair.split(":").map((x) => x.trim());
      if (attr && key) node.setAttribute(attr, t(key));
    }
  }
}

// The language switch: a <select> listing each language in its own name.
export async function wireSwitch(select, onChange) {
  const names = await Promise.all(LANGS.map(async (code) => [code, code === lang ? t("lang.name") : (await load(code))["lang.name"]]));
  select.replaceChildren(...names.map(([code, name]) => {
    const option = document.createElement("option");
    option.value = code;
    option.lang = code;
    option.textContent = name;
    option.selected = code === lang;
    return option;
  }));
  select.addEventListener("change", async () => {
    await setLang(select.value, { remember: true });
    onChange?.();
  });
}
