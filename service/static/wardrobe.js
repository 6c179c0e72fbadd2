// The wardrobe page: add photos, see them on shelves, move or remove them.
// Plain modern JavaScript, no build step, no third-party code. Everything a person
// or the server named (file names, labels) goes into the page as text, never as HTML.

const API = "/wardrobe";
const BATCH_FILES = 16; // photos per upload request
const PARALLEL_UPLOADS = 2; // requests in flight at once
const PARALLEL_THUMBNAILS = 2; // thumbnail requests in flight
const THUMBNAILS_PER_REQUEST = 60;
const FIRST_PAGE = 120; // items in the first listing request
const MAX_SIDE = 1024; // photos are downsized in the browser to this longest side before upload
const SMALL_FILE = 256 * 1024; // smaller files go as they are (e.g. 28×28 crops must stay exact)
const IMAGE_NAME = /\.(jpe?g|png|webp|gif|bmp|tiff?|heic|heif|avif)$/i;
const UNSURE = "unsure";

const $ = (selector, root = document) => root.querySelector(selector);
const state = {
  token: sessionStorage.getItem("wardrobe-token") || "",
  classes: [],
  shelves: new Map(), // shelf name -> {section, list, count}
  cards: new Map(), // item id -> {element, item}
  limits: { max_files: 64, max_request_bytes: 32 * 1024 * 1024 },
  queue: [], // arrivals waiting to be sent
  running: 0,
  arrivals: { total: 0, shelved: 0, failed: 0 },
};

// ---------------------------------------------------------------------------
// Talking to the server

class HttpError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.token) headers.set("Authorization", `Bearer ${state.token}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    throw new HttpError(0, "the server cannot be reached; is it running?");
  }
  if (response.ok) return response;
  let message = `${response.status} ${response.statusText}`;
  try {
    message = (await response.json()).error || message;
  } catch {
    // not JSON: keep the status line
  }
  if (response.status === 401) askForToken(state.token ? "That token was not accepted." : "");
  throw new HttpError(response.status, message, Number(response.headers.get("Retry-After")) || 1);
}

const json = async (path, options) => (await api(path, options)).json();

function say(message) {
  $("#status").textContent = message;
}

// ---------------------------------------------------------------------------
// The token (only when the server asks for one)

let tokenWaiters = [];

function askForToken(problem) {
  $("#token-form").hidden = false;
  $("#token-error").textContent = problem;
  $("#token").focus();
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

$("#token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  state.token = $("#token").value.trim();
  sessionStorage.setItem("wardrobe-token", state.token);
  $("#token-form").hidden = true;
  const waiters = tokenWaiters;
  tokenWaiters = [];
  waiters.forEach((resolve) => resolve());
  if (!state.classes.length) await load();
});

// ---------------------------------------------------------------------------
// Shelves and cards

function buildShelves(shelves) {
  const root = $("#shelves");
  root.replaceChildren();
  state.shelves.clear();
  for (const shelf of shelves) {
    const section = $("#shelf-template").content.firstElementChild.cloneNode(true);
    const id = `shelf-${state.shelves.size}`;
    section.dataset.shelf = shelf.name;
    section.setAttribute("aria-labelledby", id);
    section.querySelector("h2").id = id;
    section.querySelector(".title").textContent = shelf.title;
    if (shelf.name === UNSURE) section.classList.add("unsure");
    const list = section.querySelector(".items");
    list.setAttribute("aria-label", shelf.title);
    state.shelves.set(shelf.name, { section, list, title: shelf.title, count: 0 });
    section.addEventListener("dragover", (event) => {
      if (event.dataTransfer.types.includes("application/x-wardrobe-item")) {
        event.preventDefault();
        section.classList.add("target");
      }
    });
    section.addEventListener("dragleave", () => section.classList.remove("target"));
    section.addEventListener("drop", (event) => {
      const id = event.dataTransfer.getData("application/x-wardrobe-item");
      section.classList.remove("target");
      if (!id) return;
      event.preventDefault();
      event.stopPropagation();
      if (shelf.name !== UNSURE) move(Number(id), shelf.name);
    });
    root.append(section);
  }
}

function shelfTitle(name) {
  return state.shelves.get(name)?.title ?? name;
}

function ensureShelf(name) {
  // A label from an earlier model with other classes still gets a shelf.
  if (!state.shelves.has(name)) {
    const shelves = [...state.shelves.entries()].map(([n, s]) => ({ name: n, title: s.title }));
    const cards = [...state.cards.values()];
    buildShelves([...shelves, { name, title: name }]);
    for (const { element, item } of cards) state.shelves.get(item.shelf).list.append(element);
  }
  return state.shelves.get(name);
}

let moveOptions = null; // the shelves as <option>s, cloned into a card's select when it is used

function optionsFor(item) {
  // Only the placeholder at first: a thousand cards × eleven options would be most of the page.
  const select = document.createElement("select");
  const here = new Option(item.shelf === UNSURE ? "Choose…" : "Move to…", "");
  here.selected = true;
  select.append(here);
  select.dataset.undo = item.label_source === "person" ? item.predicted_label : "";
  return select;
}

function fillMoveOptions(event) {
  const select = event.target.closest?.("select.move");
  if (!select || select.options.length > 1) return;
  if (!moveOptions) {
    moveOptions = document.createDocumentFragment();
    for (const label of state.classes) moveOptions.append(new Option(label, label));
  }
  select.append(moveOptions.cloneNode(true));
  if (select.dataset.undo) select.append(new Option(`Back to the model's choice (${select.dataset.undo})`, "model"));
}

