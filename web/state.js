// The search state and its two forms: the page's URL (shareable; everything but an uploaded image) and
// the API request.

import { parseDetail } from "./regions.js";
import { readContentState } from "/viewer/content-state.js";

const LESS_WEIGHT = -0.5;
const PAGE_SIZE = 24;
// ``detail``: "<item id>:<x,y,w,h>", a region (image pixels) of an item to search by ("search this detail").
// ``suggested_division``: top-level ICONCLASS divisions (0-9) of the images' best machine-suggested subject.
const LIST_KEYS = ["less", "like", "unlike", "detail", "collection", "institution", "rights", "lang", "suggested_division"];
const DIVISIONS = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
const SORTS = ["relevance", "date-asc", "date-desc"];

export function emptyState() {
  return {
    q: "", less: [], like: [], unlike: [], detail: [], keywords: false,
    collection: [], institution: [], rights: [], lang: [], suggested_division: [],
    year_from: null, year_to: null, sort: "relevance", item: null, pages: 1,
  };
}

export function stateFromUrl(search = location.search) {
  const p = new URLSearchParams(search);
  const s = emptyState();
  s.q = p.get("q") || "";
  for (const key of LIST_KEYS) s[key] = p.getAll(key).filter(Boolean);
  s.detail = s.detail.filter((d) => parseDetail(d) !== null);
  s.suggested_division = s.suggested_division.filter((d) => DIVISIONS.includes(d));
  s.keywords = p.get("kw") === "1";
  s.year_from = intOrNull(p.get("year_from"));
  s.year_to = intOrNull(p.get("year_to"));
  s.sort = SORTS.includes(p.get("sort")) ? p.get("sort") : "relevance";
  s.item = p.get("item") || null;
  s.pages = Math.min(Math.max(intOrNull(p.get("pages")) || 1, 1), 20);
  return s;
}

export function urlFromState(s) {
  const p = new URLSearchParams();
  if (s.q) p.set("q", s.q);
  for (const key of LIST_KEYS) for (const v of s[key]) p.append(key, v);
  if (s.keywords) p.set("kw", "1");
  if (s.year_from !== null) p.set("year_from", String(s.year_from));
  if (s.year_to !== null) p.set("year_to", String(s.year_to));
  if (s.sort !== "relevance") p.set("sort", s.sort);
  if (s.pages > 1) p.set("pages", String(s.pages));
  if (s.item) p.set("item", s.item);
  const qs = p.toString();
  return qs ? `/?${qs}` : "/";
}

export function intOrNull(v) {
  if (v === null || v === undefined || v === "") return null;
  const n = Number.parseInt(v, 10);
  return Number.isFinite(n) ? n : null;
}

// ``language``: the interface language, taken as the language of the words typed (subjects resolve to it).
export function requestBody(s, image, cursor, language) {
  const terms = [];
  if (s.q.trim()) terms.push({ kind: "text", value: s.q.trim(), weight: 1 });
  if (image) terms.push({ kind: "image", value: image.b64, weight: 1 });
  for (const id of s.like) terms.push({ kind: "item", value: id, weight: 1 });
  for (const { id, region } of s.detail.map(parseDetail)) terms.push({ kind: "item", value: id, region, weight: 1 });
  for (const tx of s.less) terms.push({ kind: "text", value: tx, weight: LESS_WEIGHT });
  for (const id of s.unlike) terms.push({ kind: "item", value: id, weight: LESS_WEIGHT });
  return {
    terms,
    filters: {
      collections: s.collection, institutions: s.institution, rights: s.rights, languages: s.lang,
      suggested_divisions: s.suggested_division, year_from: s.year_from, year_to: s.year_to,
    },
    keywords: s.keywords && s.q.trim() ? s.q.trim() : null,
    k: PAGE_SIZE,
    cursor: cursor || null,
    facets: !cursor,
    sort: s.sort,
    language,
    // Cards outline a matched region on whole-image thumbnails: that needs the IIIF details.
    fields: ["iiif"],
  };
}

export function filterQuery(s) {
  const p = new URLSearchParams();
  for (const key of ["collection", "institution", "rights", "lang", "suggested_division"]) for (const v of s[key]) p.append(key, v);
  if (s.year_from !== null) p.set("year_from", String(s.year_from));
  if (s.year_to !== null) p.set("year_to", String(s.year_to));
  return p.toString();
}


// A IIIF Content State received as ?iiif-content= (Content State API §3.1): the id of one of our own items
// (its detail panel opens, zoomed to its region), or null: anything else opens in the bundled viewer, which
// shows any manifest, canvas and region, and explains what is wrong with a link it cannot read.
export async function ownItemOfContentState(value) {
  try {
    const target = await readContentState(value);
    const own = target.id && target.id.match(/\/api\/items\/([0-9a-f]{16})$/);
    return own && target.id.startsWith(location.origin) ? own[1] : null;
  } catch (_err) {
    return null;
  }
}
