// ICONCLASS labels in the interface language, from the real vocabulary the server holds
// (GET /api/iconclass/{notation}?lang=): the names of the top-level divisions in the suggested-subject facet,
// and the labels of the machine-suggested subjects in the detail panel. Nothing is hard-coded here; where
// ICONCLASS has no text in the language (Dutch), the server answers in English and says so (label_language).

import { api, el } from "./common.js";

const RETRIES = 40; // loading takes 7 s on a quiet machine, 25 s under load
const RETRY_MS = 1000;
const cache = new Map(); // "lang notation" -> Promise<{label, label_language} | null>

function fetchLabel(notation, lang, attempt = 0) {
  return api(`/api/iconclass/${encodeURIComponent(notation)}?${new URLSearchParams({ lang })}`).catch((err) => {
    // 503: the server is still loading the vocabulary (seconds after it starts).
    if (err.status === 503 && attempt < RETRIES) {
      return new Promise((resolve) => setTimeout(resolve, RETRY_MS)).then(() => fetchLabel(notation, lang, attempt + 1));
    }
    return null; // no vocabulary (or an unknown notation): the caller keeps what it shows
  });
}

export function iconclassLabel(notation, lang) {
  const key = `${lang} ${notation}`;
  if (!cache.has(key)) {
    const pending = fetchLabel(notation, lang);
    cache.set(key, pending);
    pending.then((found) => { if (!found) cache.delete(key); });
  }
  return cache.get(key);
}

// A span showing ``fallback`` now, and the notation's label in ``lang`` once the server gives it (marked
// with its language, which may be English where ICONCLASS lacks the interface language).
export function labelSpan(notation, lang, fallback, fallbackLang = null) {
  const span = el("span", { class: "iconclass-label", lang: fallbackLang }, fallback);
  iconclassLabel(notation, lang).then((found) => {
    if (!found) return;
    // The text before a ";" is the subject; what follows lists attributes (saints) and would crowd it.
    span.textContent = found.label.split(";")[0].trim();
    span.lang = found.label_language;
  });
  return span;
}
