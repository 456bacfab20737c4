// The Pairing page. Plain DOM, no framework, no innerHTML: every string
// that came from the network (device names above all) is set as text.
"use strict";

const $ = (id) => document.getElementById(id);
let csrf = null;
let state = null;
let fetchedAt = 0;
let events = null;
let pollTimer = null;

// ---- API -------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin", cache: "no-store" };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf || "";
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  let data = null;
  try { data = await resp.json(); } catch (_) { /* empty body */ }
  if (!resp.ok && resp.status !== 202) {
    const err = (data && data.error) || {};
    if (resp.status === 401 && csrf && path !== "/api/login") showLogin("Your session ended; log in again.");
    throw new ApiError(resp.status, err.code || "http_" + resp.status, err.message || resp.statusText);
  }
  return data;
}

// ---- small helpers -----------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function kindName(kind) { return kind === "gamestream" ? "Moonlight" : "punktfunk app"; }
function viaName(via) { return { pin: "PIN", approval: "approval", open: "open host", otp: "one-time PIN" }[via] || via; }

function left(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  const m = Math.floor(s / 60);
  return m > 0 ? `${m} min ${String(s % 60).padStart(2, "0")} s` : `${s} s`;
}

function secondsLeft(expiresIn) { return expiresIn - (Date.now() - fetchedAt) / 1000; }

function when(unix) {
  if (unix == null) return "never";
  return new Date(unix * 1000).toLocaleString();
}

function ago(unix) {
  if (unix == null) return "never";
  const s = Math.max(0, Date.now() / 1000 - unix);
  if (s < 90) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400 * 2) return `${Math.round(s / 3600)} h ago`;
  return when(unix);
}

function shortFp(fp) { return fp.slice(0, 16).match(/.{4}/g).join(" "); }
function groupFp(fp) { return fp.toUpperCase().match(/.{4}/g).join(" "); }

function fpNode(fp) {
  return el("details", { class: "fp" },
    el("summary", { title: groupFp(fp) }, el("code", { text: shortFp(fp) + " …" })),
    el("code", { class: "fp-full", text: groupFp(fp) }));
}

function say(text, bad) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("bad", !!bad);
}

// ---- views -------------------------------------------------------------------

function showLogin(message) {
  csrf = null;
  stopLive();
  $("app-view").hidden = true;
  $("logout").hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = message || "";
  $("password").focus();
}

function showApp() {
  $("login-view").hidden = true;
  $("app-view").hidden = false;
  $("logout").hidden = false;
  startLive();
  refresh();
}

async function refresh() {
  try {
    state = await api("GET", "/api/pairing");
    fetchedAt = Date.now();
    render();
  } catch (e) {
    if (e.status !== 401) say("Cannot reach the host: " + e.message, true);
  }
}

function render() {
  $("host-name").textContent = state.host.name;
  $("host-fingerprint").textContent = state.host.fingerprint_grouped;
  renderArmed();
  renderOtp();
  renderPending();
  renderDevices();
}

function renderArmed() {
  const armed = state.armed;
  $("armed").hidden = !armed;
  $("disarmed").hidden = !!armed;
  if (armed) $("pin").textContent = armed.pin;
  // The QR code carries the pairing link (addresses, port, host
  // fingerprint, PIN): the app pins the host before it connects.
  $("pair-link-box").hidden = !(armed && armed.link);
  if (armed && armed.link) {
    $("pair-link").textContent = armed.link;
    const src = `/api/pairing/qr.svg?pin=${encodeURIComponent(armed.pin)}`;
    if ($("pair-qr").getAttribute("src") !== src) $("pair-qr").setAttribute("src", src);
  }
  const a = state.last_attempt;
  const attempt = $("attempt");
  attempt.hidden = !a || (armed && a.result !== "in_progress");
  attempt.className = "attempt";
  if (a && a.result === "pin_rejected") {
    attempt.replaceChildren("PIN used up by a wrong guess from ", ...who(a.by), ". Arm again for a new PIN.");
    attempt.classList.add("bad");
  } else if (a && a.result === "paired") {
    const d = state.devices.find((x) => x.fingerprint === a.fingerprint);
    attempt.textContent = `Paired ${d ? (d.label || d.name) : "a device"} with the PIN.`;
    attempt.classList.add("good");
  } else if (a && a.result === "in_progress") {
    attempt.replaceChildren("Pairing with the PIN: ", ...who(a.by), "…");
  }
  // Who holds the one pairing slot before using the PIN (a stalled
  // client is cut off after a few seconds; naming it shows who it was).
  const x = state.exchange;
  const exchange = $("exchange");
  exchange.hidden = !x || (a && a.result === "in_progress");
  if (x) exchange.replaceChildren("Pairing in progress from ", ...who(x));
  tick();
}

