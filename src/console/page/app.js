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

// One date form everywhere (the viewer's local time, 24 h):
// YYYY-MM-DD HH:MM, with seconds where they matter (Activity).
const pad2 = (n) => String(n).padStart(2, "0");
function stamp(date, seconds) {
  if (Number.isNaN(date.getTime())) return "?";
  const day = `${date.getFullYear()}-${pad2(date.getMonth() + 1)}-${pad2(date.getDate())}`;
  const time = `${pad2(date.getHours())}:${pad2(date.getMinutes())}`;
  return `${day} ${time}${seconds ? ":" + pad2(date.getSeconds()) : ""}`;
}

function when(unix) {
  if (unix == null) return "never";
  return stamp(new Date(unix * 1000));
}

/** How long ago, in words: "just now", "5 min ago", "3 h ago", "4 days ago". */
function age(unix) {
  const s = Math.max(0, Date.now() / 1000 - unix);
  if (s < 90) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400 * 2) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

/** The date and how long ago: "2026-12-02 14:05 (5 min ago)". */
function ago(unix) {
  if (unix == null) return "never";
  return `${when(unix)} (${age(unix)})`;
}

// One fingerprint form everywhere: uppercase hex in groups of four; the
// short form is the first four groups and "…", always with a way to the whole.
function groupFp(fp) { return fp.toUpperCase().match(/.{4}/g).join(" "); }
function shortFp(fp) { return groupFp(fp.slice(0, 16)) + "…"; }

/** Copies `text`; says so in the status line (or how to copy by hand). */
async function copyText(text, what) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) {
    // No clipboard API (an insecure context, a refused permission): the
    // old way, through a selected text field.
    const area = el("textarea", { class: "sr-only", "aria-hidden": "true", tabindex: "-1" });
    area.value = text;
    document.body.append(area);
    area.select();
    const ok = document.execCommand && document.execCommand("copy");
    area.remove();
    if (!ok) { say(`Select the ${what.toLowerCase()} and copy it by hand.`, true); return; }
  }
  say(`${what} copied.`);
}

/**
 * A fingerprint, short, with a button that shows it whole (and back) and
 * one that copies it whole.
 */
