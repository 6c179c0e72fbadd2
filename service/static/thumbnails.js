// Thumbnails load when they scroll into view: all those that came into view together in one
// request (GET /wardrobe/thumbnails?ids=...), a couple of requests at a time. The count of
// thumbnails still to come is on <html data-thumbnails-pending> for tests and the benchmark.

import { API, json } from "./api.js";

const PARALLEL_REQUESTS = 2;
const PER_REQUEST = 60;

const waiting = new Map(); // item id -> <img>
let loading = 0; // images asked for and not answered yet
let requests = 0;
let scheduled = false;

function showPending() {
  document.documentElement.dataset.thumbnailsPending = String(waiting.size + loading);
}

async function fetchBatch(batch) {
  try {
    const answer = await json(`${API}/thumbnails?ids=${batch.map(([id]) => id).join(",")}`);
    await Promise.all(
      batch.map(([id, img]) => {
        const url = answer.thumbnails[id];
        if (!url) return img.classList.add("failed");
        img.src = url;
        return img.decode().then(
          () => img.classList.add("loaded"),
          () => img.classList.add("failed"),
        );
      }),
    );
  } catch {
    batch.forEach(([, img]) => img.classList.add("failed"));
  } finally {
    loading -= batch.length;
    requests -= 1;
    pump();
  }
}

function pump() {
  scheduled = false;
  while (requests < PARALLEL_REQUESTS && waiting.size) {
    const batch = [...waiting.entries()].slice(0, PER_REQUEST);
    for (const [id] of batch) waiting.delete(id);
    loading += batch.length;
    requests += 1;
    fetchBatch(batch);
  }
  showPending();
}

const observer = new IntersectionObserver(
  (entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      observer.unobserve(entry.target);
      waiting.set(entry.target.dataset.id, entry.target);
    }
    showPending();
    if (!scheduled) {
      scheduled = true;
      setTimeout(pump, 0); // gather everything that came into view together
    }
  },
  { rootMargin: "300px" },
);

/** Load this <img data-id=…> when it comes near the screen. */
export function observe(img) {
  observer.observe(img);
}

/** The <img> is leaving the page: do not load it. */
export function forget(img) {
  observer.unobserve(img);
  waiting.delete(img.dataset.id);
}
