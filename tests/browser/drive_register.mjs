// Drives the court's public register page in Debian's headless Chromium; prints what a person would see as JSON.
// Usage: node drive_register.mjs '{"baseUrl": "...", "searches": [{"name": "...", "query": "..."}], "screenshot": {...}}'
// test_register_page.py makes every assertion; this script only acts and reports.
import { chromium } from "playwright-core";

const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

async function search(page, query) {
  await page.fill("#q", query);
  const [response] = await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  const listings = await page.$$eval("article.listing", (articles) =>
    articles.map((article) => {
      const fields = {};
      const terms = article.querySelectorAll("dt");
      for (const term of terms) fields[term.textContent.trim()] = term.nextElementSibling.textContent.trim();
      return { heading: article.querySelector("h2").textContent.trim(), fields };
    }),
  );
  const text = async (selector) => ((await page.$(selector)) ? (await page.textContent(selector)).trim() : null);
  return {
    status: response.status(),
    url: page.url(),
    inputValue: await page.inputValue("#q"),
    count: await text(".count"),
    none: await text(".none"),
    error: await text(".error"),
    correction: await text("section.correction"),
    bodyText: await page.innerText("body"),
    listings,
  };
}

async function main() {
  const plan = JSON.parse(process.argv[2]);
  const browser = await chromium.launch({ executablePath: plan.executablePath, args: CHROMIUM_ARGS, timeout: 30000 });
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
    page.setDefaultTimeout(15000);
    const first = await page.goto(`${plan.baseUrl}/register`);
    const report = { title: await page.title(), firstStatus: first.status(), searches: {} };
    for (const step of plan.searches) {
      report.searches[step.name] = await search(page, step.query);
      if (plan.screenshot && plan.screenshot.after === step.name) {
        await page.screenshot({ path: plan.screenshot.path, fullPage: true });
        report.screenshot = plan.screenshot.path;
      }
    }
    process.stdout.write(JSON.stringify(report));
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
