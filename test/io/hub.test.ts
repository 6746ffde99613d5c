/**
 * Hub downloads against a mock hub on 127.0.0.1 that serves the fixture model with the real API routes and
 * headers (/api/models/…/revision/…, /{repo}/resolve/{rev}/{file} with ETag, X-Repo-Commit, X-Linked-Etag and a
 * redirect to a CDN path for LFS files, Range support there).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";
import { existsSync, lstatSync, readdirSync, readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { downloadModel } from "../../src/io/hub.js";
import { TINY, tempDir } from "../helpers.js";

const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt"];
const content = new Map(FILES.map((f) => [f, readFileSync(join(TINY, f))]));
const lfsSha = createHash("sha256").update(content.get("model.safetensors")!).digest("hex");

interface Mock {
  server: Server;
  url: string;
  requests: { method: string; path: string; range?: string; auth?: string }[];
  mode: { interruptOnce?: boolean; corrupt?: boolean };
}

async function mockHub(): Promise<Mock> {
  const mock: Mock = { server: null as unknown as Server, url: "", requests: [], mode: {} };
  mock.server = createServer((req, res) => {
    const path = decodeURIComponent(req.url ?? "");
    mock.requests.push({ method: req.method ?? "", path, range: req.headers.range, auth: req.headers.authorization });
    if (path === "/api/models/org/tiny/revision/main") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ id: "org/tiny", sha: COMMIT, siblings: [...FILES, ".gitattributes", "README.md"].map((rfilename) => ({ rfilename })) }));
      return;
    }
    const m = /^\/org\/tiny\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (m && content.has(m[2]!)) {
      const file = m[2]!;
      if (file === "model.safetensors") {
        res.writeHead(302, { location: `/cdn/${lfsSha}`, "x-repo-commit": COMMIT, "x-linked-etag": `"${lfsSha}"`, etag: `"${lfsSha}"`, "x-linked-size": String(content.get(file)!.length) });
        res.end();
        return;
      }
      const body = content.get(file)!;
      res.writeHead(200, { etag: `"${createHash("sha1").update(body).digest("hex")}"`, "x-repo-commit": COMMIT, "content-length": body.length });
      res.end(req.method === "HEAD" ? undefined : body);
      return;
    }
    if (path === `/cdn/${lfsSha}`) {
      let body = content.get("model.safetensors")!;
      if (mock.mode.corrupt) body = Buffer.concat([body.subarray(0, 100), Buffer.from("x"), body.subarray(101)]);
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
      if (range) {
        const start = Number(range[1]);
        res.writeHead(206, { "content-length": body.length - start, "content-range": `bytes ${start}-${body.length - 1}/${body.length}` });
        res.end(body.subarray(start));
        return;
      }
      res.writeHead(200, { "content-length": body.length });
      if (mock.mode.interruptOnce) {
        mock.mode.interruptOnce = false;
        res.write(body.subarray(0, Math.floor(body.length / 2)), () => res.destroy());
        return;
      }
      res.end(body);
      return;
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((r) => mock.server.listen(0, "127.0.0.1", r));
  mock.url = `http://127.0.0.1:${(mock.server.address() as AddressInfo).port}`;
  return mock;
}

function useHub(url: string): string {
  const home = tempDir("weitiao-hf-");
  process.env.HF_HOME = home;
  process.env.HF_ENDPOINT = url;
  delete process.env.HF_HUB_OFFLINE;
  delete process.env.HF_HUB_CACHE;
  return home;
}

test("download into the HF cache layout; then a cache hit with the hub down; then offline mode", async () => {
  const mock = await mockHub();
  const home = useHub(mock.url);
  process.env.HF_TOKEN = "hf_test_token";
  const snap = await downloadModel("org/tiny");
  delete process.env.HF_TOKEN;
  assert.ok(mock.requests.filter((r) => !r.path.startsWith("/cdn/")).every((r) => r.auth === "Bearer hf_test_token"), "HF_TOKEN sent");
  assert.equal(snap, join(home, "hub", "models--org--tiny", "snapshots", COMMIT));
  for (const f of FILES) assert.deepEqual(readFileSync(join(snap, f)), content.get(f), f);
  assert.ok(lstatSync(join(snap, "model.safetensors")).isSymbolicLink());
  assert.ok(existsSync(join(home, "hub", "models--org--tiny", "blobs", lfsSha)));
  assert.equal(readFileSync(join(home, "hub", "models--org--tiny", "refs", "main"), "utf8"), COMMIT);
  assert.ok(!mock.requests.some((r) => r.path.includes("README")), "only the files a model needs");

  await new Promise((r) => mock.server.close(r)); // the hub is gone
  const notices: string[] = [];
  assert.equal(await downloadModel("org/tiny", { log: (l) => notices.push(l) }), snap);
  assert.ok(notices.some((l) => /unreachable.*using the cached org\/tiny/.test(l)));

  process.env.HF_HUB_OFFLINE = "1";
  assert.equal(await downloadModel("org/tiny"), snap);
  await assert.rejects(downloadModel("org/other"), /not in the cache .* HF_HUB_OFFLINE is set/);
  delete process.env.HF_HUB_OFFLINE;
});

test("offline mode makes no request at all", async () => {
  const mock = await mockHub();
  useHub(mock.url);
  process.env.HF_HUB_OFFLINE = "1";
  await assert.rejects(downloadModel("org/tiny"), /HF_HUB_OFFLINE/);
  assert.equal(mock.requests.length, 0);
  delete process.env.HF_HUB_OFFLINE;
  mock.server.close();
});

test("an interrupted download resumes from its partial file with a Range request", async () => {
  const mock = await mockHub();
  const home = useHub(mock.url);
  mock.mode.interruptOnce = true;
  await assert.rejects(downloadModel("org/tiny"));
  const blobs = join(home, "hub", "models--org--tiny", "blobs");
  assert.ok(readdirSync(blobs).some((f) => f.endsWith(".incomplete")), "the partial download is kept");
  const snap = await downloadModel("org/tiny");
  const ranged = mock.requests.filter((r) => r.path.startsWith("/cdn/") && r.range);
  assert.equal(ranged.length, 1);
  assert.match(ranged[0]!.range!, /^bytes=\d+-$/);
  assert.ok(Number(/\d+/.exec(ranged[0]!.range!)![0]) > 0);
  assert.deepEqual(readFileSync(join(snap, "model.safetensors")), content.get("model.safetensors"));
  mock.server.close();
});

test("a file whose sha256 does not match its LFS ETag is rejected and not kept", async () => {
  const mock = await mockHub();
  const home = useHub(mock.url);
  mock.mode.corrupt = true;
  await assert.rejects(downloadModel("org/tiny"), /model\.safetensors: sha256 mismatch/);
  const blobs = join(home, "hub", "models--org--tiny", "blobs");
  assert.ok(!readdirSync(blobs).some((f) => f.startsWith(lfsSha)), "no blob or partial file left");
  assert.ok(!existsSync(join(home, "hub", "models--org--tiny", "refs", "main")));
  mock.server.close();
});
