/**
 * Downloading a model from the Hugging Face hub (or a mirror: HF_ENDPOINT, e.g. for mainland China) into HF's
 * own cache layout, so Python tools and weitiao share one cache:
 *
 *   $HF_HOME/hub/models--org--name/blobs/<etag>           file contents, named by ETag (sha256 for LFS files)
 *   $HF_HOME/hub/models--org--name/refs/<revision>        the commit the revision resolved to
 *   $HF_HOME/hub/models--org--name/snapshots/<commit>/f   symlinks into blobs/
 *
 * Downloads resume from a partial `<blob>.incomplete` with a Range request; LFS files are checked against their
 * sha256. HF_HUB_OFFLINE=1 uses the cache only; when the hub cannot be reached, a complete cached snapshot is
 * used with a notice. HF_TOKEN is sent as a bearer token.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync, openSync, writeSync, closeSync, copyFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, relative } from "node:path";
import { WeitiaoError } from "../util/errors.js";

export interface HubOptions {
  log?: (line: string) => void;
  /** Called as bytes arrive, per file. */
  onProgress?: (file: string, received: number, total: number) => void;
  /** Attempts per request before giving up (connection errors, timeouts, HTTP 5xx); default 3. */
  attempts?: number;
  /** Wait before the first retry, doubled after each; default 1000 ms. */
  backoffMs?: number;
}

const TOKENIZER_AND_CONFIG = ["config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"];

/** Does --model look like a hub id (org/name, name, with optional @revision) rather than a path? */
export function isHubId(model: string): boolean {
  return /^[A-Za-z0-9][\w.-]*(\/[\w.-]+)?(@[\w./-]+)?$/.test(model) && !model.startsWith(".") && !model.includes("..");
}

export function hubCacheDir(): string {
  const home = process.env.HF_HOME ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "huggingface");
  return process.env.HF_HUB_CACHE ?? join(home, "hub");
}

/**
 * HF_ENDPOINT without credentials (`https://user:secret@host` is sent as Basic auth instead: fetch refuses URLs
 * with credentials), and the form every message shows, with the userinfo redacted.
 */
function endpoint(): { url: string; shown: string; basic: string | null } {
  const raw = (process.env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, "");
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new WeitiaoError(`HF_ENDPOINT is not a URL: ${raw.replace(/\/\/[^/@]*@/, "//***@")}`);
  }
  if (!u.username && !u.password) return { url: raw, shown: raw, basic: null };
  const basic = Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString("base64");
  u.username = "";
  u.password = "";
  const url = u.toString().replace(/\/+$/, "");
  return { url, shown: url.replace("://", "://***@"), basic };
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { "user-agent": "weitiao", ...extra };
  const token = process.env.HF_TOKEN ?? process.env.HUGGING_FACE_HUB_TOKEN;
  const basic = endpoint().basic;
  if (token) h.authorization = `Bearer ${token}`;
  else if (basic) h.authorization = `Basic ${basic}`;
  return h;
}