// "NAME from ADDRESS (fingerprint)", the name isolated so that it cannot
// reorder the text around it.
function who(by) {
  return [el("bdi", { class: "who", text: by.name }), ` at ${by.address} (`, el("code", { text: shortFp(by.fingerprint) }), ")"];
}

// A passphrase for a new one-time PIN: 12 letters and digits, editable.
function newPassphrase() {
  const abc = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => abc[b % abc.length]).join("");
}

function renderOtp() {
  const otp = state.otp;
  $("otp-form").hidden = !!otp;
  $("otp-active").hidden = !otp;
  if (!$("otp-passphrase").value) $("otp-passphrase").value = newPassphrase();
  if (otp) {
    $("otp-pin").textContent = otp.pin;
    $("otp-pass").textContent = otp.passphrase;
    $("otp-link").textContent = otp.link || "";
    $("otp-for").textContent = otp.name ? ` for ${otp.name}` : "";
    // A new PIN is a new image; the same one is not fetched again.
    const src = `/api/otp/qr.svg?pin=${encodeURIComponent(otp.pin)}`;
    if ($("otp-qr").getAttribute("src") !== src) $("otp-qr").setAttribute("src", src);
  }
  const last = state.otp_last;
  const line = $("otp-last");
  line.hidden = !last || !!otp;
  line.className = "attempt";
  if (last) {
    const text = {
      paired: ["Paired the device at ", " with the one-time PIN.", "good"],
      wrong_passphrase: ["The one-time PIN was used up by a wrong PIN or passphrase from ", ". Create a new one.", "bad"],
      failed: ["Pairing with the one-time PIN from ", " failed. Create a new one.", "bad"],
      in_progress: ["The device at ", " is pairing with the one-time PIN…", ""],
    }[last.result] || ["", "", ""];
    line.replaceChildren(text[0], el("code", { text: last.address }), text[1]);
    if (text[2]) line.classList.add(text[2]);
  }
}

function tick() {
  if (!state) return;
  if (state.armed) {
    const s = secondsLeft(state.armed.expires_in_s);
    $("pin-left").textContent = left(s);
    if (s <= 0) refresh();
  }
  if (state.otp) {
    const s = secondsLeft(state.otp.expires_in_s);
    $("otp-left").textContent = left(s);
    if (s <= 0) refresh();
  }
  for (const card of document.querySelectorAll("#pending > li[data-expires]")) {
    const s = secondsLeft(Number(card.dataset.expires));
    const t = card.querySelector(".time-left");
    if (t) t.textContent = s > 0 ? `expires in ${left(s)}` : "expired";
  }
}

function renderPending() {
  const list = $("pending");
  const seen = new Set();
  for (const p of state.pending) {
    seen.add(p.id);
    let card = list.querySelector(`li[data-id="${CSS.escape(p.id)}"]`);
    if (!card) {
      card = pendingCard(p);
      list.append(card);
    }
    card.dataset.expires = String(p.expires_in_s);
  }
  for (const card of [...list.children]) {
    if (!seen.has(card.dataset.id) && !card.dataset.hold) card.remove();
  }
  $("pending-empty").hidden = list.children.length > 0;
  $("deny-all").hidden = state.pending.length === 0;
  tick();
}

