// Talking to the server. Every request goes through api(): it adds the wardrobe's token
// (asked for only when the server wants one, and kept in this tab) and turns a refusal into
// an HttpError carrying the server's own message.

import { $ } from "./dom.js";

export const API = "/wardrobe";
export const UNSURE = "unsure"; // the shelf of items the model was not sure about

let token = sessionStorage.getItem("wardrobe-token") || "";
let tokenWaiters = []; // callers waiting for the person to enter a token

export class HttpError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status; // 0: no answer at all
    this.retryAfter = retryAfter;
  }
}

export async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (token) headers.set("Authorization", `Bearer ${token}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch {
    throw new HttpError(0, "the server cannot be reached; is it running?");
  }
  if (response.ok) return response;
  let message = `${response.status} ${response.statusText}`;
  try {
    message = (await response.json()).error || message;
  } catch {
    // not JSON: keep the status line
  }
  if (response.status === 401) showTokenForm(token ? "That token was not accepted." : "");
  throw new HttpError(response.status, message, Number(response.headers.get("Retry-After")) || 1);
}

export const json = async (path, options) => (await api(path, options)).json();

/** The JSON body of a PATCH, POST… request. */
export const sending = (method, body) => ({
  method,
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify(body),
});

/** Resolves when the person has entered a token (after a 401: try again then). */
export function nextToken() {
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

function showTokenForm(problem) {
  $("#token-form").hidden = false;
  $("#token-error").textContent = problem;
  $("#token").focus();
}

$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("#token").value.trim();
  sessionStorage.setItem("wardrobe-token", token);
  $("#token-form").hidden = true;
  const waiters = tokenWaiters;
  tokenWaiters = [];
  waiters.forEach((resolve) => resolve());
});