function fpNode(fp) {
  const code = el("code", { class: "fp", text: shortFp(fp) });
  const toggle = el("button", { type: "button", class: "quiet small fp-toggle", "aria-expanded": "false", text: "Show whole" });
  toggle.addEventListener("click", () => {
    const whole = toggle.getAttribute("aria-expanded") !== "true";
    code.textContent = whole ? groupFp(fp) : shortFp(fp);
    toggle.setAttribute("aria-expanded", String(whole));
    toggle.textContent = whole ? "Show short" : "Show whole";
  });
  const copy = el("button", { type: "button", class: "quiet small copy", "aria-label": "Copy fingerprint", text: "Copy" });
  copy.addEventListener("click", () => copyText(groupFp(fp), "Fingerprint"));
  return el("span", { class: "fp-box", "data-fp": fp }, code, " ", toggle, copy);
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
  activity.known.clear();
  activity.device = "";
  $("activity-device").value = "";
  resetActivity();
  loadActivity();
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

// Open mode lets strangers in: warned about on every view while it is on.
function showOpen(open) { $("open-banner").hidden = !open; }

function render() {
  $("host-name").textContent = state.host.name;
  $("app-view").dataset.native = state.host.native ? "1" : "";
  showOpen(state.host.open);
  $("host-fingerprint").textContent = state.host.fingerprint_grouped;
  renderArmed();
  renderOtp();
  renderPending();
  renderDevices();
  renderActivityFilter();
}

function renderArmed() {
  // Without the punktfunk app's endpoint an armed PIN reaches nothing (the
  // host refuses to arm): say how to turn it on instead.
  const native = !!state.host.native;
  const armed = native && state.armed;
  $("no-native").hidden = native;
  $("armed").hidden = !armed;
  $("disarmed").hidden = !native || !!armed;
  if (armed) {
    $("pin").textContent = armed.pin;
    // A wrong guess used the typed PIN up; the QR code still pairs.
    $("pin").classList.toggle("used", !!armed.pin_used);
  }
  // The QR code carries the pairing link (addresses, port, host
  // fingerprint, the arming's own secret): the app pins the host before
  // it connects, and no wrong guess uses the link up.
  $("pair-link-box").hidden = !(armed && armed.link);
  if (armed && armed.link) {
    $("pair-link").textContent = armed.link;
    $("pair-link").setAttribute("href", armed.link);
    const src = `/api/pairing/qr.svg?pin=${encodeURIComponent(armed.pin)}`;
    if ($("pair-qr").getAttribute("src") !== src) $("pair-qr").setAttribute("src", src);
  }
  const a = state.last_attempt;
  const attempt = $("attempt");
  attempt.hidden = !a || (armed && a.result !== "in_progress" && !armed.pin_used);
  attempt.className = "attempt";
  if (a && a.result === "pin_rejected") {
    const next = armed
      ? ". The QR code still pairs (it has its own secret); arm again for a new PIN."
      : ". Arm again for a new PIN.";
    attempt.replaceChildren("PIN used up by a wrong guess from ", ...who(a.by), next);
    attempt.classList.add("bad");
  } else if (a && a.result === "paired") {
    const d = state.devices.find((x) => x.fingerprint === a.fingerprint);
    attempt.textContent = `Paired ${d ? (d.label || d.name) : "a device"} with the PIN.`;
    attempt.classList.add("good");
  } else if (a && a.result === "in_progress") {
    attempt.replaceChildren("Pairing with the PIN: ", ...who(a.by), "…");
  }
  // Who runs a native pairing exchange past its `pake` (with the PIN or
  // the link's secret).
  const x = state.exchange;
  const exchange = $("exchange");
  exchange.hidden = !x || (a && a.result === "in_progress");
  if (x) exchange.replaceChildren("Pairing in progress from ", ...who(x));
  tick();
}

// "NAME from ADDRESS (fingerprint)", the name isolated so that it cannot
// reorder the text around it.
function who(by) {
  return [el("bdi", { class: "who", text: by.name }), ` at ${by.address} (`, fpNode(by.fingerprint), ")"];
}

// A passphrase for a new one-time PIN: 12 letters and digits (easy to type
// on a TV remote), editable: any printable text of 8 to 64 characters.
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
    // Which name the device gets, and which name the client shows this
    // host under (the link's `name`, as in Apollo's).
    $("otp-for").replaceChildren(...(otp.name
      ? ["The device that pairs with it will be named ", el("strong", { class: "name", text: otp.name }), "."]
      : ["The device that pairs with it keeps the name it sends."]));
    $("otp-host-name").replaceChildren("The client lists this host as ",
      el("strong", { class: "name", text: state.host.name }), ".");
    // A new PIN starts from the address the host chose (where the console
    // was opened); an address the user typed stays for this PIN.
    const field = $("otp-address");
    if (otpShown !== otp.pin) {
      otpShown = otp.pin;
      field.value = otp.address || "";
      $("otp-address-error").hidden = true;
    }
    renderOtpLink();
  } else {
    otpShown = null;
  }
  // Wrong tries at the active PIN, live: each address gets one, five in all.
  const tries = (otp && otp.tries) || [];
  $("otp-tries").hidden = tries.length === 0;
  if (tries.length) {
    $("otp-tries-text").textContent = `${tries.length} wrong ${tries.length === 1 ? "try" : "tries"} so far; ` +
      `${otp.tries_left} left before it is used up. Each address gets one try.`;
    $("otp-tries-list").replaceChildren(...tries.map((t) =>
      el("li", {}, el("code", { text: t.address }), ` ${left(t.age_s)} ago`)));
  }
  const last = state.otp_last;
  const line = $("otp-last");
  line.hidden = !last || !!otp;
  line.className = "attempt";
  if (last) {
    const text = {
      paired: ["Paired the device at ", " with the one-time PIN.", "good"],
      wrong_passphrase: ["The one-time PIN was used up by tries with a wrong one-time PIN or passphrase, the last from ", ". Create a new one.", "bad"],
      failed: ["Pairing with the one-time PIN from ", " failed. Create a new one.", "bad"],
      in_progress: ["The device at ", " is pairing with the one-time PIN…", ""],
    }[last.result] || ["", "", ""];
    line.replaceChildren(text[0], el("code", { text: last.address }), text[1]);
    if (text[2]) line.classList.add(text[2]);
  }
}

let otpShown = null;

/** The address the user typed for the link, or why it is none: an IP address or a host name. */
function typedAddress(raw) {
  const v = raw.trim();
  const bare = v.replace(/^\[(.*)\]$/, "$1");
  if (/^[0-9a-fA-F:.]+$/.test(bare) && bare.includes(":")) return `[${bare}]`;
  // Digits and dots only: an IPv4 address, or nothing.
  if (/^[0-9.]+$/.test(v)) {
    const parts = v.split(".");
    return parts.length === 4 && parts.every((p) => /^[0-9]{1,3}$/.test(p) && Number(p) <= 255) && v !== "0.0.0.0" ? v : null;
  }
  if (/^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/.test(v)) return v.toLowerCase();
  return null;
}

