// The bundled Mirador, opened on what the URL names: ?iiif-content=<content state or its URL>, or
// ?manifest=<url>. Mirador 4 does not read iiif-content itself, so the state is decoded here and turned
// into a window on its manifest, at its canvas, fitted to its region (canvas coordinates, as Mirador's).
import { readContentState } from "/viewer/content-state.js";

const message = document.getElementById("viewer-message");

function fail(text) {
  message.textContent = text;
  message.hidden = false;
  document.body.dataset.state = "error";
}

async function target(params) {
  if (params.has("iiif-content")) return readContentState(params.get("iiif-content"));
  if (params.has("manifest")) return { manifest: params.get("manifest"), canvas: null, region: null, id: null };
  throw new Error("Nothing to show: open this page with ?iiif-content=<content state> or ?manifest=<URL>.");
}

async function main() {
  let what;
  try {
    what = await target(new URLSearchParams(location.search));
  } catch (err) {
    fail(`This link cannot be opened: ${err.message}`);
    return;
  }
  const win = { id: "main", manifestId: what.manifest, thumbnailNavigationPosition: "far-bottom" };
  if (what.canvas) win.canvasId = what.canvas;
  if (what.region) win.initialViewerConfig = { bounds: what.region };
  window.mirador = window.Mirador.viewer({
    id: "mirador",
    windows: [win],
    window: { allowClose: false, allowMaximize: false, defaultSideBarPanel: "info", sideBarOpenByDefault: false },
    workspaceControlPanel: { enabled: false },
    workspace: { showZoomControls: true },
  });
  document.body.dataset.state = "ready";
}

main();
