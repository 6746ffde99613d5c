/**
 * Paths of the files of a model folder. A folder is data from anyone (a hub mirror, a colleague's zip): a file in it
 * that is a symlink to somewhere else (vocab.txt → /etc/shadow) must not be read, and above all not copied into an
 * output folder. A link is followed only when it stays inside the folder, or, for a snapshot of the HF cache
 * (models--org--name/snapshots/<commit>/), inside that repository's blobs/ folder where the cache keeps the content.
 */
import { existsSync, lstatSync, realpathSync } from "node:fs";
import { basename, dirname, join, sep } from "node:path";
import { WeitiaoError } from "../util/errors.js";

function within(path: string, root: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

/** join(dir, name), refused when it is a symlink leading outside the model folder (or its cache blobs). */
export function modelFile(dir: string, name: string): string {
  const path = join(dir, name);
  let isLink: boolean;
  try {
    isLink = lstatSync(path).isSymbolicLink();
  } catch {
    return path; // absent: the caller's existsSync says so
  }
  if (!isLink) return path;
  let target: string;
  try {
    target = realpathSync(path);
  } catch {
    throw new WeitiaoError(`${path}: a symlink whose target does not exist`);
  }
  const root = realpathSync(dir);
  const snapshots = dirname(root);
  const allowed = [root];
  if (basename(snapshots) === "snapshots" && basename(dirname(snapshots)).startsWith("models--")) {
    allowed.push(join(dirname(snapshots), "blobs"));
  }
  if (!allowed.some((r) => within(target, r))) {
    throw new WeitiaoError(`${path}: a symlink to ${target}, outside the model folder: refused (copy the file into the folder instead)`);
  }
  return path;
}

/** existsSync of a checked model file. */
export function hasModelFile(dir: string, name: string): boolean {
  return existsSync(modelFile(dir, name));
}
