// Drives the real console page in headless Chromium against the real
// `punktfunk serve` binary.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { mkdirSync } from "node:fs";
import { startHost, launchBrowser, openConsole, login, repo } from "./harness.mjs";

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
  const host = await startHost();
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
  const host = await startHost();
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
