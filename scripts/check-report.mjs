// Renders a report.html in headless Chromium (Debian's `chromium` package) and saves a screenshot, to check the
// report displays offline. A script, not a test: CI machines have no browser.
//   node scripts/check-report.mjs weitiao-demo-output/report.html report.png
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const [html = "weitiao-demo-output/report.html", png = "report.png"] = process.argv.slice(2);
const browser = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].find(existsSync);
if (!browser) {
  console.error("no Chromium: apt-get install chromium");
  process.exit(1);
}
const profile = mkdtempSync(join(tmpdir(), "chromium-"));
process.once("exit", () => rmSync(profile, { recursive: true, force: true }));
const r = spawnSync(browser, [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
  "--disable-sync", "--no-first-run", `--user-data-dir=${profile}`,
  "--window-size=1280,2400", `--screenshot=${resolve(png)}`, `file://${resolve(html)}`,
], { encoding: "utf8", timeout: 60000 });
if (!existsSync(png) || statSync(png).size < 10000) {
  console.error(`screenshot failed: ${r.stderr}`);
  process.exit(1);
}
console.log(`rendered ${html} → ${png} (${statSync(png).size} bytes)`);
