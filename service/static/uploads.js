// The upload queue: each file gets a row showing its state; files go to the server in batches,
// a couple of requests at a time. A refused batch is re-sent file by file (so one bad file
// fails alone), a busy server (503) or a lost connection is tried again after its Retry-After.

import { API, UNSURE, json, nextToken } from "./api.js";
import { $, count, say } from "./dom.js";
import { place, recount, shelfTitle } from "./shelves.js";

const BATCH_FILES = 16; // photos per upload request
const PARALLEL_UPLOADS = 2; // requests in flight at once
const ATTEMPTS = 3; // tries after the first when the server is busy or cannot be reached
const MAX_SIDE = 1024; // photos are downsized in the browser to this longest side before upload
const SMALL_FILE = 256 * 1024; // smaller files go as they are (e.g. 28×28 crops must stay exact)
const IMAGE_NAME = /\.(jpe?g|png|webp|gif|bmp|tiff?|heic|heif|avif)$/i;
const STATES = {
  waiting: "waiting",
  classifying: "classifying…",
  shelved: "on a shelf",
  error: "error",
  skipped: "skipped",
};

let limits = { max_files: 64, max_request_bytes: 32 * 1024 * 1024 };
const queue = []; // batches waiting to be sent; a batch is a list of arrivals
let running = 0;
let tally = { total: 0, shelved: 0, failed: 0 };

/** The server's upload limits (GET /wardrobe/shelves), so no batch is refused for its size. */
export function useLimits(serverLimits) {
  limits = serverLimits;
}

function setState(arrival, name, detail = "") {
  arrival.row.dataset.state = name;
  arrival.row.querySelector(".state").textContent = STATES[name];
  arrival.row.querySelector(".detail").textContent = detail;
  if (name === "shelved") tally.shelved += 1;
  if (name === "error" || name === "skipped") tally.failed += 1;
  showProgress();
}

function showProgress() {
  const { total, shelved, failed } = tally;
  $("#progress").hidden = total === 0;
  $("#progress-bar").max = Math.max(total, 1);
  $("#progress-bar").value = shelved + failed;
  const problems = failed ? ` · ${failed} not added` : "";
  $("#progress-text").textContent = `${shelved} of ${total} on a shelf${problems}`;
}

function row(file) {
  const item = document.createElement("li");
  for (const [className, text] of [["file", file.name || "pasted image"], ["state", ""], ["detail", ""]]) {
    item.append(Object.assign(document.createElement("span"), { className, textContent: text }));
  }
  return $("#arrivals").appendChild(item);
}

/** Add these files to the wardrobe: each image is queued, anything else is skipped. */
export function addFiles(files) {
  for (const file of files) {
    const arrival = { file, row: row(file), attempts: 0, alone: false };
    tally.total += 1;
    if (!(file.type.startsWith("image/") || IMAGE_NAME.test(file.name))) {
      setState(arrival, "skipped", "not an image file");
      continue;
    }
    setState(arrival, "waiting");
    queue.push([arrival]);
  }
  pump();
}

function nextBatch() {
  // Batches of more than one are re-sent whole (after a 503); arrivals marked `alone` go by
  // themselves (their batch was refused); the rest are merged up to the server's limits.
  const batch = queue.shift();
  if (batch.length > 1 || batch[0].alone) return batch;
  let bytes = batch[0].file.size;
  const most = Math.min(BATCH_FILES, limits.max_files);
  while (batch.length < most && queue.length && !queue[0][0].alone) {
    const size = queue[0][0].file.size;
    if (bytes + size > limits.max_request_bytes * 0.9) break;
    bytes += size;
    batch.push(queue.shift()[0]);
  }
  return batch;
}

function pump() {
  while (running < PARALLEL_UPLOADS && queue.length) {
    running += 1;
    upload(nextBatch()).finally(() => {
      running -= 1;
      pump();
    });
  }
}

// A photo larger than the server needs is downsized here (longest side MAX_SIDE, upright,
// JPEG); a small file, or one the browser cannot decode (e.g. HEIC), goes as it is.
async function prepare(file) {
  if (file.size <= SMALL_FILE || typeof createImageBitmap !== "function") return file;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    return file;
  }
  try {
    const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    const context = canvas.getContext("2d");
    context.fillStyle = "#fff"; // transparent areas become white, as the server would flatten them
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.imageSmoothingQuality = "high";
    context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
    return blob && blob.size < file.size ? blob : file;
  } finally {
    bitmap.close();
  }
}

async function upload(batch) {
  for (const arrival of batch) setState(arrival, "classifying");
  try {
    const form = new FormData();
    for (const arrival of batch) form.append("images", await prepare(arrival.file), arrival.file.name || "pasted.png");
    const items = await json(`${API}/items`, { method: "POST", body: form });
    items.forEach((item, i) => {
      place(item);
      const where = item.shelf === UNSURE ? "Not sure" : shelfTitle(item.shelf);
      setState(batch[i], "shelved", `${where} · ${Math.round(item.confidence * 100)}%`);
    });
    recount();
  } catch (error) {
    if (error.status === 401) {
      for (const arrival of batch) setState(arrival, "waiting");
      await nextToken();
      queue.unshift(batch);
    } else if (error.status >= 400 && error.status < 500 && batch.length > 1) {
      for (const arrival of batch) {
        arrival.alone = true;
        setState(arrival, "waiting");
      }
      queue.unshift(...batch.map((arrival) => [arrival]));
    } else if ((error.status === 0 || error.status >= 500) && batch[0].attempts < ATTEMPTS) {
      for (const arrival of batch) {
        arrival.attempts += 1;
        setState(arrival, "waiting", "server busy, trying again");
      }
      const wait = error.retryAfter || 1;
      say(`The server is busy: ${count(batch.length, "photo")} will be sent again in ${count(wait, "second")}.`);
      await new Promise((resolve) => setTimeout(resolve, 1000 * wait));
      queue.unshift(batch);
    } else {
      for (const arrival of batch) setState(arrival, "error", error.message);
    }
  }
}

$("#clear-arrivals").addEventListener("click", () => {
  for (const done of [...$("#arrivals").children]) {
    if (done.dataset.state === "shelved" || done.dataset.state === "skipped") done.remove();
  }
  const rows = [...$("#arrivals").children];
  tally = { total: rows.length, shelved: 0, failed: rows.filter((r) => r.dataset.state === "error").length };
  showProgress();
});
