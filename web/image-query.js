// Getting a query image: the file picker, drag and drop anywhere on the page, and paste. The image is
// shrunk in the browser (the model sees a few hundred pixels) before it is handed to ``onImage``.

import { t } from "./i18n.js";

const IMAGE_MAX_SIDE = 640;
const MAX_BYTES = 20 * 1024 * 1024;

export function wireImageInput({ input, overlay, onImage, onError }) {
  async function use(file) {
    if (!file.type.startsWith("image/")) { onError(t("image.notImage")); return; }
    if (file.size > MAX_BYTES) { onError(t("image.tooLarge")); return; }
    let dataUrl;
    try {
      dataUrl = await shrink(file);
    } catch (_err) {
      onError(t("image.unreadable"));
      return;
    }
    const name = file.name || t("image.pasted");
    onImage({ b64: dataUrl.split(",")[1], dataUrl, name, key: `${file.name}:${file.size}:${Date.now()}` });
  }

  input.addEventListener("change", () => {
    const file = input.files && input.files[0];
    if (file) use(file);
    input.value = "";
  });
  let dragDepth = 0;
  const hasFile = (e) => e.dataTransfer && [...e.dataTransfer.types].includes("Files");
  window.addEventListener("dragenter", (e) => { if (hasFile(e)) { dragDepth++; overlay.hidden = false; } });
  window.addEventListener("dragleave", () => { dragDepth = Math.max(0, dragDepth - 1); if (!dragDepth) overlay.hidden = true; });
  window.addEventListener("dragover", (e) => { if (hasFile(e)) e.preventDefault(); });
  window.addEventListener("drop", (e) => {
    dragDepth = 0;
    overlay.hidden = true;
    const file = e.dataTransfer && [...e.dataTransfer.files].find((f) => f.type.startsWith("image/"));
    if (!file) return;
    e.preventDefault();
    use(file);
  });
  window.addEventListener("paste", (e) => {
    const file = e.clipboardData && [...e.clipboardData.files].find((f) => f.type.startsWith("image/"));
    if (file) { e.preventDefault(); use(file); }
  });
}

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