function fillCard(card, item) {
  const percent = Math.round(item.confidence * 100);
  const where = item.shelf === UNSURE ? "not sure" : shelfTitle(item.shelf);
  card.dataset.id = item.id;
  card.dataset.shelf = item.shelf;
  card.classList.toggle("corrected", item.label_source === "person");
  card.querySelector(".thumb").setAttribute("alt", `${item.filename} (${where})`);
  card.querySelector(".name").textContent = item.filename;
  card.querySelector(".name").title = item.filename;
  card.querySelector(".confidence").textContent =
    item.label_source === "person" ? `model: ${item.predicted_label} ${percent}%` : `${item.predicted_label} ${percent}%`;
  card.querySelector(".move-label").textContent = `${item.filename}, now ${where}: move to`;
  card.querySelector(".delete").setAttribute("aria-label", `Remove ${item.filename}`);
  card.querySelector(".move").replaceWith(Object.assign(optionsFor(item), { className: "move" }));
}

function makeCard(item) {
  const card = $("#card-template").content.firstElementChild.cloneNode(true);
  fillCard(card, item);
  card.querySelector(".thumb").dataset.id = item.id;
  thumbnails.observe(card.querySelector(".thumb"));
  card.addEventListener("dragstart", (event) => {
    event.dataTransfer.setData("application/x-wardrobe-item", String(item.id));
    event.dataTransfer.effectAllowed = "move";
    card.classList.add("dragging");
  });
  card.addEventListener("dragend", () => card.classList.remove("dragging"));
  // Before a select opens (mouse, touch) or is used from the keyboard, it gets its options.
  card.addEventListener("pointerdown", fillMoveOptions, true);
  card.addEventListener("focusin", fillMoveOptions);
  card.addEventListener("change", (event) => {
    const value = event.target.value;
    if (value) move(item.id, value === "model" ? null : value);
  });
  card.querySelector(".delete").addEventListener("click", () => remove(item.id));
  return card;
}

function place(item, { atTop = true } = {}) {
  const known = state.cards.get(item.id);
  const card = known ? known.element : makeCard(item);
  if (known) fillCard(card, item);
  state.cards.set(item.id, { element: card, item });
  const list = ensureShelf(item.shelf).list;
  if (atTop) list.prepend(card);
  else list.append(card);
}