/** Seconds from an environment variable (huggingface_hub's names), or the default. */
function seconds(name: string, fallback: number): number {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

// Everything the server sends that becomes part of a cache path is checked before any filesystem call, as
// huggingface_hub does: a hostile hub or mirror must not create files outside the cache.
const COMMIT_RE = /^[0-9a-f]{40}$/;
const BLOB_RE = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** A repository file name as a snapshot path: relative, no `..` or empty segments, no backslash or NUL. */
function checkFileName(name: unknown, what: string): string {
  if (typeof name !== "string" || name === "" || name.includes("\\") || name.includes("\0") || name.startsWith("/") ||
    name.split("/").some((seg) => seg === "" || seg === "." || seg === "..")) {
    throw new WeitiaoError(`the hub sent an unsafe file name for ${what}: ${JSON.stringify(name)}; refusing to write it`);
  }
  return name;
}

/** A revision as refs/<revision>: branch and tag names (refs/pr/1 too), never `..` or an absolute path. */
function checkRevision(revision: string, spec: string): void {
  if (revision === "" || revision.startsWith("/") || revision.includes("\\") || revision.includes("\0") ||
    revision.split("/").some((seg) => seg === "" || seg === "." || seg === "..")) {
    throw new WeitiaoError(`${spec}: invalid revision "${revision}"`);
  }
}

function repoFolder(repo: string): string {
  return join(hubCacheDir(), `models--${repo.replace(/\//g, "--")}`);
}

/** Files to fetch: config and tokenizer, then the weights, preferring safetensors as HF does. */
async function chooseFiles(siblings: string[], indexJson: (f: string) => Promise<Record<string, unknown>>): Promise<string[]> {
  const base = TOKENIZER_AND_CONFIG.filter((f) => siblings.includes(f));
  for (const single of ["model.safetensors", "pytorch_model.bin"]) {
    if (siblings.includes(single)) return [...base, single];
    const index = `${single}.index.json`; // HF's sharded layout
    if (!siblings.includes(index)) continue;
    // Shards lie beside their index (the loader reads them from the snapshot folder itself).
    const shards = [...new Set(Object.values(await indexJson(index)))].map((f) => {
      const name = checkFileName(f, `a shard in ${index}`);
      if (name.includes("/")) throw new WeitiaoError(`${index}: shard ${name} is not in the model folder; refusing it`);
      return name;
    });
    return [...base, index, ...shards];
  }
  throw new WeitiaoError(`the hub repository has no weights weitiao can read (model.safetensors or pytorch_model.bin): ${siblings.join(", ")}`);
}

/** A snapshot folder in the cache that has a config and weights. */
function cachedSnapshot(repo: string, revision: string): string | null {
  const folder = repoFolder(repo);
  const ref = join(folder, "refs", revision);
  const commit = existsSync(ref) && statSync(ref).isFile() ? readFileSync(ref, "utf8").trim() : revision;
  if (!COMMIT_RE.test(commit)) return null;
  const snap = join(folder, "snapshots", commit);
  const complete = existsSync(join(snap, "config.json")) &&
    ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"].some((f) => existsSync(join(snap, f)));
  return complete ? snap : null;
}

async function sha256(file: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** A failure worth another attempt: no connection, a timeout, an HTTP 5xx, a body cut short. */
class Transient extends Error {}

/** What is left when every attempt failed that way: the caller may fall back to a cached snapshot. */
class HubUnavailable extends WeitiaoError {}

/** fetch with a limit on the wait for the response headers. */
async function fetchWithin(url: string, init: RequestInit, timeoutS: number): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutS * 1000) });
  } catch (e) {
    const err = e as Error;
    throw new Transient(err.name === "TimeoutError" ? `no answer within ${timeoutS} s` : `${err.message}${err.cause ? ` (${(err.cause as Error).message ?? err.cause})` : ""}`);
  }
}

/** The body's chunks, failing when none arrives for `timeoutS` seconds (a server that stops sending). */
async function* chunksWithin(res: Response, timeoutS: number): AsyncGenerator<Uint8Array> {
  if (!res.body) return;
  const reader = res.body.getReader();
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Transient(`no data for ${timeoutS} s`)), timeoutS * 1000);
      });
      let r: Awaited<ReturnType<typeof reader.read>>;
      try {
        r = await Promise.race([reader.read(), timeout]);
      } catch (e) {
        throw e instanceof Transient ? e : new Transient(`connection lost (${(e as Error).message})`);
      } finally {
        clearTimeout(timer);
      }
      if (r.done) return;
      yield r.value;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** Run `fn`, retrying transient failures with exponential backoff; a WeitiaoError (HTTP 4xx, bad data) is final. */
async function withRetries<T>(what: string, opts: HubOptions, fn: () => Promise<T>): Promise<T> {
  const attempts = opts.attempts ?? 3;
  let wait = opts.backoffMs ?? 1000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (!(e instanceof Transient)) throw e;
      if (attempt >= attempts) throw new HubUnavailable(`${what}: ${e.message} (${attempts} attempts)`);
      opts.log?.(`notice: ${what}: ${e.message}; retrying in ${(wait / 1000).toFixed(1)} s`);
      await new Promise((r) => setTimeout(r, wait));
      wait *= 2;
    }
  }
}