function pendingCard(p) {
  const card = el("li", { class: "card", "data-id": p.id, "data-kind": p.kind });
  card.append(
    el("h3", {}, el("span", { class: "kind", text: kindName(p.kind) }), el("span", { class: "name", text: p.name })),
    el("p", { class: "meta" },
      "from ", el("code", { text: p.address }), " · ", el("span", { class: "time-left" })),
    fpNode(p.fingerprint));
  const result = el("p", { class: "result", role: "status" });
  if (p.needs === "approval") {
    const labelId = `label-${p.id}`;
    const label = el("input", { id: labelId, name: "label", maxlength: "64", placeholder: "e.g. Living Room TV" });
    const approve = el("button", { type: "button", class: "approve", text: "Approve" });
    const deny = el("button", { type: "button", class: "secondary deny", text: "Deny" });
    approve.addEventListener("click", async () => {
      approve.disabled = deny.disabled = true;
      try {
        const d = await api("POST", `/api/pending/${p.id}/approve`, { label: label.value.trim() || null });
        say(`Approved ${d.label || d.name}.`);
        card.remove();
        refresh();
      } catch (e) {
        result.textContent = e.message; result.className = "result bad";
        approve.disabled = deny.disabled = false;
      }
    });
    deny.addEventListener("click", async () => {
      approve.disabled = deny.disabled = true;
      try {
        await api("POST", `/api/pending/${p.id}/deny`);
        say(`Dismissed ${p.name}. It can ask again later.`);
        card.remove();
        refresh();
      } catch (e) {
        result.textContent = e.message; result.className = "result bad";
        approve.disabled = deny.disabled = false;
      }
    });
    card.append(el("div", { class: "row" },
      el("div", {}, el("label", { for: labelId, text: "Label (optional)" }), label), approve, deny));
  } else {
    const pinId = `pin-${p.id}`, nameId = `name-${p.id}`;
    const pin = el("input", { id: pinId, name: "pin", inputmode: "numeric", pattern: "[0-9]{4}",
      maxlength: "4", autocomplete: "off", required: "", size: "6" });
    const label = el("input", { id: nameId, name: "label", maxlength: "64", placeholder: "e.g. Living Room TV" });
    const submit = el("button", { type: "submit", text: "Pair" });
    const form = el("form", { class: "row" },
      el("div", {}, el("label", { for: pinId, text: "Type the PIN Moonlight shows" }), pin),
      el("div", {}, el("label", { for: nameId, text: "Name (optional)" }), label),
      submit);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!/^[0-9]{4}$/.test(pin.value.trim())) {
        result.textContent = "The PIN is the 4 digits Moonlight shows."; result.className = "result bad";
        return;
      }
      submit.disabled = pin.disabled = label.disabled = true;
      card.dataset.hold = "1";
      result.textContent = "Waiting for Moonlight to finish pairing…"; result.className = "result";
      try {
        const r = await api("POST", `/api/pending/${p.id}/pin`, { pin: pin.value.trim(), label: label.value.trim() || null });
        const outcome = {
          paired: ["paired", "Paired. Moonlight can stream from this host now.", "good"],
          pin_rejected: ["pin_rejected", "Wrong PIN: Moonlight did not pair. Start pairing again in Moonlight.", "bad"],
          abandoned: ["abandoned", "Moonlight gave up before pairing finished. Start pairing again in Moonlight.", "bad"],
          waiting: ["waiting", "Moonlight has not finished yet; check the device list in a moment.", ""],
        }[r.result] || [r.result, r.result, ""];
        card.dataset.result = outcome[0];
        result.textContent = outcome[1]; result.className = "result " + outcome[2];
      } catch (e) {
        result.textContent = e.message; result.className = "result bad";
        submit.disabled = pin.disabled = label.disabled = false;
      }
      // Keep the outcome on screen a little, then let the list catch up.
      setTimeout(() => { delete card.dataset.hold; refresh(); }, 15000);
      refresh();
    });
    card.append(form);
  }
  card.append(result);
  return card;
}

function renderDevices() {
  const table = $("devices");
  const body = table.tBodies[0];
  const seen = new Set();
  for (const d of state.devices) {
    seen.add(d.fingerprint);
    let row = body.querySelector(`tr[data-fp="${d.fingerprint}"]`);
    if (!row) {
      row = deviceRow(d);
      body.append(row);
    }
    if (!row.dataset.editing) {
      row.querySelector(".label").textContent = d.label || d.name;
      row.querySelector(".orig").textContent = d.label ? `(${d.name})` : "";
    }
    row.querySelector(".seen").textContent = ago(d.last_seen);
  }
  for (const row of [...body.rows]) if (!seen.has(row.dataset.fp)) row.remove();
  table.hidden = body.rows.length === 0;
  $("devices-empty").hidden = body.rows.length > 0;
}

