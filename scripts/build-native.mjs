// npm install hook: build the native addon with node-gyp. A failed build is not a failed install: weitiao then
// runs on its TypeScript backend and says so in one line at start-up.
import { spawnSync } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { dirname, join } from "node:path";

if (process.env.WEITIAO_SKIP_NATIVE) {
  console.log("weitiao: WEITIAO_SKIP_NATIVE set, not building the native addon");
  process.exit(0);
}
// npm hands lifecycle scripts its bundled node-gyp in npm_config_node_gyp; outside npm, look beside node.
const candidates = [
  process.env.npm_config_node_gyp,
  join(dirname(realpathSync(process.execPath)), "..", "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"),
].filter((p) => p && existsSync(p));
// Build against the headers of the node that runs us (no download: machines may be offline).
const prefix = dirname(dirname(realpathSync(process.execPath)));
const args = ["rebuild"];
if (!process.env.npm_config_nodedir && existsSync(join(prefix, "include", "node", "node_api.h"))) args.push(`--nodedir=${prefix}`);
const r = candidates.length
  ? spawnSync(process.execPath, [candidates[0], ...args], { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" })
  : spawnSync("node-gyp", args, { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
if (r.status === 0) {
  console.log("weitiao: native addon built (oneDNN)");
} else {
  const why = (r.stderr || r.stdout || String(r.error ?? "")).split("\n").filter((l) => /error/i.test(l)).slice(0, 3).join(" | ");
  console.log(`weitiao: native addon not built (${why || "node-gyp failed"}); the TypeScript backend will be used. ` +
    "For the fast path install oneDNN (apt-get install libdnnl-dev) and run npm rebuild weitiao.");
}
