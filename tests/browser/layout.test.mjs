// The console page for the person at the host: what comes first, what can
// be tapped and copied, where a one-time PIN's link points, and what the
// page says when the punktfunk app's endpoint is off.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { mkdirSync } from "node:fs";
import { hostname } from "node:os";
import { startHost, launchBrowser, openConsole, login, repo, runCli, moonlightHold, decodeQr } from "./harness.mjs";

const shots = process.env.PUNKTFUNK_SCREENSHOTS || join(repo, "target", "screenshots");
mkdirSync(shots, { recursive: true });
const DESKTOP = { width: 1100, height: 900 };
const PHONE = { width: 390, height: 844 };
let browser;

before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

const ORDER = ["pending-section", "pair-section", "otp-section", "invite-section", "devices-section", "activity-section"];

/** The page's sections, top to bottom as drawn. */
function sectionsAsDrawn(page) {
  return page.locator("#app-view > section").evaluateAll((ss) => ss
    .map((s) => ({ id: s.id, top: s.getBoundingClientRect().top + window.scrollY }))
    .sort((a, b) => a.top - b.top)
    .map((s) => s.id));
}

test("waiting requests come first, then pairing, devices, Activity; on a phone Waiting for approval is on the first screen", async () => {
  const host = await startHost(["--native"]);
  let hold;
  try {
    const { page, context, problems } = await openConsole(browser, host);
    await login(page, host.password);
    hold = moonlightHold(join(host.dir, "deck"), host.urls["gamestream-http"], "127.0.9.2");
    await hold.sent;
    const card = page.locator("#pending li.card[data-kind=gamestream]");
    await card.waitFor({ timeout: 30000 });
    await page.waitForSelector("#activity tbody tr");
    for (const size of [DESKTOP, PHONE]) {
      await page.setViewportSize(size);
      assert.deepEqual(await page.locator("#app-view > section").evaluateAll((ss) => ss.map((s) => s.id)), ORDER);
      assert.deepEqual(await sectionsAsDrawn(page), ORDER, `drawn at ${size.width}px`);
    }
    // On a phone, before any scrolling: the heading and the field for
    // Moonlight's PIN.
    await page.setViewportSize(PHONE);
    await page.evaluate(() => window.scrollTo(0, 0));
    for (const target of [page.locator("#pending-title"), card.locator("input[name=pin]")]) {
      const box = await target.boundingBox();
      assert.ok(box && box.y >= 0 && box.y + box.height <= PHONE.height, `not on the first screen: ${JSON.stringify(box)}`);
    }
    assert.equal(await page.locator("#pending-title").textContent(), "Waiting for approval");
    // Arm too, so the pictures show the pairing card with its PIN, link and code.
    await page.click("#arm");
    await page.waitForSelector("#armed:not([hidden])");
    await page.locator("#pair-qr").evaluate((img) => img.complete || new Promise((r) => { img.onload = r; }));
    for (const colorScheme of ["light", "dark"]) {
      await page.emulateMedia({ colorScheme });
      for (const [name, size] of [["desktop", DESKTOP], ["phone", PHONE]]) {
        await page.setViewportSize(size);
        await page.screenshot({ path: join(shots, `console-order-${colorScheme}-${name}.png`), fullPage: true });
        await page.evaluate(() => window.scrollTo(0, 0));
        await page.screenshot({ path: join(shots, `console-order-${colorScheme}-${name}-first-screen.png`) });
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 0, `${colorScheme} ${name}: ${overflow}px wider than the screen`);
      }
    }
    assert.deepEqual(problems.filter((p) => !p.includes("401")), []);
    await context.close();
  } finally {
    hold?.release();
    host.stop();
  }
});

/** What the page put on the clipboard. */
function clipboard(page) { return page.evaluate(() => navigator.clipboard.readText()); }

/** Whether `first` is drawn above `second` (its bottom above the other's top). */
async function above(first, second) {
  const [a, b] = [await first.boundingBox(), await second.boundingBox()];
  return a.y + a.height <= b.y + 1;
}

