// Drives the real console page in headless Chromium against the real
// `punktfunk serve` binary.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { mkdirSync } from "node:fs";
import { startHost, launchBrowser, openConsole, login, repo, runCli, spawnCli, moonlightPair, moonlightHold, decodeQr } from "./harness.mjs";

const shots = process.env.PUNKTFUNK_SCREENSHOTS || join(repo, "target", "screenshots");
mkdirSync(shots, { recursive: true });
let browser;

before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

test("a wrong password is refused and the fingerprint is shown before login", async () => {
  const host = await startHost();
  try {
    const { page, context, problems } = await openConsole(browser, host);
    await page.waitForSelector("#login-view:not([hidden])");
    const fp = await page.textContent("#login-fingerprint");
    assert.match(fp, /^([0-9A-F]{4} ){15}[0-9A-F]{4}$/);
    await page.fill("#password", "definitely wrong");
    await page.click("#login-form button[type=submit]");
    await page.waitForFunction(() => document.querySelector("#login-error").textContent.length > 0);
    assert.equal(await page.textContent("#login-error"), "Wrong password.");
    assert.ok(await page.isHidden("#app-view"));
    await page.screenshot({ path: join(shots, "console-login.png") });
    assert.deepEqual(problems.filter((p) => !p.includes("401")), []);
    await context.close();
  } finally { host.stop(); }
});

test("log in, arm pairing, read the PIN and its countdown, disarm, log out", async () => {
  const host = await startHost(["--native"]);
  try {
    const { page, context, problems } = await openConsole(browser, host);
    await login(page, host.password);
    assert.equal(await page.isVisible("#arm"), true);
    await page.click("#arm");
    await page.waitForSelector("#armed:not([hidden])");
    const pin = (await page.textContent("#pin")).trim();
    assert.match(pin, /^[0-9]{4}$/);
    // The page shows the PIN the host armed.
    const state = await page.evaluate(async () => (await fetch("/api/pairing")).json());
    assert.equal(state.armed.pin, pin);
    const left = await page.textContent("#pin-left");
    assert.match(left, /^[23] min \d\d s$/);
    await page.screenshot({ path: join(shots, "console-armed.png") });
    await page.click("#disarm");
    await page.waitForSelector("#disarmed:not([hidden])");
    assert.equal((await page.evaluate(async () => (await fetch("/api/pairing")).json())).armed, null);
    await page.click("#logout");
    await page.waitForSelector("#login-view:not([hidden])");
    const after = await page.evaluate(async () => (await fetch("/api/pairing")).status);
    assert.equal(after, 401);
    assert.deepEqual(problems.filter((p) => !p.includes("401")), []);
    await context.close();
  } finally { host.stop(); }
});

test("the page is served with a strict Content-Security-Policy and no external resources", async () => {
  const host = await startHost(["--native"]);
  try {
    const { page, context } = await openConsole(browser, host);
    const external = [];
    page.on("request", (r) => { if (!r.url().startsWith(host.console)) external.push(r.url()); });
    const resp = await page.goto(host.console + "/");
    const csp = resp.headers()["content-security-policy"];
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    await login(page, host.password);
    assert.deepEqual(external, []);
    // Keyboard only: Tab reaches the arm button and Enter arms.
    await page.focus("#arm");
    await page.keyboard.press("Enter");
    await page.waitForSelector("#armed:not([hidden])");
    await context.close();
  } finally { host.stop(); }
});

test("a native device knocks, appears without a reload, is approved with a label, renamed and removed", async () => {
  const host = await startHost(["--native"]);
  const clientDir = join(host.dir, "client");
  const nativeAddr = host.urls.native.replace(/^tls:\/\//, "");
  try {
    const { page, context, problems } = await openConsole(browser, host);
    await login(page, host.password);
    // A device name with markup: it must show up as text, never as HTML.
    const evil = `<img src=x onerror="document.body.dataset.pwned=1"><b>Tablet</b>`;
    const knock = spawnCli(["connect", nativeAddr, "--client-dir", clientDir, "--name", evil, "--wait", "--accept-new-host"]);
    const card = page.locator("#pending li.card[data-kind=native]");
    await card.waitFor({ timeout: 20000 });
    assert.equal(await card.locator(".name").textContent(), evil.replace(/[\u0000-\u001f]/g, ""));
    assert.equal(await page.evaluate(() => document.body.dataset.pwned), undefined);
    assert.equal(await page.locator("#pending img, #pending b").count(), 0);
    assert.match(await card.locator(".time-left").textContent(), /expires in [45] min/);
    await page.screenshot({ path: join(shots, "console-waiting.png") });
    await card.locator("input[name=label]").fill("Living Room TV");
    await card.locator("button.approve").click();
    const row = page.locator("#devices tbody tr");
    await row.waitFor();
    assert.equal(await row.locator(".label").textContent(), "Living Room TV");
    assert.equal(await knock.done, 0, `connect --wait: ${knock.stdout} ${knock.stderr}`);
    assert.equal(knock.stdout.trim().split("\n").pop(), "trusted");
    // Its next connect goes straight through.
    const again = runCli(["connect", nativeAddr, "--client-dir", clientDir]);
    assert.equal(again.status, 0, again.stderr);
    assert.equal(again.stdout.trim().split("\n").pop(), "trusted");
    await page.screenshot({ path: join(shots, "console-devices.png") });

    // Rename.
    await row.locator("button.rename").click();
    await row.locator("input.rename-input").fill("Kitchen iPad");
    await row.locator("input.rename-input").press("Enter");
    await page.waitForFunction(() => document.querySelector("#devices tbody tr .label")?.textContent === "Kitchen iPad");
    const api = await page.evaluate(async () => (await fetch("/api/pairing")).json());
    assert.equal(api.devices[0].label, "Kitchen iPad");
    assert.equal(api.devices[0].via, "approval");

    // Readable on a phone: nothing wider than the screen, buttons reachable.
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `page is ${overflow}px wider than a phone screen`);
    assert.ok(await row.locator("button.remove").isVisible());
    await page.screenshot({ path: join(shots, "console-phone.png"), fullPage: true });
    await page.setViewportSize({ width: 1100, height: 900 });

    // Remove, confirming in the dialog; access ends at once.
    await row.locator("button.remove").click();
    await page.locator("#confirm-ok").click();
    await page.waitForSelector("#devices-empty:not([hidden])");
    const refused = runCli(["connect", nativeAddr, "--client-dir", clientDir]);
    assert.notEqual(refused.status, 0);
    assert.equal(refused.stdout.trim().split("\n").pop(), "approval_pending");
    assert.deepEqual(problems.filter((p) => !p.includes("401")), []);
    await context.close();
  } finally { host.stop(); }
});