function deviceRow(d) {
  const nameCell = el("td", { class: "name", "data-label": "Name" },
    el("strong", { class: "label" }), " ", el("span", { class: "orig meta" }), fpNode(d.fingerprint));
  const rename = el("button", { type: "button", class: "secondary rename", text: "Rename" });
  const remove = el("button", { type: "button", class: "danger remove", text: "Remove" });
  const row = el("tr", { "data-fp": d.fingerprint },
    nameCell,
    el("td", { "data-label": "Kind", text: kindName(d.kind) }),
    el("td", { "data-label": "Paired", text: when(d.paired_at) }),
    el("td", { "data-label": "Last seen", class: "seen" }),
    el("td", { "data-label": "Admitted by", text: viaName(d.via) }),
    el("td", { class: "actions" }, rename, remove));
  rename.addEventListener("click", () => startRename(row, d.fingerprint));
  remove.addEventListener("click", async () => {
    const current = state.devices.find((x) => x.fingerprint === d.fingerprint) || d;
    const name = current.label || current.name;
    if (!(await confirmDialog(`Remove ${name}? It loses access at once and has to pair again to come back.`))) return;
    try {
      await api("DELETE", `/api/devices/${d.fingerprint}`);
      say(`Removed ${name}.`);
      row.remove();
      refresh();
    } catch (e) { say(e.message, true); }
  });
  return row;
}

function startRename(row, fp) {
  if (row.dataset.editing) return;
  const current = state.devices.find((x) => x.fingerprint === fp);
  row.dataset.editing = "1";
  const strong = row.querySelector(".label");
  const input = el("input", { class: "rename-input", "aria-label": "New name", maxlength: "64", value: current ? (current.label || current.name) : "" });
  const save = el("button", { type: "submit", text: "Save" });
  const cancel = el("button", { type: "button", class: "secondary", text: "Cancel" });
  const form = el("form", { class: "row rename-form" }, input, save, cancel);
  strong.after(form);
  strong.hidden = true;
  input.focus();
  input.select();
  const done = () => { form.remove(); strong.hidden = false; delete row.dataset.editing; refresh(); };
  cancel.addEventListener("click", done);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("PATCH", `/api/devices/${fp}`, { label: input.value.trim() || null });
      say("Renamed.");
      done();
    } catch (e) { say(e.message, true); }
  });
}

function confirmDialog(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

// ---- live updates ------------------------------------------------------------

function startLive() {
  stopLive();
  if ("EventSource" in window) {
    events = new EventSource("/api/events");
    events.onmessage = () => refresh();
    events.onerror = () => { /* the browser reconnects; polling covers the gap */ };
  }
  // Slow polling as a safety net (and the countdowns tick locally).
  pollTimer = setInterval(refresh, 10000);
}

function stopLive() {
  if (events) { events.close(); events = null; }
  if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
}

// ---- wiring ------------------------------------------------------------------

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  try {
    const r = await api("POST", "/api/login", { password: $("password").value });
    csrf = r.csrf;
    $("password").value = "";
    showApp();
  } catch (e) {
    $("login-error").textContent = e.status === 401 ? "Wrong password." : e.message;
  }
});

$("logout").addEventListener("click", async () => {
  try { await api("POST", "/api/logout"); } catch (_) { /* already gone */ }
  showLogin("Logged out.");
});

$("arm").addEventListener("click", async () => {
  try { await api("POST", "/api/pairing/arm"); await refresh(); $("disarm").focus(); }
  catch (e) { say(e.message, true); }
});

$("disarm").addEventListener("click", async () => {
  try { await api("POST", "/api/pairing/disarm"); await refresh(); $("arm").focus(); }
  catch (e) { say(e.message, true); }
});

$("copy-link").addEventListener("click", async () => {
  try { await navigator.clipboard.writeText($("pair-link").textContent); say("Pairing link copied."); }
  catch (_) { say("Select the link and copy it by hand.", true); }
});

$("otp-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const name = $("otp-name").value.trim() || null;
    await api("POST", "/api/otp", { passphrase: $("otp-passphrase").value.trim(), name });
    $("otp-name").value = "";
    $("otp-passphrase").value = "";
    await refresh();
    $("otp-cancel").focus();
  } catch (e) { say(e.message, true); }
});

$("otp-cancel").addEventListener("click", async () => {
  try { await api("DELETE", "/api/otp"); await refresh(); $("otp-name").focus(); }
  catch (e) { say(e.message, true); }
});

$("deny-all").addEventListener("click", async () => {
  try {
    const r = await api("POST", "/api/pending/deny-all");
    say(`Dismissed ${r.denied} waiting ${r.denied === 1 ? "request" : "requests"}. They can ask again later.`);
    await refresh();
  } catch (e) { say(e.message, true); }
});

setInterval(tick, 1000);

(async function start() {
  try {
    const host = await api("GET", "/api/host");
    $("host-name").textContent = host.name;
    $("login-fingerprint").textContent = host.fingerprint_grouped;
  } catch (_) { /* shown after login */ }
  try {
    const s = await api("GET", "/api/session");
    csrf = s.csrf;
    showApp();
  } catch (_) {
    showLogin();
  }
})();
