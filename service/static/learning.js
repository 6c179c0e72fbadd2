// Teaching the model: how many corrections wait for a fine-tune, the commands that run it, an
// audit of items the model was confident about (confirm or fix them), and the export button.

import { API, UNSURE, api, json } from "./api.js";
import { $, count, say } from "./dom.js";
import { fillMoveOptions, listenForChoices, moveSelect } from "./cards.js";
import { move } from "./shelves.js";
import * as thumbnails from "./thumbnails.js";

/** Fill the panel from GET /wardrobe/learning; an older server without it leaves the panel hidden. */
export async function loadLearning() {
  let learning;
  try {
    learning = await json(`${API}/learning`);
  } catch {
    return; // the rest of the page works without it
  }
  const n = learning.waiting;
  // Which model serves and the Fashion-MNIST test accuracy it records; a warning when it is much
  // worse than the shipped model's (service/model_standing.py).
  const accuracy = learning.model_test_accuracy == null
    ? "no recorded test accuracy"
    : `Fashion-MNIST test accuracy ${(learning.model_test_accuracy * 100).toFixed(1)}%`;
  $("#learning-waiting").textContent =
    `${count(n, "correction")} waiting to teach the model (${learning.corrected} in all; ` +
    `serving model ${learning.model_sha256.slice(0, 12)}, ${accuracy}).` +
    (learning.warning ? ` Warning: ${learning.warning}.` : "");
  $("#learning-waiting").dataset.waiting = String(n);
  $("#learning-commands").textContent = learning.commands.join("\n");
  $("#audit").replaceChildren(...learning.audit.map(auditRow));
  $("#audit-box").hidden = learning.audit.length === 0;
  $("#learning").hidden = false;
}

const auditItems = new WeakMap(); // audit row -> its item

function auditRow(item) {
  const row = document.createElement("li");
  auditItems.set(row, item);
  row.dataset.id = item.id;
  const img = Object.assign(document.createElement("img"), { alt: item.filename, width: 96, height: 96 });
  img.className = "thumb";
  img.dataset.id = item.id;
  const question = Object.assign(document.createElement("p"), { textContent: `${item.predicted_label}?` });
  const right = Object.assign(document.createElement("button"), { type: "button", textContent: "Right" });
  right.setAttribute("aria-label", `${item.filename} is a ${item.predicted_label}: right`);
  const fix = moveSelect({ ...item, shelf: UNSURE, label_source: "model" });
  fix.setAttribute("aria-label", `${item.filename}: the right shelf`);
  right.addEventListener("click", () => audited(row, item, item.predicted_label));
  row.append(img, question, right, fix);
  thumbnails.observe(img);
  return row;
}

// Confirming is labelling: the item becomes the person's. The row goes only once the server
// has taken the label; after a failure it stays, to be answered again.
async function audited(row, item, label) {
  const focused = document.activeElement;
  const hadFocus = row.contains(focused); // disabling the focused control would drop its focus
  const controls = row.querySelectorAll("button, select");
  controls.forEach((control) => (control.disabled = true));
  const moved = await move(item.id, label, item);
  controls.forEach((control) => (control.disabled = false));
  if (!moved) {
    row.querySelector("select").value = "";
    if (hadFocus) focused.focus();
    return;
  }
  // Focus goes on to the next question (it would be lost with the row).
  const next = row.nextElementSibling || row.previousElementSibling;
  thumbnails.forget(row.querySelector("img"));
  row.remove();
  if (!$("#audit").children.length) $("#audit-box").hidden = true;
  if (hadFocus) (next?.querySelector("button") || $("#learning-title")).focus();
}

// The audit's selects get their options on first use, as the cards' do. (There is no
// `onfocusin` property in Chromium: a listener is the way to hear focusin.)
$("#audit").addEventListener("focusin", fillMoveOptions);
listenForChoices(
  $("#audit"),
  (select, value) => audited(select.closest("li"), auditItems.get(select.closest("li")), value),
  (select) => auditItems.get(select.closest("li")).filename,
);
$("#audit").addEventListener("pointerdown", fillMoveOptions, true);

// The export is fetched (with the token, when there is one) and saved under the server's name.
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
