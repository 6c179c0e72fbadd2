// The wardrobe page: add photos, see them on shelves, move or remove them, teach the model.
// Plain modern JavaScript modules, no build step, no third-party code. Everything a person or
// the server named (file names, labels) goes into the page as text, never as HTML.
//
//   api.js         requests, the token, errors          thumbnails.js  lazy thumbnails
//   shelves.js     shelves, moving and removing         cards.js       one garment's card
//   uploads.js     the upload queue and its rows        intake.js      pickers, paste, drop
//   learning.js    "Teach the model" and the export     history.js     the models it has had
//   dom.js         small shared helpers
//
// This module opens the wardrobe: the shelves, then every item, page by page.

import { API, HttpError, json, nextToken } from "./api.js";
import { $ } from "./dom.js";
import { useClasses } from "./cards.js";
import { loadHistory } from "./history.js";
import { loadLearning } from "./learning.js";
import { buildShelves, isShown, place, recount } from "./shelves.js";
import { useLimits } from "./uploads.js";
import "./intake.js";

const FIRST_PAGE = 120; // items in the first listing request
const LATER_PAGES = 1000;

async function load() {
  try {
    const first = json(`${API}/items?limit=${FIRST_PAGE}`); // asked for together with the shelves
    first.catch(() => {}); // (its error, if any, is seen where it is awaited below)
    const summary = await json(`${API}/shelves`);
    useClasses(summary.classes);
    useLimits(summary.limits);
    buildShelves(summary.shelves);
    const learning = Promise.all([loadLearning(), loadHistory()]);
    // A small first page (the newest, near the top of each shelf) shows, and starts its
    // thumbnails, while the rest is still on its way.
    let page = await first;
    for (;;) {
      // An item shown already was added or moved meanwhile: the listing is older news.
      for (const item of page.items) if (!isShown(item.id)) place(item, { atTop: false });
      recount();
      if (!page.next) break;
      page = await json(page.next.replace(`limit=${FIRST_PAGE}`, `limit=${LATER_PAGES}`));
    }
    await learning; // (their own errors are their own: see loadLearning, loadHistory)
    document.documentElement.dataset.ready = "true";
    performance.mark("wardrobe-ready");
  } catch (error) {
    if (!(error instanceof HttpError)) throw error;
    if (error.status !== 401) {
      $("#summary").textContent = `The wardrobe cannot be opened: ${error.message}`;
      return;
    }
    await nextToken(); // the token form is showing (api.js); open the wardrobe with the new token
    await load();
  }
}

$("#only-corrected").addEventListener("change", (event) => {
  $("#shelves").classList.toggle("only-corrected", event.target.checked);
});

load();
