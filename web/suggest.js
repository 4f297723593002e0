// Typing suggestions under the search box (ARIA combobox + listbox): ICONCLASS subjects when the server
// offers them (GET /api/iconclass/suggest, detected on first use) and the names of the collections.

import { api, el } from "./common.js";
import { currentLang, t } from "./i18n.js";

const MAX = 8;
const DELAY_MS = 200;

export function wireSuggestions(input, list, { collections, pickSubject, pickCollection }) {
  let items = [];
  let active = -1;
  let timer = null;
  let subjectsAvailable = true;
  let seq = 0;

  const close = () => {
    list.hidden = true;
    list.replaceChildren();
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    items = [];
    active = -1;
  };

  const choose = (i) => {
    const item = items[i];
    close();
    if (!item) return;
    if (item.kind === "subject") pickSubject(item.value);
    else pickCollection(item.value);
  };

  const highlight = (i) => {
    active = i;
    for (const [n, node] of [...list.children].entries()) node.setAttribute("aria-selected", String(n === i));
    if (i >= 0) input.setAttribute("aria-activedescendant", `suggest-${i}`);
    else input.removeAttribute("aria-activedescendant");
  };

  async function subjects(q) {
    if (!subjectsAvailable) return [];
    try {
      const body = await api(`/api/iconclass/suggest?${new URLSearchParams({ q, lang: currentLang() })}`);
      return body.suggestions.slice(0, MAX).map((r) => ({ kind: "subject", value: r.ref, label: `${r.notation} ${r.label}`, lang: r.label_language }));
    } catch (err) {
      if (err.status === 404) subjectsAvailable = false;
      return [];
    }
  }

  async function update() {
    const q = input.value.trim();
    const mine = ++seq;
    if (q.length < 2) { close(); return; }
    const lower = q.toLowerCase();
    const named = collections().filter((c) => c.label.toLowerCase().includes(lower) || c.name.toLowerCase().includes(lower))
      .slice(0, 3).map((c) => ({ kind: "collection", value: c.name, label: c.label }));
    const found = [...named, ...(await subjects(q))].slice(0, MAX);
    if (mine !== seq || document.activeElement !== input) return;
    if (!found.length) { close(); return; }
    items = found;
    list.replaceChildren(...found.map((item, i) => {
      const li = el("li", { id: `suggest-${i}`, role: "option", "aria-selected": "false", class: `suggest-${item.kind}` },
        el("span", { class: "suggest-kind" }, t(`suggest.${item.kind}`)), " ", el("span", { lang: item.lang }, item.label));
      li.addEventListener("mousedown", (e) => { e.preventDefault(); choose(i); });
      return li;
    }));
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
    highlight(-1);
  }

  input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(update, DELAY_MS); });
  input.addEventListener("blur", () => setTimeout(close, 100));
  input.addEventListener("keydown", (e) => {
    if (list.hidden) return;
    if (e.key === "ArrowDown") { e.preventDefault(); highlight((active + 1) % items.length); }
    else if (e.key === "ArrowUp") { e.preventDefault(); highlight(active <= 0 ? items.length - 1 : active - 1); }
    else if (e.key === "Escape") { e.preventDefault(); close(); }
    else if (e.key === "Enter" && active >= 0) { e.preventDefault(); e.stopPropagation(); choose(active); }
  });
  return { close };
}