function recount() {
  for (const shelf of state.shelves.values()) shelf.count = 0;
  let corrected = 0;
  for (const { item } of state.cards.values()) {
    state.shelves.get(item.shelf).count += 1;
    if (item.label_source === "person") corrected += 1;
  }
  for (const shelf of state.shelves.values()) {
    shelf.section.querySelector(".count").textContent = `(${shelf.count})`;
    shelf.section.classList.toggle("is-empty", shelf.count === 0);
  }
  const total = state.cards.size;
  const unsure = state.shelves.get(UNSURE)?.count ?? 0;
  $("#summary").textContent =
    `${total} garment${total === 1 ? "" : "s"} · ${corrected} corrected · ${unsure} not sure`;
}

async function move(id, label) {
  const { item } = state.cards.get(id);
  try {
    const updated = await json(`${API}/items/${id}`, {
      method: "PATCH",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ label }),
    });
    const hadFocus = state.cards.get(id).element.contains(document.activeElement);
    place(updated);
    recount();
    if (hadFocus) state.cards.get(id).element.querySelector(".move").focus();
    say(label === null ? `${updated.filename} is back on ${shelfTitle(updated.shelf)}.` : `Moved ${updated.filename} to ${shelfTitle(updated.shelf)}.`);
  } catch (error) {
    place(item); // the select shows where it really is
    say(`Could not move ${item.filename}: ${error.message}`);
  }
}

async function remove(id) {
  const { element, item } = state.cards.get(id);
  try {
    await api(`${API}/items/${id}`, { method: "DELETE" });
  } catch (error) {
    if (error.status !== 404) return say(`Could not remove ${item.filename}: ${error.message}`);
  }
  const next = element.nextElementSibling || element.previousElementSibling;
  thumbnails.forget(element.querySelector(".thumb"));
  element.remove();
  state.cards.delete(id);
  recount();
  say(`Removed ${item.filename}.`);
  (next?.querySelector(".move") || $("#shelves")).focus();
}

// Thumbnails load when they scroll into view: those in view at once come in one request
// (GET /wardrobe/thumbnails?ids=...), a couple of requests at a time.
const thumbnails = (() => {
  const waiting = new Map(); // item id -> <img>
  let loading = 0; // images asked for and not answered yet
  let requests = 0;
  let scheduled = false;
  const pending = () => {
    document.documentElement.dataset.thumbnailsPending = String(waiting.size + loading);
  };
  const pump = () => {
    scheduled = false;
    while (requests < PARALLEL_THUMBNAILS && waiting.size) {
      const batch = [...waiting.entries()].slice(0, THUMBNAILS_PER_REQUEST);
      for (const [id] of batch) waiting.delete(id);
      loading += batch.length;
      requests += 1;
      json(`${API}/thumbnails?ids=${batch.map(([id]) => id).join(",")}`)
        .then((answer) =>
          Promise.all(
            batch.map(([id, img]) => {
              const url = answer.thumbnails[id];
              if (!url) return img.classList.add("failed");
              img.src = url;
              return img.decode().then(() => img.classList.add("loaded"), () => img.classList.add("failed"));
            }),
          ),
        )
        .catch(() => batch.forEach(([, img]) => img.classList.add("failed")))
        .finally(() => {
          loading -= batch.length;
          requests -= 1;
          pending();
          pump();
        });
    }
    pending();
  };
  const observer = new IntersectionObserver(
    (entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        observer.unobserve(entry.target);
        waiting.set(entry.target.dataset.id, entry.target);
      }
      pending();
      if (!scheduled) {
        scheduled = true;
        setTimeout(pump, 0); // gather everything that came into view together
      }
    },
    { rootMargin: "300px" },
  );
  return {
    observe: (img) => observer.observe(img),
    forget: (img) => {
      observer.unobserve(img);
      waiting.delete(img.dataset.id);
    },
  };
})();

// ---------------------------------------------------------------------------
// Loading the wardrobe

