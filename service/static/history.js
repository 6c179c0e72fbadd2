// The model registry's history in the "Teach the model" panel (GET /wardrobe/models): every
// model this wardrobe has served or been offered, when it was promoted, and how it did on the
// wardrobe's held-out items when the canary compared it with the champion of the day.

import { API, api, json } from "./api.js";
import { $, count, say } from "./dom.js";

const STATES = {
  champion: "serving",
  candidate: "candidate",
  previous: "served before",
  refused: "refused by the canary",
};

const when = (iso) => (iso ? `${iso.slice(0, 16).replace("T", " ")} UTC` : "—");
const percent = (share) => (share === null || share === undefined ? "—" : `${(share * 100).toFixed(1)}%`);

function origin(model) {
  if (model.origin === "shipped") return "shipped";
  if (model.origin !== "fine-tune") return "uploaded";
  return model.wardrobe_items ? `fine-tuned on ${count(model.wardrobe_items, "item")}` : "fine-tuned";
}

function heldOut(canary) {
  if (!canary) return "—";
  if (!canary.items) return "no labelled items to compare on";
  const versus = `${percent(canary.candidate_accuracy)} (the champion then: ${percent(canary.champion_accuracy)})`;
  return `${versus} on ${count(canary.items, "item")}`;
}

function row(model, serving) {
  const tr = document.createElement("tr");
  tr.dataset.sha256 = model.sha256;
  tr.dataset.state = model.state;
  const name = Object.assign(document.createElement("code"), { textContent: model.sha256.slice(0, 12) });
  const first = Object.assign(document.createElement("th"), { scope: "row" });
  first.title = [model.sha256, model.architecture].filter(Boolean).join("\n"); // in full, on hover
  first.append(name, model.architecture ? ` ${model.architecture.split(" ")[0]}` : "");
  const cells = [
    STATES[model.state] ?? model.state,
    origin(model),
    when(model.promoted_at),
    heldOut(model.canary),
    percent(model.test_accuracy),
  ];
  tr.append(first, ...cells.map((text) => Object.assign(document.createElement("td"), { textContent: text })));
  const download = Object.assign(document.createElement("button"), { type: "button", className: "quiet" });
  download.textContent = "Download";
  download.setAttribute("aria-label", `Download model ${model.sha256.slice(0, 12)}`);
  download.addEventListener("click", () => save(model.sha256));
  const file = document.createElement("td");
  file.append(download);
  tr.append(file);
  if (model.sha256 === serving) tr.classList.add("serving");
  if (model.canary?.note) tr.title = model.canary.note;
  return tr;
}

/** Fill the history table; a server without a registry leaves it hidden. */
export async function loadHistory() {
  let history;
  try {
    history = await json(`${API}/models`);
  } catch {
    return;
  }
  $("#history tbody").replaceChildren(...history.models.map((model) => row(model, history.serving)));
  $("#history-box").hidden = history.models.length === 0;
}

// A model's ONNX file (GET /wardrobe/models/{sha256}.onnx, the bytes `wardrobe models export`
// writes), fetched with the token when there is one and saved under the server's name.
async function save(sha) {
  try {
    const response = await api(`${API}/models/${sha}.onnx`);
    const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "")?.[1];
    const link = Object.assign(document.createElement("a"), {
      href: URL.createObjectURL(await response.blob()),
      download: name || `wardrobe-model-${sha.slice(0, 12)}.onnx`,
    });
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
    say(`Downloaded model ${sha.slice(0, 12)}.`);
  } catch (error) {
    say(`Could not download model ${sha.slice(0, 12)}: ${error.message}`);
  }
}