test("a device's access is narrowed, given an end, disabled and enabled from the console, and the door agrees", async () => {
  const host = await startHost(["--native"]);
  const clientDir = join(host.dir, "client");
  const nativeAddr = host.urls.native.replace(/^tls:\/\//, "");
  try {
    const { page, context, problems } = await openConsole(browser, host);
    await login(page, host.password);
    const knock = spawnCli(["connect", nativeAddr, "--client-dir", clientDir, "--name", "Guest Phone", "--wait", "--accept-new-host"]);
    const card = page.locator("#pending li.card[data-kind=native]");
    await card.waitFor({ timeout: 20000 });
    // The grant picker: the host's default unless chosen (the first device gets Full anyway).
    assert.equal(await card.locator("select.grant-may").inputValue(), "");
    await card.locator("button.approve").click();
    const row = page.locator("#devices tbody tr");
    await row.waitFor();
    assert.equal(await knock.done, 0, knock.stderr);
    // The host's first device may do everything.
    await page.waitForFunction(() => document.querySelector("#devices .access-words")?.textContent === "Full");
    // A second device approved as Gamepad only for a day.
    const second = spawnCli(["connect", nativeAddr, "--client-dir", join(host.dir, "second"), "--name", "Kid's Tablet", "--wait", "--accept-new-host"]);
    const card2 = page.locator("#pending li.card[data-kind=native]");
    await card2.waitFor({ timeout: 20000 });
    await card2.locator("select.grant-may").selectOption("gamepad");
    await card2.locator("select.grant-for").selectOption("86400");
    await card2.locator("button.approve").click();
    assert.equal(await second.done, 0, second.stderr);
    await page.waitForFunction(() => [...document.querySelectorAll("#devices .access-words")].some((e) => /^Gamepad only · until /.test(e.textContent)));
    // Removed again, so the rest is about the one device.
    await page.locator("#devices tbody tr", { hasText: "Kid's Tablet" }).locator("button.remove").click();
    await page.locator("#confirm-ok").click();
    await page.waitForFunction(() => document.querySelectorAll("#devices tbody tr").length === 1);

    // Disable: the door refuses it with its own answer, and the row says so.
    await row.locator("button.toggle-enabled").click();
    await page.waitForFunction(() => document.querySelector("#devices .access-words")?.textContent === "Disabled");
    const refused = runCli(["connect", nativeAddr, "--client-dir", clientDir]);
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /disabled/, refused.stderr);
    assert.equal(await row.locator("button.toggle-enabled").textContent(), "Enable");
    await row.locator("button.toggle-enabled").click();
    await page.waitForFunction(() => document.querySelector("#devices .access-words")?.textContent === "Full");
    const back = runCli(["connect", nativeAddr, "--client-dir", clientDir]);
    assert.equal(back.stdout.trim().split("\n").pop(), "trusted", back.stderr);

    // Narrow it to Watch for an hour in the dialog.
    await row.locator("button.access").click();
    const dialog = page.locator("#access-dialog");
    await dialog.waitFor();
    assert.equal(await page.locator("#perm-input_kbd").isChecked(), true);
    await page.locator("#access-preset").selectOption("watch");
    assert.equal(await page.locator("#perm-input_kbd").isChecked(), false, "the preset sets the boxes");
    assert.equal(await page.locator("#perm-view").isChecked(), true);
    await page.locator("#access-until").selectOption("1h");
    await page.screenshot({ path: join(shots, "console-access.png") });
    await page.locator("#access-save").click();
    await page.waitForFunction(() => /^Watch · until /.test(document.querySelector("#devices .access-words")?.textContent || ""));
    const api = await page.evaluate(async () => (await fetch("/api/devices")).json());
    const d = api.devices[0];
    assert.equal(d.preset, "watch");
    assert.deepEqual(d.permissions, ["list", "view"]);
    const inAnHour = Date.now() / 1000 + 3600;
    assert.ok(Math.abs(d.expires_at - inAnHour) < 120, `${d.expires_at} vs ${inAnHour}`);
    // A box ticked by hand makes it custom.
    await row.locator("button.access").click();
    await page.locator("#perm-input_controller").check();
    assert.equal(await page.locator("#access-preset").inputValue(), "custom");
    await page.locator("#access-until").selectOption("never");
    await page.locator("#access-save").click();
    await page.waitForFunction(() => document.querySelector("#devices .access-words")?.textContent === "Custom");
    assert.deepEqual(problems.filter((p) => !p.includes("401")), []);
    await context.close();
  } finally { host.stop(); }
});