/** The one-time PIN's link and QR code, to the address in the field. */
function renderOtpLink() {
  const otp = state && state.otp;
  if (!otp || !otp.link) {
    $("otp-link").textContent = "";
    $("otp-link").removeAttribute("href");
    return;
  }
  const raw = $("otp-address").value;
  const typed = raw.trim() === "" ? otp.address : typedAddress(raw);
  $("otp-address-error").hidden = typed != null;
  $("otp-address-error").textContent = typed == null
    ? "That is not an address: type an IP address or a host name (letters, digits, hyphens, dots)." : "";
  const address = typed == null ? otp.address : typed;
  const link = `art://${address}:${otp.port}${otp.link.slice(otp.link.indexOf("?"))}`;
  $("otp-link").textContent = link;
  $("otp-link").setAttribute("href", link);
  // A new PIN or address is a new image; the same one is not fetched again.
  const q = new URLSearchParams({ pin: otp.pin });
  if (address !== otp.address) q.set("address", address);
  const src = `/api/otp/qr.svg?${q}`;
  if ($("otp-qr").getAttribute("src") !== src) $("otp-qr").setAttribute("src", src);
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
  for (const card of document.querySelectorAll("#pending li.card[data-expires]")) {
    const s = secondsLeft(Number(card.dataset.expires));
    const t = card.querySelector(".time-left");
    // A device being written to the registry neither expires nor waits.
    if (t) t.textContent = card.dataset.storing ? "being added…" : s > 0 ? `expires in ${left(s)}` : "expired";
  }
  for (const item of document.querySelectorAll("#blocks > li[data-expires]")) {
    const s = secondsLeft(Number(item.dataset.expires));
    item.querySelector(".time-left").textContent = s > 0 ? `for ${left(s)} more` : "ending";
    if (s <= 0) refresh();
  }
}

// Puts `node` right after `prev` (first in `parent` if none), moving it only if needed.
function place(parent, node, prev) {
  const want = prev ? prev.nextSibling : parent.firstChild;
  if (want !== node) parent.insertBefore(node, want);
}

// The waiting list, grouped by address: an address with few requests (a
// device someone is pairing) before a flooding one, newest first within a
// group, so a flood cannot push the request the user is looking for out of sight.
function renderPending() {
  const list = $("pending");
  const groups = new Map();
  for (const p of state.pending) {
    if (!groups.has(p.address)) groups.set(p.address, []);
    groups.get(p.address).push(p);
  }
  const ordered = [...groups.entries()].map(([address, items]) =>
    ({ address, items: items.slice().sort((a, b) => a.age_s - b.age_s) }));
  ordered.sort((a, b) => a.items.length - b.items.length || a.items[0].age_s - b.items[0].age_s);
  const seen = new Set();
  let prevGroup = null;
  for (const g of ordered) {
    let group = list.querySelector(`li.group[data-address="${CSS.escape(g.address)}"]`) || pendingGroup(g.address);
    place(list, group, prevGroup);
    prevGroup = group;
    const cards = group.querySelector("ul.cards");
    let prevCard = null;
    for (const p of g.items) {
      seen.add(p.id);
      let card = cards.querySelector(`li.card[data-id="${CSS.escape(p.id)}"]`) || pendingCard(p);
      place(cards, card, prevCard);
      prevCard = card;
      card.dataset.expires = String(p.expires_in_s);
      card.dataset.storing = p.storing ? "1" : "";
    }
    const n = g.items.length;
    group.querySelector(".count").textContent = `${n} ${n === 1 ? "request" : "requests"}`;
  }
  for (const card of [...list.querySelectorAll("li.card")]) {
    if (!seen.has(card.dataset.id) && !card.dataset.hold) card.remove();
  }
  for (const group of [...list.children]) {
    if (!group.querySelector("li.card")) group.remove();
  }
  $("pending-empty").hidden = list.children.length > 0;
  $("deny-all").hidden = state.pending.length === 0;
  renderBlocks();
  tick();
}

function pendingGroup(address) {
  const denyAll = el("button", { type: "button", class: "secondary deny-address", text: "Deny all from this address" });
  const block = el("button", { type: "button", class: "danger block-address", text: "Block this address for 1 hour" });
  denyAll.addEventListener("click", async () => {
    denyAll.disabled = block.disabled = true;
    try {
      const r = await api("POST", "/api/pending/deny-address", { address });
      say(`Dismissed ${r.denied} waiting ${r.denied === 1 ? "request" : "requests"} from ${address}. It can ask again later.`);
      await refresh();
    } catch (e) { say(e.message, true); }
    denyAll.disabled = block.disabled = false;
  });
  block.addEventListener("click", async () => {
    denyAll.disabled = block.disabled = true;
    try {
      const r = await api("POST", "/api/blocks", { address });
      say(`Blocked ${address} for 1 hour; dismissed ${r.denied} waiting ${r.denied === 1 ? "request" : "requests"}.`);
      await refresh();
    } catch (e) { say(e.message, true); }
    denyAll.disabled = block.disabled = false;
  });
  return el("li", { class: "group", "data-address": address },
    el("div", { class: "group-head" },
      el("h3", {}, "From ", el("code", { text: address }), " ", el("span", { class: "count meta" })),
      denyAll, block),
    el("ul", { class: "cards" }));
}

