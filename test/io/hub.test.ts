/**
 * Hub downloads against a mock hub on 127.0.0.1 that serves the fixture model with the real API routes and
 * headers (/api/models/…/revision/…, /{repo}/resolve/{rev}/{file} with ETag, X-Repo-Commit, X-Linked-Etag and a
 * redirect to a CDN path for LFS files, Range support there).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";
import { existsSync, lstatSync, readdirSync, readFileSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { downloadModel } from "../../src/io/hub.js";
import { WeitiaoError } from "../../src/util/errors.js";
import { TINY, tempDir } from "../helpers.js";

const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt"];
const content = new Map(FILES.map((f) => [f, readFileSync(join(TINY, f))]));
const lfsSha = createHash("sha256").update(content.get("model.safetensors")!).digest("hex");

interface Mock {
  server: Server;
  url: string;
  requests: { method: string; path: string; range?: string; auth?: string }[];
  mode: {
    interruptOnce?: boolean; corrupt?: boolean;
    /** Hostile or failing hubs: what the API sends as the commit, the ETag of every file, the API's status. */
    sha?: string; etag?: string; apiStatus?: number;
    /** Serve a sharded checkpoint whose index maps to these shard names. */
    shards?: string[];
    /** Never answer the API / stop sending the LFS body half-way / cut it every time. */
    hangApi?: boolean; stallBody?: boolean; dropAlways?: boolean;
  };
}

async function mockHub(): Promise<Mock> {
  const mock: Mock = { server: null as unknown as Server, url: "", requests: [], mode: {} };
  mock.server = createServer((req, res) => {
    const path = decodeURIComponent(req.url ?? "");
    mock.requests.push({ method: req.method ?? "", path, range: req.headers.range, auth: req.headers.authorization });
    const api = /^\/api\/models\/org\/tiny\/revision\/(.+)$/.exec(path);
    if (api && (api[1] === "main" || api[1] === "refs/pr/1")) {
      if (mock.mode.hangApi) return; // never answers
      if (mock.mode.apiStatus) {
        res.writeHead(mock.mode.apiStatus);
        res.end();
        return;
      }
      const files = mock.mode.shards ? [...FILES.filter((f) => f !== "model.safetensors"), "model.safetensors.index.json"] : FILES;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ id: "org/tiny", sha: mock.mode.sha ?? COMMIT, siblings: [...files, ".gitattributes", "README.md"].map((rfilename) => ({ rfilename })) }));
      return;
    }
    const m = /^\/org\/tiny\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (m && m[2] === "model.safetensors.index.json" && mock.mode.shards) {
      const body = Buffer.from(JSON.stringify({ weight_map: Object.fromEntries(mock.mode.shards.map((f, i) => [`t${i}`, f])) }));
      res.writeHead(200, { etag: `"${mock.mode.etag ?? createHash("sha1").update(body).digest("hex")}"`, "content-length": body.length });
      res.end(req.method === "HEAD" ? undefined : body);
      return;
    }
    if (m && content.has(m[2]!)) {
      const file = m[2]!;
      if (mock.mode.etag) {
        res.writeHead(200, { etag: `"${mock.mode.etag}"`, "content-length": content.get(file)!.length });
        res.end(req.method === "HEAD" ? undefined : content.get(file)!);
        return;
      }
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
        if (mock.mode.dropAlways) {
          res.destroy();
          return;
        }
        const start = Number(range[1]);
        res.writeHead(206, { "content-length": body.length - start, "content-range": `bytes ${start}-${body.length - 1}/${body.length}` });
        res.end(body.subarray(start));
        return;
      }
      res.writeHead(200, { "content-length": body.length });
      if (mock.mode.interruptOnce || mock.mode.dropAlways || mock.mode.stallBody) {
        mock.mode.interruptOnce = false;
        const stall = mock.mode.stallBody;
        mock.mode.stallBody = false;
        res.write(body.subarray(0, Math.floor(body.length / 2)), () => (stall ? setTimeout(() => res.destroy(), 5000).unref() : res.destroy()));
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
  assert.equal(await downloadModel("org/tiny", { log: (l) => notices.push(l), backoffMs: 10 }), snap);
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
  await assert.rejects(downloadModel("org/tiny", { attempts: 1 }), /connection|closed/);
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

// ---------------------------------------------------------------- a hostile or failing hub

/** HF_HOME inside a fresh folder: after the call, that folder must hold nothing but HF_HOME (nothing escaped). */
function sandboxedHub(url: string): { home: string; root: string; escaped: () => string[] } {
  const root = tempDir("weitiao-hostile-");
  const home = join(root, "hf");
  process.env.HF_HOME = home;
  process.env.HF_ENDPOINT = url;
  delete process.env.HF_HUB_OFFLINE;
  delete process.env.HF_HUB_CACHE;
  const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? [join(d, e.name), ...walk(join(d, e.name))] : [join(d, e.name)]));
  return { home, root, escaped: () => walk(root).filter((p) => p !== home && !p.startsWith(home + "/")) };
}

const fast = { backoffMs: 5 };

