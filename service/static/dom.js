// Small helpers every part of the page uses: finding an element, and the status line.

export const $ = (selector, root = document) => root.querySelector(selector);

/** Tell the person what just happened (the status line is a polite live region). */
export function say(message) {
  $("#status").textContent = message;
}

/** "1 garment", "3 garments". */
export const count = (n, noun) => `${n} ${noun}${n === 1 ? "" : "s"}`;
