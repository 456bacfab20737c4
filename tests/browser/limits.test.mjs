// The console page's limits and warnings, in headless Chromium against the
// real `punktfunk serve`: the Activity list stays bounded while records
// arrive live, open mode shows a banner, a login makes the browser known.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { spawnSync } from "node:child_process";
import { startHost, launchBrowser, openConsole, login, repo } from "./harness.mjs";

const shots = process.env.PUNKTFUNK_SCREENSHOTS || join(repo, "target", "screenshots");
mkdirSync(shots, { recursive: true });
let browser;

before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/** The `seq` of every Activity row, top to bottom. */
function seqs(page) {
  return page.locator("#activity tbody tr").evaluateAll((trs) => trs.map((tr) => Number(tr.dataset.seq)));
}

/** The newest `seq` in the trail, read by the page's own session. */
function newestSeq(page) {
  return page.evaluate(async () => (await (await fetch("/api/audit?limit=1")).json()).events[0].seq);
}

test("Activity holds at most 200 rows while records arrive live; Older and Newest page through the rest", async () => {
  const host = await startHost(["--native"]);
  try {
    const { page, context, problems } = await openConsole(browser, host);
    await login(page, host.password);
    await page.waitForSelector("#activity:not([hidden])");
    // 320 records while the page is open (arm, disarm, ...), sent from the
    // page, each reaching it through the event stream; in batches of 40,
    // under the page the list re-reads, so it never has to start over.
    let newest = 0;
    for (let batch = 0; batch < 8; batch++) {
      await page.evaluate(async () => {
        const { csrf } = await (await fetch("/api/session")).json();
        for (let i = 0; i < 20; i++) {
          for (const path of ["/api/pairing/arm", "/api/pairing/disarm"]) {
            const r = await fetch(path, { method: "POST", headers: { "X-CSRF-Token": csrf } });
            if (!r.ok) throw new Error(`${path}: ${r.status}`);
          }
        }
      });
      newest = await newestSeq(page);
      await page.waitForFunction((n) => Number(document.querySelector("#activity tbody tr")?.dataset.seq) === n,
        newest, { polling: 100, timeout: 20000 });
    }
    assert.ok(newest > 320, `${newest}`);
    // The newest 200, in order, and no more.
    let shown = await seqs(page);
    assert.equal(shown.length, 200);
    for (let i = 1; i < shown.length; i++) assert.equal(shown[i], shown[i - 1] - 1, "consecutive, newest first");
    assert.ok(await page.locator("#activity-older").isVisible());
    assert.ok(await page.locator("#activity-newest").isHidden());

    // Older reads further back: still at most 200 rows, now older ones.
    const oldestBefore = shown[shown.length - 1];
    await page.locator("#activity-older").click();
    await page.waitForFunction((s) => Number(document.querySelector("#activity tbody tr:last-child").dataset.seq) < s,
      oldestBefore, { polling: 100 });
    shown = await seqs(page);
    assert.equal(shown.length, 200);
    assert.equal(shown[shown.length - 1], oldestBefore - 50);
    assert.ok(shown[0] < newest);
    assert.ok(await page.locator("#activity-newest").isVisible());
    // Paged back, the list stays put while records arrive...
    const top = shown[0];
    await page.evaluate(async () => {
      const { csrf } = await (await fetch("/api/session")).json();
      await fetch("/api/pairing/arm", { method: "POST", headers: { "X-CSRF-Token": csrf } });
    });
    const newer = await newestSeq(page);
    assert.equal(newer, newest + 1);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal((await seqs(page))[0], top);
    // ...and Newest starts it over at the newest record, following live again.
    await page.locator("#activity-newest").click();
    await page.waitForFunction((n) => Number(document.querySelector("#activity tbody tr")?.dataset.seq) === n,
      newer, { polling: 100 });
    assert.ok(await page.locator("#activity-newest").isHidden());
    assert.ok((await seqs(page)).length <= 200);
    await page.click("#disarm");
    await page.waitForFunction((n) => Number(document.querySelector("#activity tbody tr")?.dataset.seq) === n,
      newer + 1, { polling: 100 });
    assert.deepEqual(problems.filter((p) => !p.includes("401") && !p.includes("404")), []);
    await context.close();
  } finally { host.stop(); }
});

