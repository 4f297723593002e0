// The about page: what is indexed, under which rights, with which model, and how the ranking works and fails.

import { $, api, el, initSite } from "./common.js";
import { t } from "./i18n.js";

let data = null;

async function load() {
  const [collections, facets, relevance] = await Promise.all([
    api("/api/collections"),
    api("/api/facets").catch(() => ({ facets: {} })),
    api("/api/relevance").catch(() => null),
  ]);
  data = { collections, facets: facets.facets || {}, relevance };
}

function render() {
  if (!data) return;
  const { collections, facets, relevance } = data;
  $("indexed-summary").textContent = t("about.indexed", { count: collections.count });
  $("indexed-list").replaceChildren(...collections.collections.map((c) => {
    const name = c.label || c.name;
    const text = c.source ? t("about.collectionRow", { name, count: c.count, source: c.source }) : t("about.collectionRowNoSource", { name, count: c.count });
    const li = el("li", {}, text);
    if (c.institutions.length) li.append(el("br"), el("span", { class: "uri" }, t("about.institutions", { names: c.institutions.join(", ") })));
    return li;
  }));
  const rights = facets.rights || {};
  $("rights-summary").textContent = t("about.rights", { open: rights.open || 0, restricted: rights.restricted || 0, unknown: rights.unknown || 0 });
  $("model-summary").textContent = t("about.model", { model: collections.model || "?", version: collections.index_version || "?" });
  const cal = $("calibration-summary");
  if (relevance && relevance.calibrated && relevance.text) {
    cal.textContent = t("about.calibration", {
      data: relevance.measured_on,
      strong: Math.round(relevance.text.strong_recall * 100),
      possible: Math.round(relevance.text.possible_recall * 100),
    });
  } else {
    cal.textContent = t("about.noCalibration");
  }
}

async function start() {
  await initSite(render);
  try {
    await load();
  } catch (err) {
    $("indexed-summary").textContent = err.message;
    return;
  }
  render();
}

start();