async function load() {
  try {
    const first = json(`${API}/items?limit=${FIRST_PAGE}`); // asked for together with the shelves
    first.catch(() => {}); // (its error, if any, is seen where it is awaited below)
    const summary = await json(`${API}/shelves`);
    const learning = loadLearning();
    state.classes = summary.classes;
    state.limits = summary.limits;
    buildShelves(summary.shelves);
    // A small first page (the newest, near the top of each shelf) shows, and starts its
    // thumbnails, while the rest is still on its way.
    let page = await first;
    for (;;) {
      for (const item of page.items) place(item, { atTop: false });
      recount();
      if (!page.next) break;
      page = await json(page.next.replace(`limit=${FIRST_PAGE}`, "limit=1000"));
    }
    await learning; // (its own errors are its own: see loadLearning)
    document.documentElement.dataset.ready = "true";
    performance.mark("wardrobe-ready");
  } catch (error) {
    if (error.status === 401) return; // the token form is showing; submitting it loads again
    $("#summary").textContent = `The wardrobe cannot be opened: ${error.message}`;
  }
}

// ---------------------------------------------------------------------------
// Teaching the model: corrections waiting for a fine-tune, and an audit of confident items

async function loadLearning() {
  let learning;
  try {
    learning = await json(`${API}/learning`);
  } catch (error) {
    return; // an older server without /wardrobe/learning: the rest of the page works
  }
  const n = learning.waiting;
  $("#learning-waiting").textContent =
    `${n} correction${n === 1 ? "" : "s"} waiting to teach the model (${learning.corrected} in all; ` +
    `serving model ${learning.model_sha256.slice(0, 12)}).`;
  $("#learning-waiting").dataset.waiting = String(n);
  $("#learning-commands").textContent = learning.commands.join("\n");
  const list = $("#audit");
  list.replaceChildren();
  list.onfocusin = fillMoveOptions; // the selects get their options on first use, as on the cards
  list.onpointerdown = fillMoveOptions;
  for (const item of learning.audit) {
    const li = document.createElement("li");
    li.dataset.id = item.id;
    const img = Object.assign(document.createElement("img"), { alt: item.filename, width: 96, height: 96 });
    img.className = "thumb";
    img.dataset.id = item.id;
    const text = Object.assign(document.createElement("p"), { textContent: `${item.predicted_label}?` });
    const yes = Object.assign(document.createElement("button"), { type: "button", textContent: "Right" });
    yes.setAttribute("aria-label", `${item.filename} is a ${item.predicted_label}: right`);
    const fix = optionsFor({ ...item, shelf: UNSURE, label_source: "model" });
    fix.className = "move";
    fix.setAttribute("aria-label", `${item.filename}: the right shelf`);
    yes.addEventListener("click", () => audited(li, item.id, item.predicted_label));
    fix.addEventListener("change", () => fix.value && audited(li, item.id, fix.value));
    li.append(img, text, yes, fix);
    list.append(li);
    thumbnails.observe(img);
  }
  $("#audit-box").hidden = learning.audit.length === 0;
  $("#learning").hidden = false;
}

async function audited(li, id, label) {
  await move(id, label); // confirming is labelling: the item becomes the person's
  li.remove();
  if (!$("#audit").children.length) $("#audit-box").hidden = true;
}

$("#only-corrected").addEventListener("change", (event) => {
  $("#shelves").classList.toggle("only-corrected", event.target.checked);
});

$("#export").addEventListener("click", async (event) => {
  event.preventDefault();
  try {
    const response = await api(`${API}/export`);
    const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "")?.[1];
    const link = Object.assign(document.createElement("a"), {
      href: URL.createObjectURL(await response.blob()),
      download: name || "wardrobe-export.zip",
    });
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  } catch (error) {
    say(`Export failed: ${error.message}`);
  }
});

// ---------------------------------------------------------------------------
// Adding photos: each file gets a row showing its state; uploads go in batches.