test("open mode shows a warning banner before and after login; a closed host shows none", async () => {
  const open = await startHost(["--native", "--open"]);
  try {
    const { page, context } = await openConsole(browser, open);
    await page.waitForSelector("#login-view:not([hidden])");
    await page.waitForSelector("#open-banner:not([hidden])");
    assert.match(await page.textContent("#open-banner"), /Open mode is on.*without pairing/s);
    await login(page, open.password);
    assert.ok(await page.locator("#open-banner").isVisible());
    await page.screenshot({ path: join(shots, "console-open-banner.png") });
    await context.close();
  } finally { open.stop(); }
  const closed = await startHost(["--native"]);
  try {
    const { page, context } = await openConsole(browser, closed);
    await login(page, closed.password);
    await page.waitForFunction(() => document.querySelector("#host-fingerprint").textContent.length > 0);
    assert.ok(await page.locator("#open-banner").isHidden());
    await context.close();
  } finally { closed.stop(); }
});

test("a login makes the browser known: a year-long cookie for the login route only, out of the page's reach", async () => {
  const host = await startHost();
  try {
    const { page, context } = await openConsole(browser, host);
    await login(page, host.password);
    const known = (await context.cookies()).find((c) => c.name === "pf_known");
    assert.ok(known, "no pf_known cookie");
    assert.equal(known.path, "/api/login");
    assert.equal(known.httpOnly, true);
    assert.equal(known.secure, true);
    assert.equal(known.sameSite, "Strict");
    const year = 365 * 24 * 3600;
    assert.ok(Math.abs(known.expires - Date.now() / 1000 - year) < 120, `${known.expires}`);
    assert.equal(await page.evaluate(() => document.cookie.includes("pf_known")), false);
    // Logging out ends the session, not the browser's standing.
    await page.click("#logout");
    await page.waitForSelector("#login-view:not([hidden])");
    assert.ok((await context.cookies()).some((c) => c.name === "pf_known"));
    await login(page, host.password);
    await context.close();
  } finally { host.stop(); }
});

test("on a full disk the owner still logs in, and the page says the login was not recorded",
  { skip: process.getuid() !== 0 && "needs root to mount a small tmpfs as the state dir" }, async () => {
    const mnt = mkdtempSync(join(tmpdir(), "pf-full-disk-"));
    const mount = spawnSync("mount", ["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", mnt], { encoding: "utf8" });
    assert.equal(mount.status, 0, `mount: ${mount.stderr}`);
    let host;
    try {
      host = await startHost(["--native"], { dir: mnt });
      const { page, context } = await openConsole(browser, host);
      await login(page, host.password);
      // Fill the disk, then make decisions until the trail cannot take one.
      const fd = openSync(join(mnt, "filler"), "w");
      const chunk = Buffer.alloc(64 * 1024);
      try { for (;;) writeSync(fd, chunk); } catch (_) { /* full */ }
      try { for (;;) writeSync(fd, Buffer.alloc(1)); } catch (_) { /* full to the byte */ }
      closeSync(fd);
      const code = await page.evaluate(async () => {
        const { csrf } = await (await fetch("/api/session")).json();
        for (let i = 0; i < 400; i++) {
          const r = await fetch(i % 2 ? "/api/pairing/disarm" : "/api/pairing/arm", { method: "POST", headers: { "X-CSRF-Token": csrf } });
          if (!r.ok) return (await r.json()).error.code;
        }
        return "never failed";
      });
      assert.equal(code, "not_recorded");
      await page.click("#logout");
      await page.waitForSelector("#login-view:not([hidden])");
      await login(page, host.password);
      assert.match(await page.textContent("#status"), /audit trail could not record it/);
      assert.ok(await page.locator("#status").evaluate((s) => s.classList.contains("bad")));
      // Logged in for real: the page works with its session.
      assert.equal(await page.evaluate(async () => (await fetch("/api/pairing")).status), 200);
      await context.close();
    } finally {
      if (host) { host.stop(); await host.exited; }
      spawnSync("umount", [mnt]);
      rmSync(mnt, { recursive: true, force: true });
    }
  });
