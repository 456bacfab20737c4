// Test support for the browser tests: the real `punktfunk serve` binary on
// loopback with a temporary state dir, and Debian's headless Chromium.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { createInterface } from "node:readline";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

export const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const bin = process.env.PUNKTFUNK_BIN || join(repo, "target", "debug", "punktfunk");
export const python = process.env.PUNKTFUNK_PYTHON || join(repo, ".venv", "bin", "python");

/**
 * Starts `punktfunk serve` and resolves once it printed "ready"; the state
 * dir is `state` in a new temporary dir, or in `dir` (kept) if given.
 */
export async function startHost(extra = [], { dir: given } = {}) {
  const dir = given || mkdtempSync(join(tmpdir(), "pf-browser-"));
  const stateDir = join(dir, "state");
  const child = spawn(bin, [
    "serve", "--bind", "127.0.0.1", "--no-mdns", "--state-dir", stateDir,
    "--http-port", "0", "--https-port", "0", "--console-port", "0", "--native-port", "0", ...extra,
  ], { stdio: ["ignore", "pipe", "inherit"] });
  const host = { child, dir, stateDir, urls: {}, password: null };
  host.exited = new Promise((resolve) => child.on("exit", resolve));
  const lines = createInterface({ input: child.stdout });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("host did not start")), 60000);
    child.on("exit", (code) => reject(new Error(`host exited with ${code}`)));
    lines.on("line", (line) => {
      // The start-up block (src/host.rs): "  listening on 127.0.0.1 only:",
      // then "    console         https  port 40011" per listener.
      const at = line.match(/^\s+listening on (\S+) only:$/);
      if (at) host.at = at[1];
      const m = line.match(/^\s+(console|Moonlight|punktfunk app)\s+(https?|tls)\s+port (\d+)$/);
      if (m) {
        const what = { console: "console", Moonlight: `gamestream-${m[2]}`, "punktfunk app": "native" }[m[1]];
        host.urls[what] = `${m[2]}://${host.at || "127.0.0.1"}:${m[3]}`;
      }
      const pw = line.match(/^console password: (\S+)\s+\(generated/);
      if (pw) host.password = pw[1];
      if (line === "ready") { clearTimeout(timer); resolve(); }
    });
  });
  host.console = host.urls.console;
  host.stop = () => {
    child.kill("SIGTERM");
    if (!given) rmSync(dir, { recursive: true, force: true });
  };
  return host;
}

/** Headless Chromium with the flags this closed network needs. */
export async function launchBrowser(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync", ...extraArgs],
  });
}

/**
 * A page on the console with the self-signed certificate accepted. With
 * `axe`, axe-core (the accessibility checker) is loaded into every page as
 * an init script (so the page's CSP does not apply to it); `clipboard`
 * lets the page write and the test read the clipboard.
 */
export async function openConsole(browser, host, { axe = false, clipboard = false, url = host.console } = {}) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1100, height: 900 } });
  if (axe) await context.addInitScript({ path: createRequire(import.meta.url).resolve("axe-core/axe.min.js") });
  if (clipboard) await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: url });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
  await page.goto(url + "/");
  return { context, page, problems };
}

export async function login(page, password) {
  await page.fill("#password", password);
  await page.press("#password", "Enter");
  await page.waitForSelector("#app-view:not([hidden])");
}

/** Runs the `punktfunk` CLI (e.g. the native reference client). */
export function runCli(args, opts = {}) {
  return spawnSync(bin, args, { encoding: "utf8", timeout: 60000, ...opts });
}

/** Starts the CLI in the background (e.g. a knock that waits for a decision). */
export function spawnCli(args) {
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  const out = { stdout: "", stderr: "" };
  child.stdout.on("data", (d) => { out.stdout += d; });
  child.stderr.on("data", (d) => { out.stderr += d; });
  out.done = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  out.child = child;
  return out;
}

/** The real Moonlight pairing client (moonlight-python), waiting for its PIN. */
export function moonlightPair(dir, httpUrl, pin, extra = []) {
  const { hostname, port } = new URL(httpUrl);
  const child = spawn(python, [join(repo, "tests", "moonlight", "client.py"), "pair", dir, hostname, port, pin, ...extra],
    { stdio: ["ignore", "pipe", "pipe"] });
  const out = { stdout: "", stderr: "" };
  child.stdout.on("data", (d) => { out.stdout += d; });
  child.stderr.on("data", (d) => { out.stderr += d; });
  out.done = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  out.result = () => out.stdout.trim().split("\n").map((l) => JSON.parse(l)).find((e) => e.event === "result");
  return out;
}

/** Reads the QR code shown in `locator` with a real decoder (zbarimg). */
export async function decodeQr(locator, file) {
  await locator.evaluate((img) => img.complete || new Promise((r) => { img.onload = r; }));
  await locator.screenshot({ path: file });
  const r = spawnSync("zbarimg", ["--raw", "-q", file], { encoding: "utf8" });
  assert.equal(r.status, 0, `zbarimg: ${r.stderr}`);
  return r.stdout.trim();
}

/** A Moonlight request from `source` that waits for its PIN until released. */
export function moonlightHold(dir, httpUrl, source) {
  const { hostname, port } = new URL(httpUrl);
  const child = spawn(python, [join(repo, "tests", "moonlight", "client.py"), "hold", dir, hostname, port, "--source", source],
    { stdio: ["pipe", "pipe", "inherit"] });
  let stdout = "";
  const sent = new Promise((resolve, reject) => {
    child.stdout.on("data", (d) => { stdout += d; if (stdout.includes('"sent"')) resolve(); });
    child.on("exit", (code) => reject(new Error(`hold exited with ${code} before sending: ${stdout}`)));
  });
  return { sent, release: () => { child.kill(); } };
}
