// The shelves: one per class and "Not sure", each with its cards and count. This module owns
// which card is on which shelf; moving and removing a garment go through the server here.

import { API, UNSURE, api, json, sending } from "./api.js";
import { $, count, say } from "./dom.js";
import { dropCard, fillCard, makeCard } from "./cards.js";

const ITEM_TYPE = "application/x-wardrobe-item"; // what a dragged card carries

const shelves = new Map(); // shelf name -> {section, list, title, count}
const cards = new Map(); // item id -> {element, item}

/** Build the shelves (each {name, title}) from scratch, empty. */
export function buildShelves(list) {
  const root = $("#shelves");
  root.replaceChildren();
  shelves.clear();
  for (const shelf of list) {
    const section = $("#shelf-template").content.firstElementChild.cloneNode(true);
    const id = `shelf-${shelves.size}`;
    section.dataset.shelf = shelf.name;
    section.setAttribute("aria-labelledby", id);
    section.querySelector("h2").id = id;
    section.querySelector(".title").textContent = shelf.title;
    if (shelf.name === UNSURE) section.classList.add("unsure");
    const items = section.querySelector(".items");
    items.setAttribute("aria-label", shelf.title);
    shelves.set(shelf.name, { section, list: items, title: shelf.title, count: 0 });
    section.addEventListener("dragover", (event) => {
      if (event.dataTransfer.types.includes(ITEM_TYPE)) {
        event.preventDefault();
        section.classList.add("target");
      }
    });
    section.addEventListener("dragleave", () => section.classList.remove("target"));
    section.addEventListener("drop", (event) => {
      const dragged = event.dataTransfer.getData(ITEM_TYPE);
      section.classList.remove("target");
      if (!dragged) return;
      event.preventDefault();
      event.stopPropagation();
      if (shelf.name !== UNSURE) move(Number(dragged), shelf.name);
    });
    root.append(section);
  }
}

export function shelfTitle(name) {
  return shelves.get(name)?.title ?? name;
}

function ensureShelf(name) {
  // A label from an earlier model with other classes still gets a shelf.
  if (!shelves.has(name)) {
    const known = [...shelves.entries()].map(([n, s]) => ({ name: n, title: s.title }));
    buildShelves([...known, { name, title: name }]);
    for (const { element, item } of cards.values()) shelves.get(item.shelf).list.append(element);
  }
  return shelves.get(name);
}

/** Whether the page shows this item already. */
export const isShown = (id) => cards.has(id);

/** Put `item` (as the server answered it) on its shelf, on a new card or the one it has. */
export function place(item, { atTop = true } = {}) {
  const known = cards.get(item.id);
  const where = item.shelf === UNSURE ? "not sure" : shelfTitle(item.shelf);
  const card = known
    ? known.element
    : makeCard(item, where, { onMove: (label) => move(item.id, label), onRemove: () => remove(item.id) });
  if (known) fillCard(card, item, where);
  cards.set(item.id, { element: card, item });
  const list = ensureShelf(item.shelf).list;
  if (atTop) list.prepend(card);
  else list.append(card);
}

/** Update every shelf's count and the summary in the header. */
export function recount() {
  for (const shelf of shelves.values()) shelf.count = 0;
  let corrected = 0;
  for (const { item } of cards.values()) {
    shelves.get(item.shelf).count += 1;
    if (item.label_source === "person") corrected += 1;
  }
  for (const shelf of shelves.values()) {
    shelf.section.querySelector(".count").textContent = `(${shelf.count})`;
    shelf.section.classList.toggle("is-empty", shelf.count === 0);
  }
  const unsure = shelves.get(UNSURE)?.count ?? 0;
  $("#summary").textContent = `${count(cards.size, "garment")} · ${corrected} corrected · ${unsure} not sure`;
}

/** Give item `id` the person's `label` (null: back to the model's). True when the server took it.
 * `item` names it when the page has no card for it yet (an audit answered while loading). */
export async function move(id, label, item = cards.get(id)?.item) {
  const name = item?.filename ?? `item ${id}`;
  let updated;
  try {
    updated = await json(`${API}/items/${id}`, sending("PATCH", { label }));
  } catch (error) {
    if (cards.has(id)) place(cards.get(id).item); // its select shows where it really is
    say(`Could not move ${name}: ${error.message}`);
    return false;
  }
  const hadFocus = cards.get(id)?.element.contains(document.activeElement);
  place(updated);
  recount();
  if (hadFocus) cards.get(id).element.querySelector(".move").focus();
  const where = shelfTitle(updated.shelf);
  say(label === null ? `${updated.filename} is back on ${where}.` : `Moved ${updated.filename} to ${where}.`);
  return true;
}

async function remove(id) {
  const { element, item } = cards.get(id);
  try {
    await api(`${API}/items/${id}`, { method: "DELETE" });
  } catch (error) {
    if (error.status !== 404) return say(`Could not remove ${item.filename}: ${error.message}`);
  }
  const next = element.nextElementSibling || element.previousElementSibling;
  dropCard(element);
  element.remove();
  cards.delete(id);
  recount();
  say(`Removed ${item.filename}.`);
  (next?.querySelector(".move") || $("#shelves")).focus();
}