test("a guest invite pairs the reference client once, as Watch for 4 hours", async () => {
  const host = await startHost(["--native"]);
  try {
    const { page, context, problems } = await openConsole(browser, host);
    await login(page, host.password);
    // The host's first device (the owner's) gets Full whatever is asked.
    const owner = runCli(["pair", "--link", await armedLink(page), "--name", "Owner", "--client-dir", join(host.dir, "owner")]);
    assert.equal(owner.status, 0, owner.stderr);
    // The PIN ceremony's picker: the next device paired this way may only watch.
    await page.locator("#may-arm").selectOption("watch");
    const watcher = runCli(["pair", "--link", await armedLink(page), "--name", "Watcher", "--client-dir", join(host.dir, "watcher")]);
    assert.equal(watcher.status, 0, watcher.stderr);
    await page.waitForFunction(() => [...document.querySelectorAll("#devices .access-words")].some((e) => e.textContent === "Watch"));
    await page.locator("#may-arm").selectOption("");
    await page.locator("#invite-preset").selectOption("watch");
    await page.locator("#invite-for").selectOption("14400");
    await page.locator("#invite-app").click();
    await page.waitForFunction(() => /Guest invite made/.test(document.querySelector("#status").textContent));
    const link = (await page.locator("#pair-link").textContent()).trim();
    assert.match(await page.locator("#pin-left").textContent(), /1[45] min/, "the invite lasts 15 minutes");
    const guest = runCli(["pair", "--link", link, "--name", "Guest Phone", "--client-dir", join(host.dir, "guest")]);
    assert.equal(guest.status, 0, guest.stderr);
    await page.waitForFunction(() => [...document.querySelectorAll("#devices .access-words")].some((e) => /^Guest · Watch · until /.test(e.textContent)));
    const api = await page.evaluate(async () => (await fetch("/api/devices")).json());
    const g = api.devices.find((d) => d.name === "Guest Phone");
    assert.equal(g.preset, "watch");
    assert.equal(g.guest, true);
    assert.equal(api.devices.find((d) => d.name === "Watcher").guest, false, "the grant picker makes no guest");
    assert.ok(Math.abs(g.expires_at - (Date.now() / 1000 + 4 * 3600)) < 120, `${g.expires_at}`);
    assert.equal(api.devices.find((d) => d.name === "Owner").preset, "full");
    assert.equal(api.devices.find((d) => d.name === "Watcher").preset, "watch");
    // Single use: the link is spent.
    const again = runCli(["pair", "--link", link, "--name", "Second", "--client-dir", join(host.dir, "second")]);
    assert.notEqual(again.status, 0);
    await page.locator("#devices-section").screenshot({ path: join(shots, "console-guest.png") });
    assert.deepEqual(problems.filter((p) => !p.includes("401")), []);
    await context.close();
  } finally { host.stop(); }
});

/** Arms pairing in the page and reads its link. */
async function armedLink(page) {
  await page.locator("#arm").click();
  await page.locator("#pair-link").waitFor();
  return (await page.locator("#pair-link").textContent()).trim();
}