for (const [what, mode, error] of [
  ["an ETag with ../", { etag: "../../../../escaped" }, /ETag that is neither a sha256 nor a git sha/],
  ["an absolute ETag", { etag: "/tmp/escaped" }, /ETag that is neither/],
  ["a commit sha with ../", { sha: "../../../escaped" }, /commit id that is not 40 hex digits/],
  ["a shard index entry with ../", { shards: ["../../../../escaped.safetensors"] }, /unsafe file name/],
  ["a shard index entry in a subfolder", { shards: ["sub/model.safetensors"] }, /not in the model folder/],
  ["a shard index entry with a backslash", { shards: ["..\\..\\escaped"] }, /unsafe file name/],
] as const) {
  test(`hostile hub: ${what} is refused and nothing is written outside HF_HOME`, async () => {
    const mock = await mockHub();
    Object.assign(mock.mode, mode);
    const box = sandboxedHub(mock.url);
    await assert.rejects(downloadModel("org/tiny", fast), (e: Error) => e instanceof WeitiaoError && error.test(e.message));
    assert.deepEqual(box.escaped(), []);
    const traversed = mock.requests.filter((r) => r.path.includes("escaped"));
    assert.deepEqual(traversed, [], "no request for the hostile name either");
    mock.server.close();
  });
}

test("a revision such as refs/pr/1 downloads and is cached under refs/refs/pr/1", async () => {
  const mock = await mockHub();
  const home = useHub(mock.url);
  const snap = await downloadModel("org/tiny@refs/pr/1");
  assert.equal(readFileSync(join(home, "hub", "models--org--tiny", "refs", "refs", "pr", "1"), "utf8"), COMMIT);
  assert.ok(existsSync(join(snap, "config.json")));
  await assert.rejects(downloadModel("org/tiny@../main"), /invalid revision|not a hub model id/);
  mock.server.close();
});

test("credentials in HF_ENDPOINT are sent as Basic auth and never shown", async () => {
  const mock = await mockHub();
  useHub(mock.url.replace("http://", "http://user:s3cret@"));
  await downloadModel("org/tiny");
  assert.ok(mock.requests.every((r) => r.auth === `Basic ${Buffer.from("user:s3cret").toString("base64")}`));
  mock.mode.apiStatus = 418;
  await assert.rejects(downloadModel("org/tiny@refs/pr/1"), (e: Error) => /HTTP 418/.test(e.message) && !e.message.includes("s3cret"));
  await new Promise((r) => mock.server.close(r));
  const messages: string[] = [];
  await assert.rejects(downloadModel("org/other", { ...fast, log: (l) => messages.push(l) }), (e: Error) => {
    messages.push(e.message);
    return e instanceof WeitiaoError;
  });
  assert.ok(messages.length > 0 && messages.every((m) => !m.includes("s3cret") && !m.includes("user:")), messages.join("\n"));
  assert.ok(messages.some((m) => m.includes("***@")));
});

test("a connection dropped mid-download is retried and resumed; dropped every time it ends in one clear error", async () => {
  const mock = await mockHub();
  const home = useHub(mock.url);
  mock.mode.interruptOnce = true;
  const notices: string[] = [];
  const snap = await downloadModel("org/tiny", { ...fast, log: (l) => notices.push(l) });
  assert.deepEqual(readFileSync(join(snap, "model.safetensors")), content.get("model.safetensors"));
  assert.ok(notices.some((l) => /retrying/.test(l)) && notices.some((l) => /resuming model\.safetensors/.test(l)), notices.join("\n"));

  rmSync(join(home, "hub"), { recursive: true });
  mock.mode.dropAlways = true;
  await assert.rejects(downloadModel("org/tiny", fast), (e: Error) => e instanceof WeitiaoError && /model\.safetensors: .*\(3 attempts\)/.test(e.message));
  mock.server.close();
});

test("a hub that never answers times out; a stalled body is resumed; a cached snapshot is used when the API hangs or fails", async () => {
  const mock = await mockHub();
  useHub(mock.url);
  process.env.HF_HUB_ETAG_TIMEOUT = "0.2";
  process.env.HF_HUB_DOWNLOAD_TIMEOUT = "0.3";
  try {
    mock.mode.hangApi = true;
    await assert.rejects(downloadModel("org/tiny", fast), (e: Error) => e instanceof WeitiaoError && /no answer within 0.2 s/.test(e.message));
    mock.mode.hangApi = false;
    mock.mode.stallBody = true;
    const snap = await downloadModel("org/tiny", fast);
    assert.deepEqual(readFileSync(join(snap, "model.safetensors")), content.get("model.safetensors"));
    for (const mode of [{ hangApi: true }, { apiStatus: 500 }, { apiStatus: 503 }]) {
      Object.assign(mock.mode, { hangApi: false, apiStatus: undefined }, mode);
      const notices: string[] = [];
      assert.equal(await downloadModel("org/tiny", { ...fast, log: (l) => notices.push(l) }), snap);
      assert.ok(notices.some((l) => /using the cached org\/tiny/.test(l)), JSON.stringify(mode));
    }
    mock.mode.apiStatus = 404;
    await assert.rejects(downloadModel("org/tiny", fast), /no such model/); // a definite answer is not an outage
  } finally {
    delete process.env.HF_HUB_ETAG_TIMEOUT;
    delete process.env.HF_HUB_DOWNLOAD_TIMEOUT;
    mock.server.close();
  }
});
