// What every page shares: DOM and API helpers, language-aware texts, and the site frame (header language
// switch, footer with API docs, health and version).

import { currentLang, pickLang, setLang, t, wireSwitch } from "./i18n.js";

export const $ = (id) => document.getElementById(id);

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

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined) continue;
    if (URL_ATTRS.has(k) && safeUrl(k, v) === null) continue;
    // The Content-Security-Policy (api/security.py) forbids style attributes in markup; CSSOM is allowed.
    if (k === "style") { node.style.cssText = v; continue; }
    node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

export class ApiError extends Error {
  constructor(problem, status) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.problem = problem;
    this.status = status;
    this.code = problem.code || "error";
  }
}

export async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { headers: { Accept: "application/json" }, ...options });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError({ detail: t("error.network"), code: "network" }, 0);
  }
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : { detail: await response.text() };
  if (!response.ok) throw new ApiError(body, response.status);
  return body;
}

// Texts of IIIF language maps in the interface language first, then the browser's, then English,
// then text without a language, then whatever there is.
function preferredLangs() {
  const browser = (navigator.languages || []).map((l) => l.toLowerCase().split("-")[0]);
  return [...new Set([currentLang(), ...browser, "en", "none"])];
}

export function bestText(map) {
  if (!map) return "";
  const keys = Object.keys(map);
  for (const want of preferredLangs()) {
    const key = keys.find((k) => k.toLowerCase() === want || k.toLowerCase().split("-")[0] === want);
    if (key && map[key] && map[key].length) return map[key].join(" ");
  }
  const first = Object.values(map).find((v) => v && v.length);
  return first ? first.join(" ") : "";
}

export function truncate(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

export function languageName(tag) {
  try {
    return new Intl.DisplayNames([currentLang()], { type: "language" }).of(tag) || tag;
  } catch (_err) {
    return tag;
  }
}

// Names of rights statements are proper names (licences), shown as published, not translated.
export function rightsName(uri) {
  const u = uri.toLowerCase();
  if (u.includes("publicdomain/zero")) return "CC0 1.0";
  if (u.includes("publicdomain/mark")) return "Public Domain Mark 1.0";
  const cc = u.match(/creativecommons\.org\/licenses\/([a-z-]+)\/([0-9.]+)/);
  if (cc) return `CC ${cc[1].toUpperCase()} ${cc[2]}`;
  const rs = uri.match(/rightsstatements\.org\/(?:vocab|page)\/([^/]+)\//i);
  if (rs) return `RightsStatements.org ${rs[1]}`;
  return uri;
}

// An href for a link taken from a record, or null (then the text is shown without a link).
export function safeHref(href) {
  return safeUrl("href", href);
}

async function fillFooter() {
  const version = $("footer-version");
  const status = $("footer-status");
  try {
    const health = await api("/healthz");
    if (version) version.textContent = t("footer.version", { version: health.version || "?" });
  } catch (_err) {
    if (version) version.textContent = t("footer.version", { version: "?" });
  }
  if (!status) return;
  try {
    await api("/readyz");
    status.textContent = t("footer.status", { status: t("footer.ready") });
  } catch (_err) {
    status.textContent = t("footer.status", { status: t("footer.notReady") });
  }
}

// Loads the strings, wires the language switch and the footer; ``onLangChange`` re-renders the page.
export async function initSite(onLangChange) {
  await setLang(pickLang());
  const select = $("lang-switch");
  if (select) {
    await wireSwitch(select, () => {
      fillFooter();
      onLangChange?.();
    });
  }
  fillFooter();
}
