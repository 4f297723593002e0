// IIIF Content State API 1.0 in the browser: content-state-encoding (§6.1, §6.3) and reading a state.
//
// Encoding is encodeURIComponent, then base64url, then the "=" padding removed; decoding undoes the
// steps in reverse. The percent-encoding step is what lets btoa/atob (Latin-1 only) carry non-ASCII and
// "%" in identifiers intact. Used by the viewer page (/viewer/) and by the search page's ?iiif-content=.

export function encodeContentState(json) {
  const base64 = btoa(encodeURIComponent(json));
  return base64.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function decodeContentState(encoded) {
  if (encoded.length % 4 === 1) throw new Error("not a content state: impossible base64url length");
  const padded = encoded + "===".slice(0, (4 - (encoded.length % 4)) % 4);
  return decodeURIComponent(atob(padded.replace(/-/g, "+").replace(/_/g, "/")));
}

const XYWH = /#xywh=(?:pixel:)?(\d+(?:\.\d+)?),(\d+(?:\.\d+)?),(\d+(?:\.\d+)?),(\d+(?:\.\d+)?)$/;

function idOf(value) {
  return typeof value === "string" ? value : value && (value.id || value["@id"]);
}

// What a content state points at: { manifest, canvas, region, id } (region as [x, y, w, h] on the canvas;
// id the Annotation's own id, when it has one).
// Accepts the full Annotation (motivation contentState) or its bare target (§2.2), a target that is a
// Canvas with partOf, a SpecificResource with an xywh FragmentSelector, or a Manifest.
export function contentStateTarget(state) {
  const annotation = state && state.type === "Annotation" ? state : null;
  let target = annotation ? annotation.target : state;
  if (Array.isArray(target)) target = target[0];
  if (!target || typeof target !== "object") throw new Error("the content state has no target");
  let region = null;
  let resource = target;
  if (target.type === "SpecificResource") {
    resource = target.source;
    const value = target.selector && target.selector.value;
    if (typeof value === "string" && value.startsWith("xywh=")) region = `#${value}`;
  }
  const id = idOf(resource);
  if (!id) throw new Error("the content state's target has no id");
  const own = annotation && typeof annotation.id === "string" ? annotation.id : null;
  if (resource.type === "Manifest") return { manifest: id, canvas: null, region: null, id: own };
  const m = XYWH.exec(region || id);
  const canvas = id.replace(/#.*$/, "");
  const partOf = resource.partOf || target.partOf || [];
  const manifest = idOf((Array.isArray(partOf) ? partOf : [partOf]).find((p) => p && p.type === "Manifest") || partOf[0]);
  if (!manifest) throw new Error("the content state does not say which manifest the canvas is part of");
  return { manifest, canvas, region: m ? m.slice(1, 5).map(Number) : null, id: own };
}

// The ?iiif-content= value: a content-state-encoded state, or (§3.1.1) the URL of a state or manifest.
export async function readContentState(value) {
  if (/^https?:\/\//.test(value)) {
    const response = await fetch(value, { headers: { Accept: "application/ld+json, application/json" } });
    if (!response.ok) throw new Error(`the content state at ${value} answered ${response.status}`);
    const doc = await response.json();
    return doc.type === "Manifest" ? { manifest: value, canvas: null, region: null, id: null } : contentStateTarget(doc);
  }
  return contentStateTarget(JSON.parse(decodeContentState(value)));
}
