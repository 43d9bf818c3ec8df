// Drives the dashboard's Keys page in headless Chromium (playwright-core, no bundled browser):
// signs in, creates a key through the form, reads it once, uses it, edits it with the
// keyboard, revokes it and re-enables it, and reads the audit table. Run by
// tests/admin_browser.rs with NOVIQI_URL, NOVIQI_PASSWORD, NOVIQI_OUT (where screenshots go).
// Prints {"ok":true,"key":…,"screenshots":[…]} (the key, so the test can check no log has it).
import { chromium } from "playwright-core";
import path from "node:path";

const url = process.env.NOVIQI_URL;
const password = process.env.NOVIQI_PASSWORD;
const out = process.env.NOVIQI_OUT;
const executablePath = process.env.NOVIQI_CHROMIUM || "/usr/bin/chromium";
const NAME = "browser-made";

function check(cond, message) {
  if (!cond) throw new Error(message);
}

async function chat(context, key) {
  const r = await context.request.post(url + "/v1/chat/completions", {
    headers: { authorization: "Bearer " + key, "content-type": "application/json" },
    data: JSON.stringify({ model: "mock", messages: [{ role: "user", content: "from the browser test" }] }),
  });
  return r.status();
}

const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const problems = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: url });
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") problems.push("console: " + m.text()); });
  page.on("pageerror", (e) => problems.push("page error: " + e));
  page.on("requestfailed", (r) => problems.push("request failed: " + r.url()));
  page.on("dialog", (d) => d.accept());
  page.setDefaultTimeout(15000);

  // Sign in through the form, then follow the nav link to the Keys page.
  await page.goto(url + "/admin");
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
  await page.waitForSelector('body[data-loaded="day"]');
  await page.click('a[href="/admin/keys"]');
  await page.waitForSelector("body[data-loaded]");
  check((await page.textContent("#keys-table tbody")).includes("test"), "the test key is not listed");
  const row = (name) => page.locator(`#keys-table tr[data-key="${name}"]`);
  const loadedAfter = async (before) => {
    await page.waitForFunction((b) => document.body.dataset.loaded !== b, before);
  };

  // Create a key with the form; it is shown once, with a warning and a copy button.
  await page.fill("#create-form input[name=name]", NAME);
  await page.fill("#create-form input[name=models]", "mock, mock-*");
  await page.fill("#create-form input[name=rpm]", "50");
  await page.fill("#create-form input[name=budget_usd]", "2.5");
  await page.selectOption("#create-form select[name=budget_period]", "week");
  await page.click("#create-form button[type=submit]");
  await page.waitForSelector("#new-key:not([hidden])");
  const key = await page.inputValue("#new-key-value");
  check(/^nvq_[A-Za-z0-9_-]{43}$/.test(key), `the new key looks wrong: ${key.slice(0, 8)}…`);
  const warning = await page.textContent("#new-key .warning");
  check(warning.includes("will not be shown again"), `warning: ${warning}`);
  await row(NAME).waitFor();
  const created = await row(NAME).textContent();
  check(created.includes("active") && created.includes("50") && created.includes("mock, mock-*"),
    `new row: ${created}`);
  check(created.includes("$0 of $2.50 / week"), `budget cell: ${created}`);
  check(!created.includes(key), "the table shows the whole key");
  await page.click("#copy-key");
  await page.waitForFunction(() => document.getElementById("status").textContent.includes("copied"));
  const copied = await page.evaluate(() => navigator.clipboard.readText().catch(() => null));
  check(copied === null || copied === key, "the clipboard holds something else");

  // The key works at once.
  check(await chat(context, key) === 200, "the new key was refused");

  // Done hides it for good: nothing in the page holds it any more, nor after a reload.
  await page.click("#dismiss-key");
  check(await page.locator("#new-key").isHidden(), "the new key is still shown");
  check(await page.evaluate((k) => !document.documentElement.outerHTML.includes(k)
    && document.getElementById("new-key-value").value === "", key), "the key is still in the page");
  await page.reload();
  await page.waitForSelector("body[data-loaded]");
  check(!(await page.content()).includes(key), "the key came back after a reload");

  // Edit with the keyboard only: focus Edit, Enter opens the dialog, type, Enter saves.
  let before = await page.evaluate(() => document.body.dataset.loaded);
  await page.focus(`button[aria-label="Edit ${NAME}"]`);
  await page.keyboard.press("Enter");
  await page.waitForSelector("#edit-dialog[open]");
  await page.focus("#edit-form input[name=rpm]");
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.type("7");
  await page.fill("#edit-form input[name=expires_at]", "2099-01-01T00:00:00");
  await page.dispatchEvent("#edit-form input[name=expires_at]", "input");
  await page.focus("#edit-form input[name=rpm]");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#edit-dialog[open]", { state: "detached" });
  await loadedAfter(before);
  const edited = await row(NAME).textContent();
  check(edited.includes("2099-01-01 00:00 UTC"), `expiry not shown: ${edited}`);
  const rpmCell = await row(NAME).locator("td").nth(4).textContent();
  check(rpmCell === "7", `rpm cell ${rpmCell}`);
  // Escape closes the dialog without saving.
  await page.focus(`button[aria-label="Edit ${NAME}"]`);
  await page.keyboard.press("Enter");
  await page.waitForSelector("#edit-dialog[open]");
  await page.keyboard.press("Escape");
  await page.waitForSelector("#edit-dialog[open]", { state: "detached" });

  // Revoke (the confirm() is accepted) → 403; re-enable → works again; revoke for good.
  before = await page.evaluate(() => document.body.dataset.loaded);
  await page.click(`button[aria-label="Revoke ${NAME}"]`);
  await loadedAfter(before);
  check((await row(NAME).textContent()).includes("disabled"), "not shown as disabled");
  check(await chat(context, key) === 403, "a revoked key was accepted");
  before = await page.evaluate(() => document.body.dataset.loaded);
  await page.click(`button[aria-label="Enable ${NAME}"]`);
  await loadedAfter(before);
  check(await chat(context, key) === 200, "a re-enabled key was refused");
  before = await page.evaluate(() => document.body.dataset.loaded);
  await page.click(`button[aria-label="Revoke ${NAME}"]`);
  await loadedAfter(before);
  check(await chat(context, key) === 403, "a revoked key was accepted");

  // The audit table: the sign-in and every change, newest first.
  const audit = await page.locator("#audit-table tbody tr").allTextContents();
  const actions = audit.map((t) => ["key_revoke", "key_update", "key_create", "login"]
    .find((a) => t.includes(a)));
  check(JSON.stringify(actions) === JSON.stringify(
    ["key_revoke", "key_update", "key_revoke", "key_update", "key_create", "login"]),
  `audit rows: ${JSON.stringify(audit)}`);
  check(audit.slice(0, 5).every((t) => t.includes(NAME) && t.includes("session")),
    "audit rows lack the target or the actor");

  // Screenshots: 1280×800 light and dark, a phone-width screen with nothing wider than it.
  const fits = () => page.evaluate(() => [...document.querySelectorAll(".table-wrap")]
    .every((w) => w.scrollWidth <= w.clientWidth + 1));
  check(await fits(), "a table is wider than its panel at 1280×800");
  const light = path.join(out, "keys-light.png");
  await page.screenshot({ path: light, fullPage: true });
  await page.emulateMedia({ colorScheme: "dark" });
  const dark = path.join(out, "keys-dark.png");
  await page.screenshot({ path: dark, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  check(!overflow, "the Keys page is wider than a phone screen");
  check(await fits(), "a table scrolls sideways on a phone-width screen");
  const phone = path.join(out, "keys-phone.png");
  await page.screenshot({ path: phone, fullPage: true });

  check(problems.length === 0, "browser problems:\n" + problems.join("\n"));
  console.log(JSON.stringify({ ok: true, key, screenshots: [light, dark, phone] }));
} finally {
  await browser.close();
}