/** Download one file of a commit into blobs/ (resuming a partial one) and link it into the snapshot. */
async function downloadFile(repo: string, commit: string, file: string, opts: HubOptions): Promise<void> {
  checkFileName(file, repo);
  const folder = repoFolder(repo);
  const snapPath = join(folder, "snapshots", commit, file);
  if (existsSync(snapPath)) return;
  const ep = endpoint();
  const url = `${ep.url}/${repo}/resolve/${commit}/${file.split("/").map(encodeURIComponent).join("/")}`;
  const shownUrl = `${ep.shown}/${repo}/resolve/${commit}/${file}`;
  const blob = await withRetries(`${repo}/${file}`, opts, async () => {
    // The first response (before any redirect to a CDN) carries the ETag that names the blob.
    const head = await fetchWithin(url, { method: "HEAD", headers: headers(), redirect: "manual" }, seconds("HF_HUB_ETAG_TIMEOUT", 10));
    if (head.status >= 500) throw new Transient(`HTTP ${head.status}`);
    if (head.status >= 400) throw new WeitiaoError(`${repo}: ${file}: HTTP ${head.status} from ${shownUrl}`);
    const etag = (head.headers.get("x-linked-etag") ?? head.headers.get("etag") ?? "").replace(/^W\//, "").replace(/"/g, "");
    if (!etag) throw new WeitiaoError(`${repo}: ${file}: the hub sent no ETag`);
    if (!BLOB_RE.test(etag)) {
      throw new WeitiaoError(`${repo}: ${file}: the hub sent an ETag that is neither a sha256 nor a git sha (${JSON.stringify(etag.slice(0, 80))}); refusing to use it as a cache file name`);
    }
    const blob = join(folder, "blobs", etag);
    if (existsSync(blob)) return blob;
    mkdirSync(dirname(blob), { recursive: true });
    const partial = `${blob}.incomplete`;
    const have = existsSync(partial) ? statSync(partial).size : 0;
    const timeoutS = seconds("HF_HUB_DOWNLOAD_TIMEOUT", 10);
    const res = await fetchWithin(url, { headers: headers(have > 0 ? { range: `bytes=${have}-` } : {}), redirect: "follow" }, timeoutS);
    if (res.status >= 500) throw new Transient(`HTTP ${res.status}`);
    if (res.status >= 400 && res.status !== 416) throw new WeitiaoError(`${repo}: ${file}: HTTP ${res.status}`);
    const append = res.status === 206;
    if (have > 0 && append) opts.log?.(`resuming ${file} at byte ${have}`);
    const length = Number(res.headers.get("content-length") ?? NaN);
    const total = Number.isFinite(length) ? length + (append ? have : 0) : 0;
    let received = append ? have : 0;
    if (res.status !== 416) {
      const fd = openSync(partial, append ? "a" : "w");
      try {
        for await (const chunk of chunksWithin(res, timeoutS)) {
          writeSync(fd, chunk);
          received += chunk.length;
          opts.onProgress?.(file, received, total);
        }
      } finally {
        closeSync(fd);
      }
      if (total > 0 && received !== total) throw new Transient(`the connection closed after ${received} of ${total} bytes`);
    }
    if (/^[0-9a-f]{64}$/.test(etag)) { // an LFS file: its ETag is its sha256
      const digest = await sha256(partial);
      if (digest !== etag) {
        rmSync(partial, { force: true });
        throw new WeitiaoError(`${repo}: ${file}: sha256 mismatch (expected ${etag}, got ${digest}); the partial download was deleted, try again`);
      }
    }
    renameSync(partial, blob);
    return blob;
  });
  mkdirSync(dirname(snapPath), { recursive: true });
  try {
    symlinkSync(relative(dirname(snapPath), blob), snapPath);
  } catch {
    copyFileSync(blob, snapPath); // filesystems without symlinks
  }
}

/** The API's answer for a revision: its commit and file list, checked before anything uses them. */
async function revisionInfo(repo: string, revision: string, spec: string, opts: HubOptions): Promise<{ commit: string; siblings: string[] }> {
  const ep = endpoint();
  const info = await withRetries(spec, opts, async () => {
    const res = await fetchWithin(`${ep.url}/api/models/${repo}/revision/${encodeURIComponent(revision)}`, { headers: headers() }, seconds("HF_HUB_ETAG_TIMEOUT", 10));
    if (res.status === 401 || res.status === 403) throw new WeitiaoError(`${spec}: access denied by the hub (set HF_TOKEN for gated or private models)`);
    if (res.status === 404) throw new WeitiaoError(`${spec}: no such model or revision on ${ep.shown}`);
    if (res.status >= 500) throw new Transient(`${ep.shown} answered HTTP ${res.status}`);
    if (!res.ok) throw new WeitiaoError(`${spec}: the hub answered HTTP ${res.status}`);
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      throw new Transient(`connection lost (${(e as Error).message})`);
    }
    try {
      return JSON.parse(text) as { sha?: unknown; siblings?: unknown };
    } catch {
      throw new WeitiaoError(`${spec}: the hub's answer is not JSON`);
    }
  });
  if (typeof info.sha !== "string" || !COMMIT_RE.test(info.sha)) {
    throw new WeitiaoError(`${spec}: the hub sent a commit id that is not 40 hex digits (${JSON.stringify(String(info.sha).slice(0, 80))})`);
  }
  if (!Array.isArray(info.siblings)) throw new WeitiaoError(`${spec}: unexpected answer from the hub API (no file list)`);
  const siblings = info.siblings.map((s) => (s as { rfilename?: unknown })?.rfilename).filter((f): f is string => typeof f === "string");
  return { commit: info.sha, siblings };
}

