// A garment's card: its thumbnail, name and the model's answer, a select to move it, a button
// to remove it, and a toggle that shows the 28×28 image the model saw beside the thumbnail.
// What moving and removing do is the caller's (shelves.js): a card only reports the wish.

import { API, UNSURE, api } from "./api.js";
import { $, say } from "./dom.js";
import * as thumbnails from "./thumbnails.js";

let classes = [];
let moveOptions = null; // the shelves as <option>s, cloned into a select when it is first used

/** The model's class names, in order: the choices of every move select. */
export function useClasses(names) {
  classes = names;
  moveOptions = null;
}

/** A select to move `item`: only its placeholder at first (a thousand cards × eleven options
 * would be most of the page); fillMoveOptions adds the rest on first use. */
export function moveSelect(item) {
  const select = document.createElement("select");
  select.className = "move";
  const here = new Option(item.shelf === UNSURE ? "Choose…" : "Move to…", "");
  here.selected = true;
  select.append(here);
  select.dataset.undo = item.label_source === "person" ? item.predicted_label : "";
  select.setAttribute("aria-describedby", "move-hint");
  return select;
}

// Keys that change a closed select's value in Chromium, one `change` each: browsing, not choosing.
const BROWSING_KEYS = new Set(["ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight", "Home", "End", "PageUp", "PageDown"]);

/** Hear the choices made in the move selects inside `root`: onChoice(select, value). A pick in the
 * open list (mouse, touch, or the keyboard: Alt+↓ or Space, arrows, Enter) counts at once. Arrow
 * keys on the closed select only browse (each would otherwise move the garment, and the select,
 * put back to "Move to…", could never get past the first shelf): Enter then moves it, Escape or
 * leaving the select keeps it where it is. */
export function listenForChoices(root, onChoice, describe = () => "it") {
  const target = (event) => event.target.closest?.("select.move");
  const putBack = (select) => {
    delete select.dataset.pending;
    select.value = "";
  };
  const choose = (select) => {
    delete select.dataset.pending;
    onChoice(select, select.value);
  };
  root.addEventListener("keydown", (event) => {
    const select = target(event);
    if (!select) return;
    if (event.key === "Enter" && select.dataset.pending && select.value) {
      event.preventDefault();
      choose(select);
    } else if (event.key === "Escape" && select.dataset.pending) {
      event.preventDefault();
      putBack(select);
      say(`${describe(select)} stays where it is.`);
    } else {
      const typed = event.key.length === 1 && event.key !== " " && !event.altKey && !event.ctrlKey && !event.metaKey;
      select.dataset.browsing = BROWSING_KEYS.has(event.key) && !event.altKey || typed ? "true" : "";
    }
  });
  root.addEventListener(
    "pointerdown",
    (event) => {
      const select = target(event);
      if (select) select.dataset.browsing = "";
    },
    true,
  );
  root.addEventListener("change", (event) => {
    const select = target(event);
    if (!select?.value) return;
    if (!select.dataset.browsing) return choose(select);
    select.dataset.pending = "true";
    const shelf = select.selectedOptions[0].textContent;
    say(`Press Enter to move ${describe(select)} to ${shelf}, Escape to keep it where it is.`);
  });
  root.addEventListener("focusout", (event) => {
    const select = target(event);
    if (select?.dataset.pending) putBack(select);
  });
}

/** Before a select opens (mouse, touch) or is used from the keyboard, it gets its options. */
export function fillMoveOptions(event) {
  const select = event.target.closest?.("select.move");
  if (!select || select.options.length > 1) return;
  if (!moveOptions) {
    moveOptions = document.createDocumentFragment();
    for (const label of classes) moveOptions.append(new Option(label, label));
  }
  select.append(moveOptions.cloneNode(true));
  if (select.dataset.undo) select.append(new Option(`Back to the model's choice (${select.dataset.undo})`, "model"));
}

/** Show `item` on `card`; `where` is the title of its shelf. */
export function fillCard(card, item, where) {
  const percent = Math.round(item.confidence * 100);
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
  // The accessible name starts with the visible text (WCAG 2.5.3: a person saying "click 28×28" is understood).
  card.querySelector(".saw").setAttribute("aria-label", `28×28 input the model saw: ${item.filename}`);
  card.querySelector(".move").replaceWith(moveSelect(item));
}

/** A new card for `item`; onMove(label or null) and onRemove() carry out what the person asks. */
export function makeCard(item, where, { onMove, onRemove }) {
  const card = $("#card-template").content.firstElementChild.cloneNode(true);
  fillCard(card, item, where);
  card.querySelector(".thumb").dataset.id = item.id;
  thumbnails.observe(card.querySelector(".thumb"));
  card.addEventListener("dragstart", (event) => {
    event.dataTransfer.setData("application/x-wardrobe-item", String(item.id));
    event.dataTransfer.effectAllowed = "move";
    card.classList.add("dragging");
  });
  card.addEventListener("dragend", () => card.classList.remove("dragging"));
  card.addEventListener("pointerdown", fillMoveOptions, true);
  card.addEventListener("focusin", fillMoveOptions);
  listenForChoices(card, (select, value) => onMove(value === "model" ? null : value), () => item.filename);
  card.querySelector(".delete").addEventListener("click", onRemove);
  card.querySelector(".saw").addEventListener("click", () => toggleModelInput(card));
  return card;
}

/** Forget the card's images (it is leaving the page). */
export function dropCard(card) {
  thumbnails.forget(card.querySelector(".thumb"));
  const input = card.querySelector(".input");
  if (input.src) URL.revokeObjectURL(input.src);
}

// The model input is asked for with the token (an <img src> could not carry it), shown as a
// blob: URL while the toggle is on, and let go when it is turned off.
async function toggleModelInput(card) {
  const button = card.querySelector(".saw");
  const input = card.querySelector(".input");
  const name = card.querySelector(".name").textContent;
  if (button.getAttribute("aria-pressed") === "true") {
    button.setAttribute("aria-pressed", "false");
    card.classList.remove("showing-input");
    URL.revokeObjectURL(input.src);
    input.removeAttribute("src");
    return;
  }
  button.setAttribute("aria-pressed", "true");
  try {
    const blob = await (await api(`${API}/items/${card.dataset.id}/input.png`)).blob();
    if (button.getAttribute("aria-pressed") !== "true") return; // turned off while it loaded
    input.src = URL.createObjectURL(blob);
    input.alt = `${name} as the model saw it: 28×28 pixels`;
    await input.decode();
    card.classList.add("showing-input");
  } catch (error) {
    button.setAttribute("aria-pressed", "false");
    say(`Could not show what the model saw for ${name}: ${error.message}`);
  }
}