const STATES = {
  waiting: "waiting",
  classifying: "classifying…",
  shelved: "on a shelf",
  error: "error",
  skipped: "skipped",
};

function setState(arrival, name, detail = "") {
  arrival.state = name;
  arrival.row.dataset.state = name;
  arrival.row.querySelector(".state").textContent = STATES[name];
  arrival.row.querySelector(".detail").textContent = detail;
  if (name === "shelved") state.arrivals.shelved += 1;
  if (name === "error" || name === "skipped") state.arrivals.failed += 1;
  showProgress();
}

function showProgress() {
  const { total, shelved, failed } = state.arrivals;
  $("#progress").hidden = total === 0;
  $("#progress-bar").max = Math.max(total, 1);
  $("#progress-bar").value = shelved + failed;
  const problems = failed ? ` · ${failed} not added` : "";
  $("#progress-text").textContent = `${shelved} of ${total} on a shelf${problems}`;
}

function addFiles(files) {
  const fresh = [];
  for (const file of files) {
    const row = document.createElement("li");
    const name = document.createElement("span");
    name.className = "file";
    name.textContent = file.name || "pasted image";
    const status = document.createElement("span");
    status.className = "state";
    const detail = document.createElement("span");
    detail.className = "detail";
    row.append(name, status, detail);
    $("#arrivals").append(row);
    const arrival = { file, row, attempts: 0 };
    state.arrivals.total += 1;
    if (!(file.type.startsWith("image/") || IMAGE_NAME.test(file.name))) {
      setState(arrival, "skipped", "not an image file");
      continue;
    }
    setState(arrival, "waiting");
    fresh.push(arrival);
  }
  state.queue.push(...fresh.map((arrival) => [arrival]));
  pumpUploads();
}

function nextBatch() {
  // Whole batches in the queue are single arrivals re-sent alone after their batch failed;
  // the rest are merged into batches of up to BATCH_FILES.
  const first = state.queue.shift();
  if (first.length > 1 || first[0].alone) return first;
  const batch = first;
  let bytes = first[0].file.size;
  const limit = Math.min(BATCH_FILES, state.limits.max_files);
  while (batch.length < limit && state.queue.length && !state.queue[0][0].alone) {
    const size = state.queue[0][0].file.size;
    if (bytes + size > state.limits.max_request_bytes * 0.9) break;
    bytes += size;
    batch.push(state.queue.shift()[0]);
  }
  return batch;
}

function pumpUploads() {
  while (state.running < PARALLEL_UPLOADS && state.queue.length) {
    const batch = nextBatch();
    state.running += 1;
    upload(batch).finally(() => {
      state.running -= 1;
      pumpUploads();
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
      await askForToken("");
      state.queue.unshift(batch);
    } else if (error.status >= 400 && error.status < 500 && batch.length > 1) {
      // One bad file refuses its whole request: send each alone, so only that one fails.
      for (const arrival of batch) {
        arrival.alone = true;
        setState(arrival, "waiting");
      }
      state.queue.unshift(...batch.map((arrival) => [arrival]));
    } else if ((error.status === 0 || error.status >= 500) && batch[0].attempts < 3) {
      for (const arrival of batch) {
        arrival.attempts += 1;
        setState(arrival, "waiting", "server busy, trying again");
      }
      await new Promise((resolve) => setTimeout(resolve, 1000 * (error.retryAfter || 1)));
      state.queue.unshift(batch);
    } else {
      for (const arrival of batch) setState(arrival, "error", error.message);
    }
  }
}

$("#clear-arrivals").addEventListener("click", () => {
  for (const row of [...$("#arrivals").children]) {
    if (row.dataset.state === "shelved" || row.dataset.state === "skipped") row.remove();
  }
  const rows = [...$("#arrivals").children];
  state.arrivals = { total: rows.length, shelved: 0, failed: rows.filter((r) => r.dataset.state === "error").length };
  showProgress();
});

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

// Dropped folders are walked; dropped files are taken as they are.
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

load();