/**
 * Make `org/name[@revision]` available locally and return its snapshot folder. When the hub cannot be reached (no
 * connection, timeouts, HTTP 5xx after retries), a complete cached snapshot of the revision is used with a notice.
 */
export async function downloadModel(spec: string, opts: HubOptions = {}): Promise<string> {
  const at = spec.indexOf("@");
  const repo = at < 0 ? spec : spec.slice(0, at);
  const revision = at < 0 ? "main" : spec.slice(at + 1);
  if (!isHubId(repo)) throw new WeitiaoError(`${spec}: not a hub model id (org/name[@revision])`);
  checkRevision(revision, spec);
  const cached = cachedSnapshot(repo, revision);
  const ep = endpoint();
  if (process.env.HF_HUB_OFFLINE === "1" || process.env.HF_HUB_OFFLINE === "true") {
    if (cached) return cached;
    throw new WeitiaoError(`${spec}: not in the cache (${repoFolder(repo)}) and HF_HUB_OFFLINE is set`);
  }
  try {
    const { commit, siblings } = await revisionInfo(repo, revision, spec, opts);
    const readIndex = async (f: string): Promise<Record<string, unknown>> => {
      await downloadFile(repo, commit, f, opts);
      let parsed: { weight_map?: unknown };
      try {
        parsed = JSON.parse(readFileSync(join(repoFolder(repo), "snapshots", commit, f), "utf8"));
      } catch (e) {
        throw new WeitiaoError(`${spec}: ${f} is not valid JSON (${(e as Error).message})`);
      }
      if (!parsed?.weight_map || typeof parsed.weight_map !== "object") throw new WeitiaoError(`${spec}: ${f} has no weight_map`);
      return parsed.weight_map as Record<string, unknown>;
    };
    const files = await chooseFiles(siblings, readIndex);
    for (const f of files) {
      opts.log?.(`downloading ${repo}/${f}`);
      await downloadFile(repo, commit, f, opts);
    }
    if (revision !== commit) {
      const ref = join(repoFolder(repo), "refs", revision);
      mkdirSync(dirname(ref), { recursive: true }); // refs/pr/1 nests
      writeFileSync(ref, commit);
    }
    return join(repoFolder(repo), "snapshots", commit);
  } catch (e) {
    if (!(e instanceof HubUnavailable)) throw e;
    if (cached) {
      opts.log?.(`notice: ${ep.shown} unreachable (${e.message}); using the cached ${spec}`);
      return cached;
    }
    throw new WeitiaoError(`${spec}: cannot reach ${ep.shown} (${e.message}); set HF_ENDPOINT for a mirror, or download the model folder and pass its path`);
  }
}
