// Accessibility of the console page, checked by a real checker: axe-core
// runs in Chromium on every state of the page (logged out, idle, armed,
// waiting requests from Moonlight and from the punktfunk app, a one-time
// PIN, paired devices, a disabled one, Activity, the confirm and access
// dialogs, an error), in both
// color schemes and at desktop and phone width, and must find nothing
// (WCAG 2.x A/AA contrast and structure, and axe's best practices).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startHost, launchBrowser, openConsole, login, runCli, moonlightHold } from "./harness.mjs";

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

const SCHEMES = ["light", "dark"];
const WIDTHS = [{ width: 1100, height: 900 }, { width: 390, height: 844 }];

/** axe's violations on the page as it is now, one line per rule and element. */
async function violations(page) {
  return page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const result = await axe.run(document, { resultTypes: ["violations"] });
    return result.violations.flatMap((v) => v.nodes.map((n) =>
      `${v.id} (${v.impact}): ${v.help} at ${n.target.join(" ")}: ${n.failureSummary.replace(/\s+/g, " ")}`));
  });
}

test("axe finds no accessibility violation in any state of the page, light or dark, desktop or phone", async () => {
  const host = await startHost(["--native"]);
  const nativeAddr = host.urls.native.replace(/^tls:\/\//, "");
  const found = [];
  const checked = [];
  let hold;
  const check = async (page, state) => {
    for (const colorScheme of SCHEMES) {
      await page.emulateMedia({ colorScheme });
      for (const size of WIDTHS) {
        await page.setViewportSize(size);
        for (const v of await violations(page)) found.push(`${state}, ${colorScheme}, ${size.width}px: ${v}`);
        checked.push(`${state}/${colorScheme}/${size.width}`);
      }
    }
    await page.emulateMedia({ colorScheme: "light" });
    await page.setViewportSize(WIDTHS[0]);
  };
  try {
    const { page, context } = await openConsole(browser, host, { axe: true });
    await page.waitForSelector("#login-view:not([hidden])");
    // The checker is on the page and sees a real fault: white on #ff8a80
    // (2.3:1, what Remove was in dark mode).
    assert.equal(await page.evaluate(() => axe.version), "4.14.1");
    await page.evaluate(() => {
      const p = document.createElement("p");
      p.id = "faint";
      p.textContent = "Remove";
      p.style.color = "#fff";
      p.style.background = "#ff8a80";
      document.querySelector("main").append(p);
    });
    assert.match((await violations(page)).join("\n"), /^color-contrast .*#faint/m);
    await page.evaluate(() => document.querySelector("#faint").remove());
    await check(page, "login");
    await page.fill("#password", "not the password");
    await page.click("#login-form button[type=submit]");
    await page.waitForFunction(() => document.querySelector("#login-error").textContent.length > 0);
    await check(page, "login with an error");

    await login(page, host.password);
    await page.waitForSelector("#activity tbody tr");
    await check(page, "idle, Activity with entries");

    await page.click("#arm");
    await page.waitForSelector("#armed:not([hidden])");
    await page.locator("#pair-qr").evaluate((img) => img.complete || new Promise((r) => { img.onload = r; }));
    await check(page, "armed");
    await page.click("#disarm");
    await page.waitForSelector("#disarmed:not([hidden])");

    hold = moonlightHold(join(host.dir, "deck"), host.urls["gamestream-http"], "127.0.9.2");
    await hold.sent;
    await page.locator("#pending li.card[data-kind=gamestream]").waitFor({ timeout: 30000 });
    await check(page, "a waiting Moonlight request");

    const knock = runCli(["connect", nativeAddr, "--client-dir", join(host.dir, "tablet"), "--name", "Tablet", "--accept-new-host"]);
    assert.equal(knock.stdout.trim().split("\n").pop(), "approval_pending", knock.stderr);
    const card = page.locator("#pending li.card[data-kind=native]");
    await card.waitFor({ timeout: 20000 });
    // A fingerprint shown whole.
    await card.locator("button.fp-toggle").click();
    await check(page, "a waiting punktfunk app request");

    await page.locator("#otp-name").fill("Steam Deck");
    await page.locator("#otp-create").click();
    await page.waitForSelector("#otp-active:not([hidden])");
    await check(page, "a one-time PIN");
    await page.locator("#otp-address").fill("not an/address");
    await page.waitForSelector("#otp-address-error:not([hidden])");
    await check(page, "an address that is none typed");
    await page.locator("#otp-address").fill("");

    await card.locator("button.approve").click();
    await page.locator("#devices tbody tr").waitFor();
    await check(page, "a device listed");

    await page.locator("#devices button.remove").click();
    await page.waitForSelector("#confirm[open]");
    await check(page, "the confirm dialog");
    await page.locator("#confirm button[value=cancel]").click();

    await page.locator("#devices button.access").click();
    await page.waitForSelector("#access-dialog[open]");
    await page.locator("#access-until").selectOption("date");
    await check(page, "the access dialog");
    await page.locator("#access-dialog button[value=cancel]").click();
    await page.locator("#devices button.toggle-enabled").click();
    await page.waitForFunction(() => document.querySelector("#devices .access-words")?.textContent === "Disabled");
    await check(page, "a disabled device");

    // An error: the host went away (killed, so no session ends first), and
    // the next action says so.
    hold.release();
    hold = null;
    host.child.kill("SIGKILL");
    await host.exited;
    await page.click("#otp-cancel");
    await page.waitForFunction(() => document.querySelector("#status").classList.contains("bad"));
    await check(page, "an error shown");
    await context.close();
  } finally {
    hold?.release();
    host.stop();
  }
  assert.equal(checked.length, 13 * SCHEMES.length * WIDTHS.length);
  assert.deepEqual(found, []);
});
