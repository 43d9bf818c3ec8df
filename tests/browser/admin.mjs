// Drives the real admin dashboard in headless Chromium (playwright-core, no bundled browser).
// Run by tests/admin_browser.rs with NOVIQI_URL, NOVIQI_PASSWORD, NOVIQI_EXPECT_REQUESTS,
// NOVIQI_OUT (where screenshots go). Exits non-zero with a message on the first failure.
import { chromium } from "playwright-core";
import path from "node:path";

const url = process.env.NOVIQI_URL;
const password = process.env.NOVIQI_PASSWORD;
const expected = process.env.NOVIQI_EXPECT_REQUESTS;
const apiKey = process.env.NOVIQI_KEY;
const out = process.env.NOVIQI_OUT;
const executablePath = process.env.NOVIQI_CHROMIUM || "/usr/bin/chromium";

function check(cond, message) {
  if (!cond) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const problems = [];
// A 401 is the expected answer to a wrong password and to the API after logout.
let expect401 = false;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    if (expect401 && m.text().includes("status of 401")) return;
    problems.push("console: " + m.text());
  });
  page.on("pageerror", (e) => problems.push("page error: " + e));
  page.on("requestfailed", (r) => problems.push("request failed: " + r.url()));
  page.setDefaultTimeout(15000);

  // The login page, a wrong password, then the right one, all through the real form.
  await page.goto(url + "/admin");
  check(await page.locator('form[action="/admin/login"] input[name=password]').count() === 1,
    "no login form");
  expect401 = true;
  await page.fill("input[name=password]", "not the password");
  await page.click("button[type=submit]");
  await page.waitForSelector(".error");
  check((await page.textContent(".error")).includes("Wrong password"), "no wrong-password message");
  expect401 = false;
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
  await page.waitForSelector('body[data-loaded="day"]');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "noviqi_admin");
  check(session && session.httpOnly && session.sameSite === "Strict", "session cookie attributes");

  // Only successful requests so far: no chart claims the range is empty, the error rate's
  // axis stays near 0 % (it once went to 400 %), and latency under a millisecond says so.
  const firstTotal = Number((await page.textContent("#total-requests")).trim());
  check(firstTotal === Number(expected) - 1, `first total ${firstTotal}`);
  const emptyNotes = await page.locator(".plot text.empty").count();
  check(emptyNotes === 0, `${emptyNotes} charts say "no requests" over requests`);
  const errorAxis = await page.locator("#chart-errors text.axis").allTextContents();
  const percents = errorAxis.filter((t) => t.endsWith("%")).map((t) => parseFloat(t));
  check(percents.length > 0 && Math.max(...percents) <= 100, `error axis ${errorAxis}`);
  const p50 = (await page.textContent("#total-p50")).trim();
  const p50ms = p50 === "< 1 ms" ? 0 : /^\d+ ms$/.test(p50) ? parseInt(p50) : NaN;
  check(p50ms <= Number(process.env.NOVIQI_MAX_LATENCY_MS),
    `p50 ${p50} over the slowest usage line (${process.env.NOVIQI_MAX_LATENCY_MS} ms)`);

  // Cost and the budget bar, from the priced mock's answers.
  const cost = (await page.textContent("#total-cost")).trim();
  check(/^\$\d/.test(cost) && cost !== "$0", `total cost ${cost}`);
  check(await page.locator("#chart-cost rect.bar").count() > 0, "no cost bars");
  const budgetRows = await page.locator("#budgets .budget").count();
  check(budgetRows === 1, `expected one budget bar, got ${budgetRows}`);
  const budgetText = await page.textContent("#budgets .budget-text");
  check(/of \$5\.00 this week/.test(budgetText), `budget text ${budgetText}`);
  const width = await page.evaluate(
    () => document.querySelector("#budgets .budget-fill").style.width);
  check(parseFloat(width) > 0, `budget bar width ${width}`);
  const costCell = await page.textContent("#table-keys tbody");
  check(costCell.includes("$"), "key table lacks a cost");

  // One request for an unknown model, then a reload.
  const miss = await context.request.post(url + "/v1/chat/completions", {
    headers: { authorization: "Bearer " + apiKey, "content-type": "application/json" },
    data: JSON.stringify({ model: "nope", messages: [{ role: "user", content: "hi" }] }),
  });
  check(miss.status() === 404, `unknown model answered ${miss.status()}`);
  await page.reload();
  await page.waitForSelector('body[data-loaded="day"]');

  // Charts and totals with the test's traffic.
  const total = (await page.textContent("#total-requests")).trim();
  check(total === expected, `day total ${total}, expected ${expected}`);
  const svgs = await page.locator(".plot svg").count();
  check(svgs === 5, `expected 5 charts, got ${svgs}`);
  const bars = await page.locator(".plot rect.bar").count();
  check(bars > 0, "no bars drawn");
  const keyRow = await page.textContent("#table-keys tbody");
  check(keyRow.includes("test"), "key table lacks the test key");
  check(!keyRow.includes("nvq_") || /nvq_\S{8}…/.test(keyRow), "key table shows more than a prefix");
  const modelRow = await page.textContent("#table-models tbody");
  check(modelRow.includes("mock"), "model table lacks mock");
  const light = path.join(out, "admin-light.png");
  await page.screenshot({ path: light, fullPage: true });

  // Range switching.
  for (const range of ["hour", "week", "month"]) {
    await page.click(`.ranges button[data-range="${range}"]`);
    await page.waitForSelector(`body[data-loaded="${range}"]`);
    const t = (await page.textContent("#total-requests")).trim();
    check(t === expected, `${range} total ${t}, expected ${expected}`);
    const pressed = await page.getAttribute(`.ranges button[data-range="${range}"]`, "aria-pressed");
    check(pressed === "true", `${range} button not pressed`);
  }
  await page.click('.ranges button[data-range="day"]');
  await page.waitForSelector('body[data-loaded="day"]');

  // Dark mode and a phone-sized window.
  await page.emulateMedia({ colorScheme: "dark" });
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  check(bg !== "rgb(246, 247, 249)", "dark mode did not change the background");
  const dark = path.join(out, "admin-dark.png");
  await page.screenshot({ path: dark, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  check(!overflow, "page wider than a phone screen");
  const phone = path.join(out, "admin-phone.png");
  await page.screenshot({ path: phone, fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.emulateMedia({ colorScheme: "light" });

  // Logout ends the session on the server: the old cookie no longer reads the API.
  expect401 = true;
  await page.click("#logout");
  await page.waitForSelector('form[action="/admin/login"]');
  const status = await page.evaluate(async (u) => {
    const r = await fetch(u + "/admin/api/usage");
    return r.status;
  }, url);
  check(status === 401, `API after logout answered ${status}`);
  const replay = await context.request.get(url + "/admin/api/usage", {
    headers: { cookie: `noviqi_admin=${session.value}` },
  });
  check(replay.status() === 401, `replayed cookie answered ${replay.status()}`);

  check(problems.length === 0, "browser problems:\n" + problems.join("\n"));
  console.log(JSON.stringify({ ok: true, screenshots: [light, dark, phone] }));
} finally {
  await browser.close();
}
