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

function endpoint(): string {
  return (process.env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, "");
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { "user-agent": "weitiao", ...extra };
  const token = process.env.HF_TOKEN ?? process.env.HUGGING_FACE_HUB_TOKEN;
  if (token) h.authorization = `Bearer ${token}`;
  return h;
}

function repoFolder(repo: string): string {
  return join(hubCacheDir(), `models--${repo.replace(/\//g, "--")}`);
}

/** Files to fetch: config and tokenizer, then the weights, preferring safetensors as HF does. */
async function chooseFiles(siblings: string[], indexJson: (f: string) => Promise<Record<string, string>>): Promise<string[]> {
  const base = TOKENIZER_AND_CONFIG.filter((f) => siblings.includes(f));
  for (const single of ["model.safetensors", "pytorch_model.bin"]) {
    if (siblings.includes(single)) return [...base, single];
    const index = `${single}.index.json`; // HF's sharded layout
    if (siblings.includes(index)) return [...base, index, ...new Set(Object.values(await indexJson(index)))];
  }
  throw new WeitiaoError(`the hub repository has no weights weitiao can read (model.safetensors or pytorch_model.bin): ${siblings.join(", ")}`);
}

/** A snapshot folder in the cache that has a config and weights. */
function cachedSnapshot(repo: string, revision: string): string | null {
  const folder = repoFolder(repo);
  const ref = join(folder, "refs", revision);
  const commit = existsSync(ref) ? readFileSync(ref, "utf8").trim() : /^[0-9a-f]{40}$/.test(revision) ? revision : null;
  if (!commit) return null;
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

/** Download one file of a commit into blobs/ (resuming a partial one) and link it into the snapshot. */
async function downloadFile(repo: string, commit: string, file: string, opts: HubOptions): Promise<void> {
  const folder = repoFolder(repo);
  const snapPath = join(folder, "snapshots", commit, file);
  if (existsSync(snapPath)) return;
  const url = `${endpoint()}/${repo}/resolve/${commit}/${file}`;
  // The first response (before any redirect to a CDN) carries the ETag that names the blob.
  const head = await fetch(url, { method: "HEAD", headers: headers(), redirect: "manual" });
  if (head.status >= 400) throw new WeitiaoError(`${repo}: ${file}: HTTP ${head.status} from ${url}`);
  const etag = (head.headers.get("x-linked-etag") ?? head.headers.get("etag") ?? "").replace(/^W\//, "").replace(/"/g, "");
  if (!etag) throw new WeitiaoError(`${repo}: ${file}: the hub sent no ETag`);
  const isLfs = /^[0-9a-f]{64}$/.test(etag);
  const blob = join(folder, "blobs", etag);
  mkdirSync(dirname(blob), { recursive: true });
  if (!existsSync(blob)) {
    const partial = `${blob}.incomplete`;
    const have = existsSync(partial) ? statSync(partial).size : 0;
    const res = await fetch(url, { headers: headers(have > 0 ? { range: `bytes=${have}-` } : {}), redirect: "follow" });
    if (res.status >= 400 && res.status !== 416) throw new WeitiaoError(`${repo}: ${file}: HTTP ${res.status}`);
    const append = res.status === 206;
    if (have > 0 && append) opts.log?.(`resuming ${file} at byte ${have}`);
    const total = Number(res.headers.get("content-length") ?? 0) + (append ? have : 0);
    const fd = openSync(partial, append ? "a" : "w");
    let received = append ? have : 0;
    try {
      if (res.body) {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          writeSync(fd, chunk);
          received += chunk.length;
          opts.onProgress?.(file, received, total);
        }
      }
    } finally {
      closeSync(fd);
    }
    if (isLfs) {
      const digest = await sha256(partial);
      if (digest !== etag) {
        rmSync(partial, { force: true });
        throw new WeitiaoError(`${repo}: ${file}: sha256 mismatch (expected ${etag}, got ${digest}); the partial download was deleted, try again`);
      }
    }
    renameSync(partial, blob);
  }
  mkdirSync(dirname(snapPath), { recursive: true });
  try {
    symlinkSync(relative(dirname(snapPath), blob), snapPath);
  } catch {
    copyFileSync(blob, snapPath); // filesystems without symlinks
  }
}

/**
 * Make `org/name[@revision]` available locally and return its snapshot folder.
 */
export async function downloadModel(spec: string, opts: HubOptions = {}): Promise<string> {
  const [repo, revision = "main"] = spec.split("@") as [string, string?];
  const cached = cachedSnapshot(repo, revision);
  if (process.env.HF_HUB_OFFLINE === "1" || process.env.HF_HUB_OFFLINE === "true") {
    if (cached) return cached;
    throw new WeitiaoError(`${spec}: not in the cache (${repoFolder(repo)}) and HF_HUB_OFFLINE is set`);
  }
  let info: { sha?: string; siblings?: { rfilename: string }[] };
  try {
    const res = await fetch(`${endpoint()}/api/models/${repo}/revision/${encodeURIComponent(revision)}`, { headers: headers() });
    if (res.status === 401 || res.status === 403) throw new WeitiaoError(`${spec}: access denied by the hub (set HF_TOKEN for gated or private models)`);
    if (res.status === 404) throw new WeitiaoError(`${spec}: no such model or revision on ${endpoint()}`);
    if (!res.ok) throw new WeitiaoError(`${spec}: the hub answered HTTP ${res.status}`);
    info = (await res.json()) as typeof info;
  } catch (e) {
    if (e instanceof WeitiaoError) throw e;
    if (cached) {
      opts.log?.(`notice: ${endpoint()} unreachable (${(e as Error).message}); using the cached ${spec}`);
      return cached;
    }
    throw new WeitiaoError(`${spec}: cannot reach ${endpoint()} (${(e as Error).message}); set HF_ENDPOINT for a mirror, or download the model folder and pass its path`);
  }
  const commit = info.sha;
  if (!commit || !info.siblings) throw new WeitiaoError(`${spec}: unexpected answer from the hub API`);
  const siblings = info.siblings.map((s) => s.rfilename);
  const readIndex = async (f: string): Promise<Record<string, string>> => {
    await downloadFile(repo, commit, f, opts);
    return (JSON.parse(readFileSync(join(repoFolder(repo), "snapshots", commit, f), "utf8")) as { weight_map: Record<string, string> }).weight_map;
  };
  const files = await chooseFiles(siblings, readIndex);
  for (const f of files) {
    opts.log?.(`downloading ${repo}/${f}`);
    await downloadFile(repo, commit, f, opts);
  }
  mkdirSync(join(repoFolder(repo), "refs"), { recursive: true });
  writeFileSync(join(repoFolder(repo), "refs", revision), commit);
  return join(repoFolder(repo), "snapshots", commit);
}