function renderBlocks() {
  const list = $("blocks");
  list.replaceChildren(...state.blocks.map((b) => {
    const lift = el("button", { type: "button", class: "secondary lift", text: "Lift block" });
    lift.addEventListener("click", async () => {
      lift.disabled = true;
      try {
        await api("DELETE", `/api/blocks/${encodeURIComponent(b.address)}`);
        say(`Lifted the block of ${b.address}.`);
        await refresh();
      } catch (e) { say(e.message, true); lift.disabled = false; }
    });
    return el("li", { "data-address": b.address, "data-expires": String(b.expires_in_s) },
      el("code", { text: b.address }), el("span", { class: "time-left meta" }), lift);
  }));
  $("blocks-box").hidden = state.blocks.length === 0;
}

/**
 * The grant picker of a waiting request: what the device may do if it is
 * let in, and for how long. `grant()` is the API's `grant`, or undefined for
 * the host's default.
 */
function grantPicker(id) {
  const mayId = `may-${id}`, forId = `for-${id}`;
  const may = el("select", { id: mayId, name: "may", class: "grant-may" },
    el("option", { value: "", text: "The host's default" }),
    ...Object.keys(PRESETS).map((name) => el("option", { value: name, text: PRESET_NAMES[name] })));
  const until = el("select", { id: forId, name: "for", class: "grant-for" },
    el("option", { value: "", text: "No end" }),
    el("option", { value: "3600", text: "1 hour" }),
    el("option", { value: "14400", text: "4 hours" }),
    el("option", { value: "86400", text: "1 day" }),
    el("option", { value: "session", text: "Until its first session ends" }));
  const node = el("div", { class: "row grant" },
    el("div", {}, el("label", { for: mayId, text: "May" }), may),
    el("div", {}, el("label", { for: forId, text: "For" }), until));
  const grant = () => {
    if (!may.value && !until.value) return undefined;
    const g = {};
    if (may.value) g.may = may.value;
    if (until.value === "session") g.first_session = true;
    else if (until.value) g.for_s = Number(until.value);
    return g;
  };
  return { node, grant };
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
    const picker = grantPicker(p.id);
    approve.addEventListener("click", async () => {
      approve.disabled = deny.disabled = true;
      try {
        const d = await api("POST", `/api/pending/${p.id}/approve`, { label: label.value.trim() || null, grant: picker.grant() });
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
    card.append(picker.node, el("div", { class: "row" },
      el("div", {}, el("label", { for: labelId, text: "Label (optional)" }), label), approve, deny));
  } else {
    const pinId = `pin-${p.id}`, nameId = `name-${p.id}`;
    const pin = el("input", { id: pinId, name: "pin", inputmode: "numeric", pattern: "[0-9]{4}",
      maxlength: "4", autocomplete: "off", required: "", size: "6" });
    const label = el("input", { id: nameId, name: "label", maxlength: "64", placeholder: "e.g. Living Room TV" });
    const submit = el("button", { type: "submit", text: "Pair" });
    const picker = grantPicker(p.id);
    card.append(picker.node);
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
        const r = await api("POST", `/api/pending/${p.id}/pin`, { pin: pin.value.trim(), label: label.value.trim() || null, grant: picker.grant() });
        const outcome = {
          paired: ["paired", "Paired: this host now trusts the device. Streaming itself is the job of the host's streamer.", "good"],
          pin_rejected: ["pin_rejected", "Wrong PIN: Moonlight did not pair. Start pairing again in Moonlight.", "bad"],
          moonlight_qt_bug: ["moonlight_qt_bug", "Not paired: this attempt hit a known bug in Moonlight (the PIN was most likely right). Press Pair in Moonlight again and enter the new PIN it shows.", "bad"],
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
    const access = row.querySelector(".access-words");
    access.textContent = accessWords(d);
    access.classList.toggle("bad", !d.enabled || isExpired(d));
    const toggle = row.querySelector("button.toggle-enabled");
    toggle.textContent = d.enabled ? "Disable" : "Enable";
    toggle.classList.toggle("danger", d.enabled);
    toggle.classList.toggle("secondary", !d.enabled);
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
  const access = el("button", { type: "button", class: "secondary access", text: "Access…" });
  const toggle = el("button", { type: "button", class: "toggle-enabled" });
  const row = el("tr", { "data-fp": d.fingerprint },
    nameCell,
    el("td", { "data-label": "Kind", text: kindName(d.kind) }),
    el("td", { "data-label": "Paired", text: when(d.paired_at) }),
    el("td", { "data-label": "Last seen", class: "seen" }),
    el("td", { "data-label": "Admitted by", text: viaName(d.via) }),
    el("td", { "data-label": "Access" }, el("span", { class: "access-words" })),
    el("td", { class: "actions" }, rename, access, toggle, remove));
  rename.addEventListener("click", () => startRename(row, d.fingerprint));
  access.addEventListener("click", () => editAccess(d.fingerprint));
  toggle.addEventListener("click", async () => {
    const current = state.devices.find((x) => x.fingerprint === d.fingerprint) || d;
    const name = current.label || current.name;
    try {
      await api("PATCH", `/api/devices/${d.fingerprint}/access`, { enabled: !current.enabled });
      say(current.enabled ? `Disabled ${name}: every door refuses it until you enable it.` : `Enabled ${name}.`);
      refresh();
    } catch (e) { say(e.message, true); }
  });
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

// ---- access (grants) -----------------------------------------------------------

// Apollo's permission set, in bit order, in the console's words.
const PERMISSIONS = [
  ["input_controller", "Controllers"], ["input_touch", "Touch"], ["input_pen", "Pen"],
  ["input_mouse", "Mouse"], ["input_kbd", "Keyboard"], ["clipboard_set", "Set the clipboard"],
  ["clipboard_read", "Read the clipboard"], ["file_upload", "Upload files"],
  ["file_download", "Download files"], ["server_cmd", "Run server commands"],
  ["list", "List apps"], ["view", "View streams"], ["launch", "Launch apps"],
];
const PRESETS = {
  full: PERMISSIONS.map(([p]) => p),
  play: ["input_controller", "input_touch", "input_pen", "input_mouse", "input_kbd", "clipboard_read", "list", "view", "launch"],
  gamepad: ["input_controller", "list", "view", "launch"],
  watch: ["list", "view"],
};
const PRESET_NAMES = { full: "Full", play: "Play", gamepad: "Gamepad only", watch: "Watch" };

function isExpired(d) { return d.expired || (d.expires_at != null && d.expires_at <= Date.now() / 1000); }

/** "Play · until 23:00", "Guest · Watch · until 23:00", "Disabled", "Expired", "Custom". */
function accessWords(d) {
  if (!d.enabled) return "Disabled";
  if (isExpired(d)) return "Expired";
  const grant = (d.guest ? "Guest · " : "") + (PRESET_NAMES[d.preset] || "Custom");
  if (d.expires_at != null) return `${grant} · until ${when(d.expires_at)}`;
  return d.until_first_session ? `${grant} · until its first session ends` : grant;
}

/**
 * The end of access the dialog's "Until" asks for: unix seconds, null (no
 * end), "first_session", or undefined (keep).
 */
function chosenEnd() {
  const now = new Date();
  switch ($("access-until").value) {
    case "never": return null;
    case "session": return "first_session";
    case "1h": return Math.floor(now.getTime() / 1000) + 3600;
    case "4h": return Math.floor(now.getTime() / 1000) + 4 * 3600;
    case "tomorrow": {
      const t = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1, 4, 0, 0);
      return Math.floor(t.getTime() / 1000);
    }
    case "date": {
      const t = new Date($("access-date").value);
      return Number.isNaN(t.getTime()) ? undefined : Math.floor(t.getTime() / 1000);
    }
    default: return undefined;
  }
}

function editAccess(fp) {
  const d = state.devices.find((x) => x.fingerprint === fp);
  if (!d) return;
  const dialog = $("access-dialog");
  $("access-name").textContent = d.label || d.name;
  const box = $("access-permissions");
  box.replaceChildren(el("legend", { text: "Permissions" }));
  for (const [perm, words] of PERMISSIONS) {
    const input = el("input", { type: "checkbox", name: perm, id: `perm-${perm}` });
    input.checked = d.permissions.includes(perm);
    input.addEventListener("change", () => { $("access-preset").value = presetOf(checkedPermissions()) || "custom"; });
    box.append(el("div", { class: "check" }, input, el("label", { for: `perm-${perm}`, text: words })));
  }
  $("access-preset").value = d.preset || "custom";
  $("access-until").value = isExpired(d) ? "never" : "keep";
  $("access-date").hidden = true;
  $("access-now").textContent = isExpired(d)
    ? "Its access has expired: choose how long to renew it for."
    : d.expires_at != null ? `Its access ends ${when(d.expires_at)}.`
    : d.until_first_session ? "Its access ends when its first session ends."
    : "Its access has no end now.";
  dialog.returnValue = "";
  dialog.showModal();
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "ok") return;
    const body = {};
    const preset = $("access-preset").value;
    body.may = preset === "custom" ? checkedPermissions() : preset;
    const end = chosenEnd();
    if (end !== undefined) body.expires_at = end;
    try {
      await api("PATCH", `/api/devices/${fp}/access`, body);
      say(`Saved what ${d.label || d.name} may do.`);
      refresh();
    } catch (e) { say(e.message, true); }
  }, { once: true });
}

function checkedPermissions() {
  return PERMISSIONS.map(([p]) => p).filter((p) => $(`perm-${p}`).checked);
}

function presetOf(perms) {
  const key = [...perms].sort().join(",");
  return Object.keys(PRESETS).find((name) => [...PRESETS[name]].sort().join(",") === key);
}

function setupAccessDialog() {
  $("access-preset").addEventListener("change", () => {
    const preset = $("access-preset").value;
    if (preset === "custom") return;
    for (const [perm] of PERMISSIONS) $(`perm-${perm}`).checked = PRESETS[preset].includes(perm);
  });
  $("access-until").addEventListener("change", () => {
    $("access-date").hidden = $("access-until").value !== "date";
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

// ---- activity (the audit trail) ------------------------------------------------

const ACTIVITY_PAGE = 50;
// The most records the list holds (README "Activity"): open during a flood,
// it would otherwise grow without end. New records push the oldest out
// ("Older" reads them again); paging back past it drops the newest.
const ACTIVITY_MAX = 200;
const activity = {
  records: [],       // shown, newest first; as many as the table's rows
  next: null,        // cursor for "Older", null when there is no more
  atTop: true,       // the list starts at the newest record and follows the trail live
  device: "",        // the filter: a fingerprint, or "" for all
  known: new Map(),  // fingerprint -> { name, seq } for the filter
  gen: 0,            // bumped when the list starts over; stale reads are dropped
  busy: null,
  again: false,
  options: "",       // what the filter's options were built from
};

function doorName(door) {
  return { gamestream: "Moonlight", native: "punktfunk app", console: "Console", cli: "CLI", host: "Host" }[door] || door;
}

const EVENT_WORDS = {
  logout: "Logged out",
  pairing_armed: "Pairing armed",
  pairing_disarmed: "Pairing disarmed",
  pairing_expired: "Pairing PIN expired unused",
  request_waiting: "Asked to pair",
  request_approved: "Request approved",
  request_denied: "Request denied",
  request_expired: "Request expired: nobody decided",
  request_abandoned: "Request abandoned: the device went away",
  request_replaced: "Request replaced by a newer one",
  pin_entered: "Moonlight's PIN entered",
  moonlight_bug: "Not paired: a known Moonlight bug (the PIN was most likely right)",
  link_rejected: "Wrong pairing-link secret (the link still pairs)",
  pairing_stalled: "Asked to pair, then sent nothing",
  renamed: "Renamed",
  revoked: "Removed",
  invite_created: "Guest invite made",
  invite_used: "Guest paired with an invite",
  grant_changed: "Access changed",
  disabled: "Disabled",
  enabled: "Enabled",
  access_expired: "Access expired",
  registry_upgraded: "Device list upgraded to the new format",
  host_identity_created: "Host identity created",
  registry_refused: "Device list unreadable: the host refused to start",
  otp_created: "One-time PIN created",
  otp_cancelled: "One-time PIN cancelled",
  otp_expired: "One-time PIN expired unused",
  address_blocked: "Address blocked for 1 hour",
  address_unblocked: "Address block lifted",
  block_expired: "Address block ended",
  audit_suppressed: "Entries left out (too many from unknown peers)",
};

const PAIRED_VIA = { pin: "with the PIN", approval: "approved in the console", open: "open host", otp: "with a one-time PIN" };
const OUTCOME_WORDS = { failed: "failed", rate_limited: "rate limited" };

/** What a record says, in words a person reads. */
function eventWords(r) {
  switch (r.event) {
    case "login":
      return { ok: "Logged in", failed: "Login failed", rate_limited: "Login refused: too many attempts" }[r.outcome] || "Login";
    case "paired":
      return r.via ? `Paired (${PAIRED_VIA[r.via] || r.via})` : "Paired";
    case "otp_used":
      return r.outcome === "ok" ? "One-time PIN used" : "Wrong one-time PIN or passphrase";
    case "pin_rejected":
      // With a one-time PIN, the detail says why (a wrong one-time PIN or
      // passphrase, which otpauth cannot tell apart).
      return r.via === "otp" ? "Pairing with the one-time PIN failed" : "Wrong PIN";
    default:
      return EVENT_WORDS[r.event] || r.event.replace(/_/g, " ");
  }
}

/** An RFC 3339 time in the browser's time zone: YYYY-MM-DD HH:MM:SS. */
function localTime(at) {
  const d = new Date(at);
  if (Number.isNaN(d.getTime())) return at;
  return stamp(d, true);
}

function deviceName(d) { return d.label || d.name; }

function activityRow(r) {
  const what = el("td", { class: "what", "data-label": "What" }, el("span", { class: "event", text: eventWords(r) }));
  if (r.outcome && r.outcome !== "ok") {
    what.append(" ", el("span", { class: "outcome bad", text: OUTCOME_WORDS[r.outcome] || r.outcome }));
  }
  if (r.detail) what.append(el("span", { class: "detail meta", text: r.detail }));
  const device = el("td", { class: "device", "data-label": "Device" });
  if (r.device) {
    const fp = r.device.fingerprint;
    device.append(el("bdi", { class: "label", text: deviceName(r.device) }), " ", fpNode(fp));
  }
  const by = el("td", { class: "by", "data-label": "By" }, el("span", { class: "door", text: doorName(r.door) }));
  // The console on a paired device (the punktfunk app).
  if (r.by) by.append(" on ", el("bdi", { class: "on-device", text: deviceName(r.by) }));
  if (r.address) by.append(" from ", el("code", { class: "addr", text: r.address }));
  const row = el("tr", { "data-seq": String(r.seq), "data-event": r.event, "data-outcome": r.outcome },
    el("td", { class: "when", "data-label": "When" }, el("time", { datetime: r.at, title: r.at, text: localTime(r.at) })),
    what, device, by);
  if (r.device) row.dataset.fp = r.device.fingerprint;
  return row;
}

function activityUrl(before) {
  const q = new URLSearchParams({ limit: String(ACTIVITY_PAGE) });
  if (before != null) q.set("before", String(before));
  if (activity.device) q.set("device", activity.device);
  return "/api/audit?" + q;
}

/** Starts the list over (a new session, another filter). */
function resetActivity() {
  activity.gen++;
  activity.records = [];
  activity.next = null;
  activity.atTop = true;
  $("activity").tBodies[0].replaceChildren();
  renderActivityMeta();
}

/**
 * Re-reads the newest page. Records the page already shows stay (with any
 * older pages loaded), new ones go on top; reads asked for while one runs
 * are folded into one more read.
 */
function loadActivity() {
  // Paged back past the newest: the list stays put until "Newest".
  if (!activity.atTop) return Promise.resolve();
  if (activity.busy) { activity.again = true; return activity.busy; }
  activity.busy = (async () => {
    try {
      do {
        activity.again = false;
        const gen = activity.gen;
        try {
          const page = await api("GET", activityUrl(null));
          if (gen === activity.gen && activity.atTop) mergeNewest(page);
          showActivityError("");
        } catch (e) {
          if (e.status !== 401) showActivityError("Cannot read the activity: " + e.message);
        }
      } while (activity.again);
    } finally { activity.busy = null; }
  })();
  return activity.busy;
}

function mergeNewest(page) {
  const body = $("activity").tBodies[0];
  const top = activity.records.length ? activity.records[0].seq : null;
  const overlaps = top == null || page.next == null || page.events.some((r) => r.seq <= top);
  if (!overlaps) {
    // More is new than one page holds: start over from this page.
    activity.gen++;
    activity.records = page.events.slice();
    activity.next = page.next;
    body.replaceChildren(...page.events.map(activityRow));
  } else {
    const fresh = top == null ? page.events : page.events.filter((r) => r.seq > top);
    activity.records.unshift(...fresh);
    if (top == null) activity.next = page.next;
    if (fresh.length) body.prepend(...fresh.map(activityRow));
  }
  // The oldest go; "Older" reads them again.
  const over = activity.records.length - ACTIVITY_MAX;
  if (over > 0) {
    activity.records.length = ACTIVITY_MAX;
    for (let i = 0; i < over; i++) body.lastElementChild.remove();
    activity.next = activity.records[ACTIVITY_MAX - 1].seq;
  }
  learnDevices(page.events);
  renderActivityMeta();
}

async function loadOlder() {
  const button = $("activity-older");
  const cursor = activity.next;
  if (cursor == null) return;
  const gen = activity.gen;
  button.disabled = true;
  try {
    const page = await api("GET", activityUrl(cursor));
    if (gen !== activity.gen || activity.next !== cursor) return;
    const last = activity.records.length ? activity.records[activity.records.length - 1].seq : Infinity;
    const older = page.events.filter((r) => r.seq < last);
    activity.records.push(...older);
    activity.next = page.next;
    const body = $("activity").tBodies[0];
    body.append(...older.map(activityRow));
    // Past the most the list holds, the newest go: the list no longer
    // follows the trail until "Newest" starts it over.
    const over = activity.records.length - ACTIVITY_MAX;
    if (over > 0) {
      activity.records.splice(0, over);
      for (let i = 0; i < over; i++) body.firstElementChild.remove();
      activity.atTop = false;
    }
    learnDevices(older);
    showActivityError("");
  } catch (e) {
    if (e.status !== 401) showActivityError("Cannot read older activity: " + e.message);
  } finally {
    button.disabled = false;
    renderActivityMeta();
  }
}

function showActivityError(text) {
  $("activity-error").textContent = text;
  $("activity-error").hidden = !text;
}

/** Devices for the filter: those in the records read (as last named there) and the paired ones (as named now). */
function learnDevices(records) {
  for (const r of records) {
    if (!r.device) continue;
    const known = activity.known.get(r.device.fingerprint);
    if (!known || known.seq < r.seq) activity.known.set(r.device.fingerprint, { name: deviceName(r.device), seq: r.seq });
  }
  renderActivityFilter();
}

function renderActivityFilter() {
  const select = $("activity-device");
  const names = new Map();
  for (const [fp, k] of activity.known) names.set(fp, k.name);
  for (const d of (state && state.devices) || []) names.set(d.fingerprint, deviceName(d));
  if (activity.device && !names.has(activity.device)) names.set(activity.device, "");
  const entries = [...names].sort((a, b) => a[1].localeCompare(b[1]) || a[0].localeCompare(b[0]));
  // Rebuilt only when something changed, so an open list does not jump.
  const want = ["", ...entries.map(([fp, name]) => fp + "\n" + name)].join("\0");
  if (activity.options === want) return;
  activity.options = want;
  select.replaceChildren(el("option", { value: "", text: "All devices" }),
    // The name between isolates (U+2068, U+2069): a right-to-left name
    // cannot reorder the fingerprint after it.
    ...entries.map(([fp, name]) => el("option", { value: fp, text: `\u2068${name || "?"}\u2069 · ${shortFp(fp)}` })));
  select.value = activity.device;
}

function renderActivityMeta() {
  const shown = activity.records.length;
  $("activity").hidden = shown === 0;
  $("activity-empty").hidden = shown > 0;
  $("activity-empty").textContent = activity.device ? "Nothing recorded for this device." : "Nothing recorded yet.";
  $("activity-older").hidden = activity.next == null;
  $("activity-newest").hidden = activity.atTop;
}

// ---- live updates ------------------------------------------------------------

function startLive() {
  stopLive();
  if ("EventSource" in window) {
    events = new EventSource("/api/events");
    // "audit": new records in the trail, only the Activity list changes;
    // "changed" (and anything else): the pairing state is re-read.
    events.onmessage = (m) => { if (m.data === "audit") loadActivity(); else refresh(); };
    // After a reconnect, records made during the gap are read once.
    let reconnect = false;
    events.onopen = () => { if (reconnect) loadActivity(); reconnect = true; };
    events.onerror = () => { /* the browser reconnects; polling covers the gap */ };
  }
  // Slow polling as a safety net (and the countdowns tick locally).
  pollTimer = setInterval(() => { refresh(); loadActivity(); }, 10000);
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
    if (e.code === "not_recorded") {
      // Logged in; only the audit trail could not record it (a full disk).
      try {
        csrf = (await api("GET", "/api/session")).csrf;
        $("password").value = "";
        showApp();
        say(e.message, true);
        return;
      } catch (_) { /* not logged in after all: say why below */ }
    }
    $("login-error").textContent = e.status === 401 ? "Wrong password." : e.message;
  }
});

$("logout").addEventListener("click", async () => {
  try { await api("POST", "/api/logout"); } catch (_) { /* already gone */ }
  showLogin("Logged out.");
});

const armPicker = grantPicker("arm");
$("arm").before(armPicker.node);

$("arm").addEventListener("click", async () => {
  try { await api("POST", "/api/pairing/arm", { grant: armPicker.grant() }); await refresh(); $("disarm").focus(); }
  catch (e) { say(e.message, true); if (e.code === "no_native") refresh(); }
});

$("disarm").addEventListener("click", async () => {
  try { await api("POST", "/api/pairing/disarm"); await refresh(); $("arm").focus(); }
  catch (e) { say(e.message, true); }
});

// Every code and link on the page has its copy button (`data-copy`: the
// element whose text it copies).
for (const button of document.querySelectorAll("button[data-copy]")) {
  button.addEventListener("click", () => copyText($(button.dataset.copy).textContent.trim(), button.dataset.what));
}

$("otp-address").addEventListener("input", renderOtpLink);
// Left empty, the field shows the address the link then uses.
$("otp-address").addEventListener("change", () => {
  if (!$("otp-address").value.trim() && state && state.otp) { $("otp-address").value = state.otp.address || ""; renderOtpLink(); }
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

$("invite-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const length = $("invite-for").value;
  const guest = { may: $("invite-preset").value };
  if (length === "session") guest.first_session = true;
  else guest.for_s = Number(length);
  const words = length === "session"
    ? `${PRESET_NAMES[guest.may]} until its first session ends`
    : `${PRESET_NAMES[guest.may]} for ${$("invite-for").selectedOptions[0].textContent} after pairing`;
  try {
    if (ev.submitter && ev.submitter.value === "gamestream") {
      await api("POST", "/api/otp", { guest });
      await refresh();
      say(`Guest invite made (${words}): give the guest the one-time PIN and passphrase, or the link.`);
      $("otp-cancel").focus();
    } else {
      await api("POST", "/api/pairing/arm", { guest });
      await refresh();
      say(`Guest invite made (${words}): let the guest open the link or scan the QR code.`);
      $("disarm").focus();
    }
  } catch (e) { say(e.message, true); if (e.code === "no_native") refresh(); }
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

$("activity-device").addEventListener("change", () => {
  activity.device = $("activity-device").value;
  resetActivity();
  loadActivity();
});

$("activity-older").addEventListener("click", loadOlder);

$("activity-newest").addEventListener("click", () => {
  resetActivity();
  loadActivity();
});

setupAccessDialog();
setInterval(tick, 1000);

(async function start() {
  try {
    const host = await api("GET", "/api/host");
    $("host-name").textContent = host.name;
    $("login-fingerprint").textContent = host.fingerprint_grouped;
    showOpen(host.open);
  } catch (_) { /* shown after login */ }
  try {
    const s = await api("GET", "/api/session");
    csrf = s.csrf;
    showApp();
  } catch (_) {
    showLogin();
  }
})();
