// Where photos come from: the pickers (files, a folder, the camera), a paste, or a drop of
// files or whole folders anywhere on the page. Everything ends in addFiles (uploads.js).

import { $ } from "./dom.js";
import { addFiles } from "./uploads.js";

for (const id of ["#pick-files", "#pick-folder", "#pick-camera"]) {
  $(id).addEventListener("change", (event) => {
    addFiles([...event.target.files]);
    event.target.value = ""; // the same files can be chosen again
  });
}

document.addEventListener("paste", (event) => {
  const files = [...(event.clipboardData?.files || [])];
  if (files.length) {
    event.preventDefault();
    addFiles(files);
  }
});

// A dropped folder is walked to its files, subfolders included.
async function filesFromEntry(entry) {
  if (entry.isFile) return [await new Promise((resolve, reject) => entry.file(resolve, reject))];
  if (!entry.isDirectory) return [];
  const reader = entry.createReader();
  const files = [];
  for (;;) {
    const entries = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!entries.length) return files;
    for (const child of entries) files.push(...(await filesFromEntry(child)));
  }
}

document.addEventListener("dragover", (event) => {
  if (event.dataTransfer.types.includes("Files")) {
    event.preventDefault();
    document.body.classList.add("dropping");
  }
});
document.addEventListener("dragleave", (event) => {
  if (!event.relatedTarget) document.body.classList.remove("dropping");
});
document.addEventListener("drop", async (event) => {
  document.body.classList.remove("dropping");
  if (!event.dataTransfer.types.includes("Files")) return;
  event.preventDefault();
  const entries = [...event.dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.length) return addFiles([...event.dataTransfer.files]);
  const files = [];
  for (const entry of entries) files.push(...(await filesFromEntry(entry)));
  addFiles(files);
});
