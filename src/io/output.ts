/**
 * What a run may do to the folders it writes: one run per output folder at a time (a lock file naming its PID),
 * temporaries left by a killed run (`*.tmp-PID` whose process is gone) removed on the next run, and output files
 * checked before any work is done.
 */
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, realpathSync, rmdirSync, rmSync, statSync, writeSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { WeitiaoError } from "../util/errors.js";

export const LOCK_FILE = ".weitiao.lock";

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"; // exists, owned by someone else
  }
}

/** Remove `<prefix>…​.tmp-PID` entries of `dir` whose PID is not a running process (a run killed mid-write). */
export function removeStaleTemps(dir: string, prefix = "", log?: (line: string) => void): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /\.tmp-(\d+)$/.exec(name);
    if (!m || !name.startsWith(prefix) || alive(Number(m[1]))) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
    log?.(`notice: removed ${join(dir, name)}, left by an earlier run that did not finish (pid ${m[1]})`);
  }
}

export interface OutputLock {
  release(): void;
}

/**
 * Take `dir`/.weitiao.lock (creating `dir`), or fail naming the run that holds it. A lock whose PID is gone is
 * stale: reported and taken over. Released at exit too; a folder this run created and left empty is removed.
 */
export function lockOutputDir(dir: string, log?: (line: string) => void): OutputLock {
  const target = resolve(dir);
  if (existsSync(target) && !statSync(target).isDirectory()) throw new WeitiaoError(`--output-dir ${dir}: exists and is not a folder`);
  const created = !existsSync(target);
  mkdirSync(target, { recursive: true });
  const path = join(target, LOCK_FILE);
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(path, "wx");
      writeSync(fd, JSON.stringify({ pid: process.pid, started: new Date().toISOString() }) + "\n");
      closeSync(fd);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 0) throw e;
      let pid = NaN;
      try {
        pid = Number((JSON.parse(readFileSync(path, "utf8")) as { pid?: unknown }).pid);
      } catch {
        /* unreadable: treated as stale */
      }
      if (Number.isInteger(pid) && pid > 0 && alive(pid)) {
        throw new WeitiaoError(
          `--output-dir ${dir}: another weitiao run (pid ${pid}) is writing there; wait for it, or use another folder (if pid ${pid} is not weitiao, remove ${path})`,
        );
      }
      log?.(`notice: ${path} was left by pid ${Number.isNaN(pid) ? "?" : pid}, which is no longer running: taking it over`);
      rmSync(path, { force: true });
    }
  }
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    rmSync(path, { force: true });
    try {
      if (created && readdirSync(target).length === 0) rmdirSync(target);
    } catch {
      /* already gone */
    }
    process.off("exit", release);
  };
  process.on("exit", release);
  removeStaleTemps(target, "", log);
  removeStaleTemps(dirname(target), `${basename(target)}.tmp-`, log);
  return { release };
}

/** An output file (predict --output) must be creatable: its folder exists and it is not itself a folder. */
/** A CSV field, quoted where RFC 4180 needs it. */
export function csvCell(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function checkOutputFile(file: string, flag: string, input?: string): void {
  const parent = dirname(resolve(file));
  if (input && input !== "-" && existsSync(input) && existsSync(file) && realpathSync(input) === realpathSync(file)) {
    throw new WeitiaoError(`${flag} ${file}: is the input file itself; writing it would replace the input with the results`);
  }
  if (!existsSync(parent) || !statSync(parent).isDirectory()) throw new WeitiaoError(`${flag} ${file}: the folder ${parent} does not exist`);
  if (existsSync(file) && statSync(file).isDirectory()) throw new WeitiaoError(`${flag} ${file}: is a folder; give a file name such as ${join(file, "predictions.jsonl")}`);
}

/** What a run may do with an --output-dir that already holds files (see checkOutputDir). */
export type OutputDirUse = "fresh" | "replace" | "overwrite" | "resume";

/** An earlier weitiao run's output: its training_args.json says it was written by weitiao (older ones: an outputDir key). */
function isWeitiaoOutput(dir: string): boolean {
  try {
    const args = JSON.parse(readFileSync(join(dir, "training_args.json"), "utf8")) as object;
    return "weitiao" in args || "outputDir" in args;
  } catch {
    return false;
  }
}

/**
 * Before any work: may this run write into `dir`? Empty or absent: yes. An earlier weitiao output is replaced
 * whole (no stale checkpoints left behind); anything else needs --overwrite-output-dir (HF's flag), and resuming
 * keeps what is there.
 */
export function checkOutputDir(dir: string, o: { overwrite?: boolean; resume?: boolean }): OutputDirUse {
  const target = resolve(dir);
  if (!existsSync(target)) return "fresh";
  if (!statSync(target).isDirectory()) throw new WeitiaoError(`--output-dir ${dir}: exists and is not a folder`);
  const entries = readdirSync(target).filter((n) => n !== LOCK_FILE && !/\.tmp-\d+$/.test(n));
  if (entries.length === 0) return "fresh";
  if (o.resume) return "resume";
  if (isWeitiaoOutput(target)) return "replace";
  if (o.overwrite) return "overwrite";
  const shown = entries.slice(0, 3).join(", ") + (entries.length > 3 ? `, … (${entries.length} entries)` : "");
  throw new WeitiaoError(
    `--output-dir ${dir}: is not empty (${shown}) and is not an earlier weitiao output; pass --overwrite-output-dir to write into it, or choose another folder`,
  );
}

/**
 * With the folder locked: clear what checkOutputDir allowed replacing. An earlier weitiao output goes whole; with
 * --overwrite-output-dir only checkpoint-N folders go (they would mix with this run's), other files stay until
 * written over.
 */
export function clearOutputDir(dir: string, use: OutputDirUse, log?: (line: string) => void): void {
  if (use === "fresh" || use === "resume") return;
  const target = resolve(dir);
  const doomed = readdirSync(target).filter((n) => n !== LOCK_FILE && (use === "replace" || /^checkpoint-\d+$/.test(n)));
  for (const name of doomed) rmSync(join(target, name), { recursive: true, force: true });
  if (use === "replace") log?.(`notice: --output-dir ${dir} held an earlier weitiao run's output: replaced`);
  else if (doomed.length) log?.(`notice: --overwrite-output-dir: removed ${doomed.length} checkpoint folder(s) of an earlier run from ${dir}`);
}