test("every link is tappable and every code has a copy button; on a phone the link comes before its QR code", async () => {
  const host = await startHost(["--native"]);
  const nativeAddr = host.urls.native.replace(/^tls:\/\//, "");
  try {
    const { page, context, problems } = await openConsole(browser, host, { clipboard: true });
    await login(page, host.password);

    // The armed PIN and the pairing link.
    await page.click("#arm");
    await page.waitForSelector("#armed:not([hidden])");
    const pin = (await page.textContent("#pin")).trim();
    await page.click("#armed button[data-copy=pin]");
    assert.equal(await clipboard(page), pin);
    assert.equal(await page.textContent("#status"), "PIN copied.");
    const link = page.locator("#pair-link");
    const text = (await link.textContent()).trim();
    assert.match(text, /^punktfunk:\/\/pair\?/);
    assert.equal(await link.evaluate((a) => a.tagName), "A");
    assert.equal(await link.getAttribute("href"), text);
    await page.click("#copy-link");
    assert.equal(await clipboard(page), text);
    // Desktop: the code first (another device scans it); phone: the link first.
    const linkPart = page.locator("#pair-link-box .link-part");
    assert.ok(await above(page.locator("#pair-qr"), linkPart) ||
      (await page.locator("#pair-qr").boundingBox()).x < (await linkPart.boundingBox()).x);
    await page.setViewportSize(PHONE);
    assert.ok(await above(linkPart, page.locator("#pair-qr")), "on a phone the link comes first");
    assert.match(await linkPart.textContent(), /Open this link on the device/);
    await page.setViewportSize(DESKTOP);

    // A one-time PIN: which name the device gets, which name the client
    // shows this host under, the passphrase in the link, each copied.
    const name = await page.textContent("#host-name");
    await page.fill("#otp-name", "Steam Deck");
    await page.fill("#otp-passphrase", "bars & = pass");
    await page.click("#otp-create");
    await page.waitForSelector("#otp-active:not([hidden])");
    assert.equal(await page.textContent("#otp-for"), "The device that pairs with it will be named Steam Deck.");
    assert.equal(await page.textContent("#otp-host-name"), `The client lists this host as ${name}.`);
    const otpLink = page.locator("#otp-link");
    const art = (await otpLink.textContent()).trim();
    assert.equal(await otpLink.getAttribute("href"), art);
    const http = new URL(host.urls["gamestream-http"]);
    // Opened on loopback, which no other device can use: the first LAN
    // address (here, bound to loopback, that is 127.0.0.1 too).
    assert.ok(art.startsWith(`art://127.0.0.1:${http.port}?pin=`), art);
    const params = new URLSearchParams(art.slice(art.indexOf("?")));
    assert.equal(params.get("passphrase"), "bars & = pass");
    assert.equal(params.get("name"), name);
    assert.equal(await page.inputValue("#otp-address"), "127.0.0.1");
    for (const [id, want] of [["otp-pin", params.get("pin")], ["otp-pass", "bars & = pass"], ["otp-link", art]]) {
      await page.click(`button[data-copy=${id}]`);
      assert.equal(await clipboard(page), want, id);
    }
    await page.setViewportSize(PHONE);
    assert.ok(await above(page.locator("#otp-active .link-part"), page.locator("#otp-qr")), "on a phone the link comes first");
    await page.setViewportSize(DESKTOP);

    // The address in the link is editable (as in Apollo); the QR code follows.
    await page.fill("#otp-address", "192.0.2.44");
    const edited = `art://192.0.2.44:${http.port}${art.slice(art.indexOf("?"))}`;
    await page.waitForFunction((want) => document.querySelector("#otp-link").textContent === want, edited);
    assert.equal(await otpLink.getAttribute("href"), edited);
    await page.waitForFunction(() => document.querySelector("#otp-qr").getAttribute("src").includes("address=192.0.2.44"));
    assert.equal(await decodeQr(page.locator("#otp-qr"), join(shots, "otp-qr-edited.png")), edited);
    await page.fill("#otp-address", "not an/address");
    await page.waitForSelector("#otp-address-error:not([hidden])");
    assert.equal((await otpLink.textContent()).trim(), art);
    await page.fill("#otp-address", "");
    await page.screenshot({ path: join(shots, "console-otp-card.png") });

    // A fingerprint, short with a way to see it whole, and copied whole.
    const knock = runCli(["connect", nativeAddr, "--client-dir", join(host.dir, "tablet"), "--name", "Tablet", "--accept-new-host"]);
    assert.equal(knock.stdout.trim().split("\n").pop(), "approval_pending", knock.stderr);
    const card = page.locator("#pending li.card[data-kind=native]");
    await card.waitFor({ timeout: 20000 });
    const fp = card.locator(".fp-box");
    const whole = (await fp.getAttribute("data-fp")).toUpperCase().match(/.{4}/g).join(" ");
    assert.equal(await fp.locator("code").textContent(), whole.slice(0, 19) + "…");
    await fp.locator("button.fp-toggle").click();
    assert.equal(await fp.locator("code").textContent(), whole);
    assert.equal(await fp.locator("button.fp-toggle").getAttribute("aria-expanded"), "true");
    await fp.locator("button.fp-toggle").click();
    assert.equal(await fp.locator("code").textContent(), whole.slice(0, 19) + "…");
    await fp.locator("button.copy").click();
    assert.equal(await clipboard(page), whole);
    // The host's own, in the footer.
    await page.click("footer button[data-copy]");
    assert.equal(await clipboard(page), (await page.textContent("#host-fingerprint")).trim());
    assert.match(await clipboard(page), /^([0-9A-F]{4} ){15}[0-9A-F]{4}$/);
    assert.deepEqual(problems.filter((p) => !p.includes("401")), []);
    await context.close();
  } finally { host.stop(); }
});

test("without --native the page shows no PIN for the app and says how to turn its endpoint on; the login page says how to reset the password", async () => {
  const host = await startHost([]);
  try {
    const { page, context } = await openConsole(browser, host);
    await page.waitForSelector("#login-view:not([hidden])");
    const reset = await page.textContent("#login-view .reset-note");
    assert.match(reset, /sudo -u punktfunk punktfunk console set-password/);
    assert.match(reset, /punktfunk console set-password\s+\(add --state-dir DIR/);
    await login(page, host.password);
    await page.waitForSelector("#no-native:not([hidden])");
    assert.match(await page.textContent("#no-native"), /--native/);
    assert.ok(await page.locator("#arm").isHidden());
    assert.ok(await page.locator("#armed").isHidden());
    assert.equal(await page.textContent("#pin"), "");
    // Moonlight's one-time PIN does not need it.
    assert.ok(await page.locator("#otp-create").isVisible());
    await page.screenshot({ path: join(shots, "console-no-native.png"), fullPage: true });
    await context.close();
  } finally { host.stop(); }
});

test("opened by the host's own name, the one-time PIN's link names the host by it", async (t) => {
  const own = hostname().toLowerCase();
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(own)) { t.skip(`host name ${own} is no DNS label`); return; }
  const host = await startHost([]);
  // The browser resolves NAME.local to the host (loopback here), as mDNS would on a LAN.
  const named = await launchBrowser([`--host-resolver-rules=MAP ${own}.local 127.0.0.1`]);
  try {
    const url = host.console.replace("127.0.0.1", `${own}.local`);
    const { page, context } = await openConsole(named, host, { url });
    await login(page, host.password);
    await page.click("#otp-create");
    await page.waitForSelector("#otp-active:not([hidden])");
    const http = new URL(host.urls["gamestream-http"]);
    const art = (await page.textContent("#otp-link")).trim();
    assert.ok(art.startsWith(`art://${own}.local:${http.port}?pin=`), art);
    assert.equal(await page.inputValue("#otp-address"), `${own}.local`);
    assert.equal(await decodeQr(page.locator("#otp-qr"), join(shots, "otp-qr-named.png")), art);
    await context.close();
  } finally {
    await named.close();
    host.stop();
  }
});