test("a knock that is denied disappears and the device can knock again", async () => {
  const host = await startHost(["--native"]);
  const clientDir = join(host.dir, "client");
  const nativeAddr = host.urls.native.replace(/^tls:\/\//, "");
  try {
    const { page, context } = await openConsole(browser, host);
    await login(page, host.password);
    const knock = spawnCli(["connect", nativeAddr, "--client-dir", clientDir, "--name", "Phone", "--wait", "--accept-new-host"]);
    const card = page.locator("#pending li.card[data-kind=native]");
    await card.waitFor({ timeout: 20000 });
    await card.locator("button.deny").click();
    await page.waitForSelector("#pending-empty:not([hidden])");
    assert.notEqual(await knock.done, 0);
    assert.match(knock.stderr + knock.stdout, /error: denied/);
    const second = runCli(["connect", nativeAddr, "--client-dir", clientDir, "--name", "Phone", "--accept-new-host"]);
    assert.equal(second.stdout.trim().split("\n").pop(), "approval_pending");
    await page.locator("#pending li.card[data-kind=native]").waitFor({ timeout: 20000 });
    await context.close();
  } finally { host.stop(); }
});

test("Deny all dismisses every waiting request, names are isolated, and a burned arming names who used it", async () => {
  const host = await startHost(["--native"]);
  const nativeAddr = host.urls.native.replace(/^tls:\/\//, "");
  try {
    const { page, context } = await openConsole(browser, host);
    await login(page, host.password);
    assert.ok(await page.locator("#deny-all").isHidden());
    // Two knocks; one name carries a right-to-left override, which the host removes.
    for (const [dir, name] of [["a", "Tablet\u202e"], ["b", "Phone"]]) {
      const r = runCli(["connect", nativeAddr, "--client-dir", join(host.dir, dir), "--name", name, "--accept-new-host"]);
      assert.equal(r.stdout.trim().split("\n").pop(), "approval_pending", r.stderr);
    }
    await page.waitForFunction(() => document.querySelectorAll("#pending li.card").length === 2, null, { timeout: 20000 });
    const names = await page.locator("#pending .name").allTextContents();
    assert.deepEqual(names.sort(), ["Phone", "Tablet"]);
    const bidi = await page.locator("#pending .name").first().evaluate((n) => getComputedStyle(n).unicodeBidi);
    assert.equal(bidi, "isolate");
    await page.locator("#deny-all").click();
    await page.waitForSelector("#pending-empty:not([hidden])");
    assert.match(await page.locator("#status").textContent(), /Dismissed 2 waiting requests/);
    assert.ok(await page.locator("#deny-all").isHidden());

    // A wrong PIN uses up the PIN; the page says who tried it, and that the
    // QR code still pairs.
    await page.locator("#arm").click();
    const pin = (await page.locator("#pin").textContent()).trim();
    const wrong = String((Number(pin) + 1) % 10000).padStart(4, "0");
    const r = runCli(["pair", nativeAddr, "--pin", wrong, "--name", "Guesser", "--client-dir", join(host.dir, "g")]);
    assert.notEqual(r.status, 0);
    const attempt = page.locator("#attempt");
    await page.waitForFunction(() => /wrong guess/.test(document.querySelector("#attempt")?.textContent || ""), null, { timeout: 20000 });
    assert.match(await attempt.textContent(), /PIN used up by a wrong guess from Guesser at 127\.0\.0\.1 \(([0-9A-F]{4} ){3}[0-9A-F]{4}…/);
    assert.equal(await attempt.locator("bdi").textContent(), "Guesser");
    assert.match(await attempt.textContent(), /The QR code still pairs/);
    assert.ok(await page.locator("#pin").evaluate((n) => n.classList.contains("used")));
    await page.screenshot({ path: join(shots, "console-pin-used-up.png") });
    await context.close();
  } finally { host.stop(); }
});

test("Moonlight waits for its PIN, the PIN is typed into the page, and the page shows paired", async () => {
  const host = await startHost();
  try {
    const { page, context, problems } = await openConsole(browser, host);
    await login(page, host.password);
    const moonlight = moonlightPair(join(host.dir, "moonlight"), host.urls["gamestream-http"], "4719");
    const card = page.locator("#pending li.card[data-kind=gamestream]");
    await card.waitFor({ timeout: 30000 });
    assert.match(await card.locator(".kind").textContent(), /Moonlight/);
    await page.screenshot({ path: join(shots, "console-moonlight.png") });
    await card.locator("input[name=pin]").fill("4719");
    await card.locator("input[name=label]").fill("Steam Deck");
    await card.locator("button[type=submit]").click();
    await page.waitForFunction(() => document.querySelector("#pending li.card[data-kind=gamestream]")?.dataset.result,
      null, { timeout: 60000 });
    assert.equal(await card.getAttribute("data-result"), "paired");
    // This service pairs and keeps trust; streaming is the streamer's.
    assert.match(await card.locator(".result").textContent(), /^Paired: this host now trusts the device\. Streaming itself is the job of the host's streamer\.$/);
    assert.equal(await moonlight.done, 0, moonlight.stderr);
    assert.equal(moonlight.result().result, "paired");
    const row = page.locator("#devices tbody tr");
    await row.waitFor();
    assert.equal(await row.locator(".label").textContent(), "Steam Deck");
    assert.match(await row.textContent(), /Moonlight/);
    assert.deepEqual(problems.filter((p) => !p.includes("401")), []);
    await context.close();
  } finally { host.stop(); }
});

test("a wrong Moonlight PIN typed into the page shows that it was rejected", async () => {
  const host = await startHost();
  try {
    const { page, context } = await openConsole(browser, host);
    await login(page, host.password);
    // A salt for which 2222 cannot meet moonlight-qt's key bug: a plain wrong PIN.
    const moonlight = moonlightPair(join(host.dir, "moonlight"), host.urls["gamestream-http"], "1111",
      ["--salt-clean", "2222"]);
    const card = page.locator("#pending li.card[data-kind=gamestream]");
    await card.waitFor({ timeout: 30000 });
    await card.locator("input[name=pin]").fill("2222");
    await card.locator("button[type=submit]").click();
    await page.waitForFunction(() => document.querySelector("#pending li.card[data-kind=gamestream]")?.dataset.result,
      null, { timeout: 60000 });
    assert.equal(await card.getAttribute("data-result"), "pin_rejected");
    assert.match(await card.locator(".result").textContent(), /Wrong PIN/);
    await moonlight.done;
    assert.notEqual(moonlight.result().result, "paired");
    assert.equal(await page.locator("#devices tbody tr").count(), 0);
    await context.close();
  } finally { host.stop(); }
});

test("a right PIN that meets moonlight-qt's key bug is not called a wrong PIN: the page says to pair again", async () => {
  const host = await startHost();
  try {
    const { page, context } = await openConsole(browser, host);
    await login(page, host.password);
    // moonlight-qt's key derivation, with a salt that breaks it (client.py).
    const moonlight = moonlightPair(join(host.dir, "moonlight"), host.urls["gamestream-http"], "3141",
      ["--salt-zero", "3141", "--qt-key"]);
    const card = page.locator("#pending li.card[data-kind=gamestream]");
    await card.waitFor({ timeout: 30000 });
    await card.locator("input[name=pin]").fill("3141");
    await card.locator("button[type=submit]").click();
    await page.waitForFunction(() => document.querySelector("#pending li.card[data-kind=gamestream]")?.dataset.result,
      null, { timeout: 60000 });
    assert.equal(await card.getAttribute("data-result"), "moonlight_qt_bug");
    const text = await card.locator(".result").textContent();
    assert.doesNotMatch(text, /Wrong PIN/);
    assert.match(text, /known bug in Moonlight/);
    assert.match(text, /Press Pair in Moonlight again and enter the new PIN it shows/);
    assert.match(await card.locator(".result").getAttribute("class"), /\bbad\b/);
    await page.screenshot({ path: join(shots, "console-moonlight-qt-bug.png") });
    await moonlight.done;
    assert.equal(moonlight.result().result, "wrong_pin");
    assert.equal(await page.locator("#devices tbody tr").count(), 0);
    // Activity says the same, not "Wrong PIN".
    const row = page.locator("#activity tbody tr[data-event=moonlight_bug]");
    await row.waitFor({ timeout: 30000 });
    assert.match(await row.textContent(), /known Moonlight bug/);
    assert.equal(await page.locator("#activity tbody tr[data-event=pin_rejected]").count(), 0);
    await context.close();
  } finally { host.stop(); }
});

test("a one-time PIN's QR code decodes to Apollo's link, and a Moonlight client pairs with it while nobody types", async () => {
  const host = await startHost([]);
  try {
    const { page, context } = await openConsole(browser, host);
    await login(page, host.password);
    // The passphrase is generated and editable.
    const pass = await page.locator("#otp-passphrase").inputValue();
    assert.match(pass, /^[A-Za-z0-9]{12}$/);
    await page.locator("#otp-name").fill("Steam Deck");
    await page.locator("#otp-create").click();
    const qr = page.locator("#otp-qr");
    await qr.waitFor();
    assert.equal(await qr.getAttribute("alt"), "QR code for pairing a Moonlight client");
    const link = await decodeQr(qr, join(shots, "otp-qr.png"));
    assert.equal(link, (await page.locator("#otp-link").textContent()).trim());
    const url = new URL(link);
    assert.equal(url.protocol, "art:");
    assert.equal(url.host, new URL(host.urls["gamestream-http"]).host);
    const pin = url.searchParams.get("pin");
    assert.equal(pin, (await page.locator("#otp-pin").textContent()).trim());
    assert.equal(url.searchParams.get("passphrase"), pass);
    await page.screenshot({ path: join(shots, "console-otp.png") });

    // A stranger's wrong try (another address, no passphrase) shows up at
    // once and leaves the PIN usable.
    assert.ok(await page.locator("#otp-tries").isHidden());
    const stranger = moonlightPair(join(host.dir, "stranger"), host.urls["gamestream-http"], pin, ["--otp", "NotThePass1", "--source", "127.0.9.66"]);
    await stranger.done;
    assert.notEqual(stranger.result().result, "paired", stranger.stdout);
    await page.locator("#otp-tries:not([hidden])").waitFor({ timeout: 20000 });
    assert.match(await page.locator("#otp-tries-text").textContent(), /^1 wrong try so far; 4 left/);
    assert.deepEqual(await page.locator("#otp-tries-list code").allTextContents(), ["127.0.9.66"]);
    assert.equal((await page.locator("#otp-pin").textContent()).trim(), pin);
    await page.screenshot({ path: join(shots, "console-otp-wrong-try.png") });

    // The Moonlight client (sending otpauth as Artemis does) pairs; the page follows.
    const moon = moonlightPair(join(host.dir, "moon"), host.urls["gamestream-http"], pin, ["--otp", url.searchParams.get("passphrase")]);
    assert.equal(await moon.done, 0, moon.stderr);
    assert.equal(moon.result().result, "paired", moon.stdout);
    await page.waitForFunction(() => /Paired the device at/.test(document.querySelector("#otp-last")?.textContent || ""), null, { timeout: 20000 });
    const row = page.locator("#devices tbody tr");
    await row.waitFor();
    assert.equal(await row.locator(".label").textContent(), "Steam Deck");
    assert.match(await row.textContent(), /one-time PIN/);
    assert.ok(await page.locator("#otp-form").isVisible());

    // Activity in words that fit a one-time PIN: nobody's PIN is waited
    // for, and the stranger's try failed on the one-time PIN or the
    // passphrase (otpauth cannot tell which), not on a client that gave up.
    const rejected = page.locator('#activity tbody tr[data-event="pin_rejected"]');
    await rejected.waitFor({ timeout: 20000 });
    assert.equal(await rejected.locator(".event").textContent(), "Pairing with the one-time PIN failed");
    assert.equal(await rejected.locator(".detail").textContent(), "wrong one-time PIN or passphrase");
    const tried = page.locator('#activity tbody tr[data-event="otp_used"][data-outcome="failed"]');
    assert.equal(await tried.locator(".event").textContent(), "Wrong one-time PIN or passphrase");
    const asked = page.locator('#activity tbody tr[data-event="request_waiting"]');
    assert.deepEqual(await asked.locator(".detail").allTextContents(),
      Array(2).fill("pairs with the one-time PIN; nothing to type in the console"));
    const words = await page.textContent("#activity");
    assert.doesNotMatch(words, /waits for the PIN Moonlight shows|gave up|native request|gamestream request|door/);
    await page.locator("#activity-section").screenshot({ path: join(shots, "console-activity-otp.png") });
    await context.close();
  } finally { host.stop(); }
});

/** Waits until the page's status line matches `re` (it is set once the API answered). */
async function said(page, re) {
  await page.waitForFunction((src) => new RegExp(src).test(document.querySelector("#status").textContent),
    re.source, { timeout: 20000 });
}

test("the waiting list groups requests by address, a flooding one last, and dismisses or blocks one address", async () => {
  const host = await startHost(["--native"]);
  const nativeAddr = host.urls.native.replace(/^tls:\/\//, "");
  const holds = [];
  const http = host.urls["gamestream-http"];
  // Knocks from 127.0.0.1 (each a new device); they stay listed after the CLI exits.
  const knock = (name) => {
    const r = runCli(["connect", nativeAddr, "--client-dir", join(host.dir, name), "--name", name, "--accept-new-host"]);
    assert.equal(r.stdout.trim().split("\n").pop(), "approval_pending", r.stderr);
  };
  try {
    const { page, context, problems } = await openConsole(browser, host);
    await login(page, host.password);
    // A flooding address asks three times, then a Moonlight at another address once.
    for (const i of [1, 2, 3]) knock(`flood${i}`);
    await page.waitForFunction(() => document.querySelectorAll("#pending li.card").length === 3, null, { timeout: 30000 });
    const deck = moonlightHold(join(host.dir, "deck"), http, "127.0.9.2");
    holds.push(deck);
    await deck.sent;
    await page.waitForFunction(() => document.querySelectorAll("#pending li.card").length === 4, null, { timeout: 30000 });
    // The address with one request comes first.
    const groups = await page.locator("#pending > li.group").evaluateAll((gs) =>
      gs.map((g) => [g.dataset.address, g.querySelectorAll("li.card").length, g.querySelector(".count").textContent]));
    assert.deepEqual(groups, [["127.0.9.2", 1, "1 request"], ["127.0.0.1", 3, "3 requests"]]);
    await page.screenshot({ path: join(shots, "console-waiting-groups.png") });

    // Deny all from this address: the other address's request stays.
    const flood = page.locator('#pending > li.group[data-address="127.0.0.1"]');
    await flood.locator("button.deny-address").click();
    await flood.waitFor({ state: "detached", timeout: 20000 });
    await said(page, /Dismissed 3 waiting requests from 127\.0\.0\.1/);
    assert.equal(await page.locator("#pending li.card").count(), 1);

    // It asks again; Block this address for 1 hour.
    knock("flood4");
    await flood.waitFor({ timeout: 20000 });
    await flood.locator("button.block-address").click();
    const blocked = page.locator('#blocks > li[data-address="127.0.0.1"]');
    await blocked.waitFor({ timeout: 20000 });
    await flood.waitFor({ state: "detached", timeout: 20000 });
    assert.match(await blocked.locator(".time-left").textContent(), /^for (59|60) min/);
    await said(page, /Blocked 127\.0\.0\.1 for 1 hour; dismissed 1 waiting request\./);
    // While blocked, its requests are refused at both doors and never listed.
    const refused = moonlightPair(join(host.dir, "moon"), http, "1234");
    await refused.done;
    assert.equal(refused.result().status, 503, refused.stdout);
    const r = runCli(["connect", nativeAddr, "--client-dir", join(host.dir, "flood5"), "--accept-new-host"]);
    assert.notEqual(r.status, 0);
    assert.match(r.stdout + r.stderr, /blocked/);
    assert.equal(await page.locator("#pending li.card").count(), 1);
    await page.screenshot({ path: join(shots, "console-blocked.png") });

    // Lift the block: the list of blocks goes away, and the address is heard again.
    await blocked.locator("button.lift").click();
    await page.locator("#blocks-box").waitFor({ state: "hidden", timeout: 20000 });
    await said(page, /Lifted the block of 127\.0\.0\.1/);
    knock("flood6");
    await flood.waitFor({ timeout: 20000 });
    assert.deepEqual(problems.filter((p) => !p.includes("401")), []);
    await context.close();
  } finally {
    for (const h of holds) h.release();
    host.stop();
  }
});

test("the armed PIN's QR code decodes to a pairing link that pins this host, and the reference client pairs with it", async () => {
  const host = await startHost(["--native"]);
  const nativeAddr = host.urls.native.replace(/^tls:\/\//, "");
  try {
    const { page, context } = await openConsole(browser, host);
    await login(page, host.password);
    await page.locator("#arm").click();
    const qr = page.locator("#pair-qr");
    await qr.waitFor();
    assert.equal(await qr.getAttribute("alt"), "QR code for pairing");
    await page.screenshot({ path: join(shots, "console-armed-qr.png") });
    const link = await decodeQr(qr, join(shots, "pair-qr.png"));
    assert.equal(link, (await page.locator("#pair-link").textContent()).trim());
    const url = new URL(link);
    assert.equal(url.protocol, "punktfunk:");
    assert.equal(url.searchParams.get("v"), "2");
    // The link's own one-time secret (128 bits), not the typed PIN.
    assert.match(url.searchParams.get("s"), /^[0-9a-f]{32}$/);
    assert.equal(url.searchParams.get("pin"), null);
    const fp = runCli(["fingerprint", "--hex", "--state-dir", host.stateDir]).stdout.trim();
    assert.equal(url.searchParams.get("fp"), fp);
    assert.equal(url.searchParams.get("port"), nativeAddr.split(":").pop());

    // The scanned link is all the client needs: no host, no PIN typed, no prompt.
    const clientDir = join(host.dir, "scanner");
    const r = runCli(["pair", "--link", link, "--name", "Scanner", "--client-dir", clientDir]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim().split("\n").pop(), "paired");
    await page.waitForFunction(() => /Paired Scanner with the PIN/.test(document.querySelector("#attempt")?.textContent || ""), null, { timeout: 20000 });
    const again = runCli(["connect", nativeAddr, "--client-dir", clientDir]);
    assert.equal(again.stdout.trim().split("\n").pop(), "trusted", again.stderr);
    await context.close();
  } finally { host.stop(); }
});

/** The Activity rows as "event" or "event:outcome", newest first. */
function activityRows(page) {
  return page.locator("#activity tbody tr").evaluateAll((trs) => trs.map((tr) =>
    tr.dataset.outcome === "ok" ? tr.dataset.event : `${tr.dataset.event}:${tr.dataset.outcome}`));
}

/** Waits until the Activity rows are exactly `expected` (newest first). */
async function waitForActivity(page, expected, timeout = 10000) {
  try {
    await page.waitForFunction((want) => JSON.stringify([...document.querySelectorAll("#activity tbody tr")].map((tr) =>
      tr.dataset.outcome === "ok" ? tr.dataset.event : `${tr.dataset.event}:${tr.dataset.outcome}`)) === want,
    JSON.stringify(expected), { timeout, polling: 100 });
  } catch (e) {
    assert.deepEqual(await activityRows(page), expected);
    throw e;
  }
}

test("Activity shows the audit trail live, newest first, in words, filters by device and pages with Older", async () => {
  const host = await startHost(["--native"]);
  const nativeAddr = host.urls.native.replace(/^tls:\/\//, "");
  // Times are shown in the browser's zone and language.
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1100, height: 900 },
    locale: "en-GB", timezoneId: "Europe/Berlin" });
  // Fake timers: once paused, the page's slow poll never fires, so every
  // update below comes through the event stream.
  await context.clock.install();
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
  const requests = [];
  page.on("request", (r) => requests.push(new URL(r.url()).pathname));
  const notFound = [];
  page.on("response", (r) => { if (r.status() === 404) notFound.push(new URL(r.url()).pathname); });
  try {
    await page.goto(host.console + "/");
    await page.waitForSelector("#login-view:not([hidden])");
    // A failed login, then the right one.
    await page.fill("#password", "not the password at all");
    await page.click("#login-form button[type=submit]");
    await page.waitForFunction(() => document.querySelector("#login-error").textContent === "Wrong password.");
    await login(page, host.password);
    await page.clock.pauseAt(Date.now() + 1000);
    await page.evaluate(() => { window.notReloaded = true; });
    const trail = ["login", "login:failed", "host_identity_created"];
    await waitForActivity(page, trail);

    // Arm, then disarm.
    await page.click("#arm");
    await page.waitForSelector("#armed:not([hidden])");
    trail.unshift("pairing_armed");
    await waitForActivity(page, trail);
    await page.click("#disarm");
    await page.waitForSelector("#disarmed:not([hidden])");
    trail.unshift("pairing_disarmed");
    await waitForActivity(page, trail);

    // A native knock, approved with a label, renamed, removed.
    const knock = spawnCli(["connect", nativeAddr, "--client-dir", join(host.dir, "tablet"), "--name", "Tablet", "--wait", "--accept-new-host"]);
    const card = page.locator("#pending li.card[data-kind=native]");
    await card.waitFor({ timeout: 20000 });
    trail.unshift("request_waiting");
    await waitForActivity(page, trail);
    await card.locator("input[name=label]").fill("Living Room TV");
    await card.locator("button.approve").click();
    assert.equal(await knock.done, 0, `connect --wait: ${knock.stdout} ${knock.stderr}`);
    trail.unshift("paired", "request_approved");
    await waitForActivity(page, trail);
    const row = page.locator("#devices tbody tr");
    await row.locator("button.rename").click();
    await row.locator("input.rename-input").fill("Kitchen iPad");
    await row.locator("input.rename-input").press("Enter");
    trail.unshift("renamed");
    await waitForActivity(page, trail);
    await row.locator("button.remove").click();
    await page.locator("#confirm-ok").click();
    await page.waitForSelector("#devices-empty:not([hidden])");
    trail.unshift("revoked");
    await waitForActivity(page, trail);

    // Another device knocks and is denied.
    const phone = spawnCli(["connect", nativeAddr, "--client-dir", join(host.dir, "phone"), "--name", "Phone", "--wait", "--accept-new-host"]);
    await card.waitFor({ timeout: 20000 });
    trail.unshift("request_waiting");
    await waitForActivity(page, trail);
    await card.locator("button.deny").click();
    assert.notEqual(await phone.done, 0);
    trail.unshift("request_denied");
    await waitForActivity(page, trail);
    assert.deepEqual(trail, ["request_denied", "request_waiting", "revoked", "renamed", "paired", "request_approved",
      "request_waiting", "pairing_disarmed", "pairing_armed", "login", "login:failed", "host_identity_created"]);

    // Newest first by the trail's own numbering, and in words a person reads.
    const rows = await page.locator("#activity tbody tr").evaluateAll((trs) => trs.map((tr) => ({
      seq: Number(tr.dataset.seq),
      fp: tr.dataset.fp,
      what: tr.querySelector(".event").textContent,
      outcome: tr.querySelector(".outcome")?.textContent ?? null,
      device: tr.querySelector(".device bdi")?.textContent ?? null,
      by: tr.querySelector(".by").textContent,
      at: tr.querySelector("time").getAttribute("title"),
      local: tr.querySelector("time").textContent,
    })));
    for (let i = 1; i < rows.length; i++) assert.ok(rows[i - 1].seq > rows[i].seq, "newest first");
    const loopback = "from 127.0.0.1";
    assert.deepEqual(rows.map((r) => [r.what, r.outcome, r.device, r.by]), [
      ["Request denied", null, "Phone", `Console ${loopback}`],
      ["Asked to pair", null, "Phone", `punktfunk app ${loopback}`],
      ["Removed", null, "Kitchen iPad", `Console ${loopback}`],
      ["Renamed", null, "Kitchen iPad", `Console ${loopback}`],
      ["Paired (approved in the console)", null, "Living Room TV", `punktfunk app ${loopback}`],
      ["Request approved", null, "Living Room TV", `Console ${loopback}`],
      ["Asked to pair", null, "Tablet", `punktfunk app ${loopback}`],
      ["Pairing disarmed", null, null, `Console ${loopback}`],
      ["Pairing armed", null, null, `Console ${loopback}`],
      ["Logged in", null, null, `Console ${loopback}`],
      ["Login failed", "failed", null, `Console ${loopback}`],
      ["Host identity created", null, null, "Host"],
    ]);
    for (const r of rows) {
      assert.match(r.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      // One date form: YYYY-MM-DD HH:MM:SS in the browser's zone (Swedish
      // writes exactly that).
      assert.equal(r.local, new Date(r.at).toLocaleString("sv-SE", { timeZone: "Europe/Berlin" }));
    }
    const tablet = rows[2].fp, phoneFp = rows[0].fp;
    assert.match(tablet, /^[0-9a-f]{64}$/);
    assert.equal(rows[6].fp, tablet);
    assert.notEqual(phoneFp, tablet);
    assert.equal(await page.locator("#activity tbody tr").first().locator(".detail").textContent(), "punktfunk app request from 127.0.0.1");
    assert.ok(await page.locator("#activity-older").isHidden());
    assert.equal(await page.evaluate(() => window.notReloaded), true);
    await page.locator("#activity-section").screenshot({ path: join(shots, "console-activity.png") });

    // Readable on a phone: nothing wider than the screen.
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `page is ${overflow}px wider than a phone screen`);
    await page.locator("#activity-section").screenshot({ path: join(shots, "console-activity-phone.png") });
    await page.setViewportSize({ width: 1100, height: 900 });

    // A record with no other change (a failed login elsewhere) re-reads the
    // Activity list only, not the pairing state.
    const pairingReads = requests.filter((p) => p === "/api/pairing").length;
    const elsewhere = await browser.newContext({ ignoreHTTPSErrors: true });
    const failed = await elsewhere.request.post(host.console + "/api/login", { data: { password: "wrong again" } });
    assert.equal(failed.status(), 401);
    await elsewhere.close();
    trail.unshift("login:failed");
    await waitForActivity(page, trail);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(requests.filter((p) => p === "/api/pairing").length, pairingReads);

    // The filter: "All devices", then every device seen, by name and short fingerprint.
    const options = await page.locator("#activity-device option").evaluateAll((os) => os.map((o) => [o.value, o.textContent]));
    const short = (fp) => fp.slice(0, 16).toUpperCase().match(/.{4}/g).join(" ") + "…";
    assert.deepEqual(options, [
      ["", "All devices"],
      [tablet, `\u2068Kitchen iPad\u2069 · ${short(tablet)}`],
      [phoneFp, `\u2068Phone\u2069 · ${short(phoneFp)}`],
    ]);
    await page.selectOption("#activity-device", tablet);
    await waitForActivity(page, ["revoked", "renamed", "paired", "request_approved", "request_waiting"]);
    assert.deepEqual(new Set(await page.locator("#activity tbody tr").evaluateAll((trs) => trs.map((tr) => tr.dataset.fp))), new Set([tablet]));
    await page.selectOption("#activity-device", phoneFp);
    await waitForActivity(page, ["request_denied", "request_waiting"]);

    // A filtered list follows the trail live, with this device's records only.
    const again = spawnCli(["connect", nativeAddr, "--client-dir", join(host.dir, "phone"), "--name", "Phone", "--wait", "--accept-new-host"]);
    await card.waitFor({ timeout: 20000 });
    await waitForActivity(page, ["request_waiting", "request_denied", "request_waiting"]);
    await card.locator("button.deny").click();
    await again.done;
    await waitForActivity(page, ["request_denied", "request_waiting", "request_denied", "request_waiting"]);

    // More than a page: the newest 50, then "Older" reads the rest.
    await page.evaluate(async () => {
      const { csrf } = await (await fetch("/api/session")).json();
      for (let i = 0; i < 24; i++) {
        for (const path of ["/api/pairing/arm", "/api/pairing/disarm"]) {
          const r = await fetch(path, { method: "POST", headers: { "X-CSRF-Token": csrf } });
          if (!r.ok) throw new Error(`${path}: ${r.status}`);
        }
      }
    });
    await page.selectOption("#activity-device", "");
    const total = trail.length + 2 + 48;
    await page.waitForFunction(() => document.querySelectorAll("#activity tbody tr").length === 50, null, { polling: 100 });
    assert.ok(await page.locator("#activity-older").isVisible());
    await page.locator("#activity-older").click();
    await page.waitForFunction((n) => document.querySelectorAll("#activity tbody tr").length === n, total, { polling: 100 });
    assert.ok(await page.locator("#activity-older").isHidden());
    const seqs = await page.locator("#activity tbody tr").evaluateAll((trs) => trs.map((tr) => Number(tr.dataset.seq)));
    for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i - 1] > seqs[i], "newest first across pages");
    assert.deepEqual((await activityRows(page)).slice(-trail.length), trail);

    assert.equal(await page.evaluate(() => window.notReloaded), true);
    // Arming and disarming that fast, the page may ask for the QR code of a
    // PIN already gone (404); nothing else may fail.
    assert.deepEqual(notFound.filter((p) => p !== "/api/pairing/qr.svg"), []);
    assert.deepEqual(problems.filter((p) => !p.includes("401") && !p.includes("404")), []);
  } finally {
    await context.close();
    host.stop();
  }
});
