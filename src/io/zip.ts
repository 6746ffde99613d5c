/**
 * A minimal reader for the zip archives torch.save writes (entries stored uncompressed, ZIP64 when large):
 * the central directory is parsed once and entries are read by name on demand, straight from the file. Every size
 * the archive declares is checked against the file before it is used to allocate or inflate.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { inflateRawSync } from "node:zlib";
import { WeitiaoError } from "../util/errors.js";

interface Entry {
  method: number;
  compressedSize: number;
  size: number;
  headerOffset: number;
}

export class ZipFile {
  private readonly entries = new Map<string, Entry>();
  private readonly fd: number;

  constructor(readonly path: string) {
    this.fd = openSync(path, "r");
    try {
      this.readDirectory(fstatSync(this.fd).size);
    } catch (e) {
      closeSync(this.fd);
      throw e;
    }
  }

  private read(pos: number, len: number): Buffer {
    const buf = Buffer.alloc(len);
    if (readSync(this.fd, buf, 0, len, pos) !== len) throw new WeitiaoError(`${this.path}: unexpected end of file (truncated zip?)`);
    return buf;
  }

  private readDirectory(size: number): void {
    const tailLen = Math.min(size, 65557);
    const tail = this.read(size - tailLen, tailLen);
    const eocd = tail.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
    if (eocd < 0) throw new WeitiaoError(`${this.path}: not a zip archive (a torch checkpoint saved by torch ≥ 1.6 is one)`);
    let count = tail.readUInt16LE(eocd + 10);
    let dirSize = tail.readUInt32LE(eocd + 12);
    let dirOffset = tail.readUInt32LE(eocd + 16);
    if (dirOffset === 0xffffffff || count === 0xffff) {
      const locator = tail.lastIndexOf(Buffer.from([0x50, 0x4b, 0x06, 0x07]), eocd);
      if (locator < 0) throw new WeitiaoError(`${this.path}: ZIP64 archive without its locator`);
      const z64 = this.read(Number(tail.readBigUInt64LE(locator + 8)), 56);
      if (z64.readUInt32LE(0) !== 0x06064b50) throw new WeitiaoError(`${this.path}: bad ZIP64 end of central directory`);
      count = Number(z64.readBigUInt64LE(32));
      dirSize = Number(z64.readBigUInt64LE(40));
      dirOffset = Number(z64.readBigUInt64LE(48));
    }
    if (dirOffset + dirSize > size) throw new WeitiaoError(`${this.path}: central directory lies past the end of the file (truncated?)`);
    const dir = this.read(dirOffset, dirSize);
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > dir.length || dir.readUInt32LE(p) !== 0x02014b50) throw new WeitiaoError(`${this.path}: corrupt central directory`);
      const method = dir.readUInt16LE(p + 10);
      let compressedSize = dir.readUInt32LE(p + 20);
      let entrySize = dir.readUInt32LE(p + 24);
      const nameLen = dir.readUInt16LE(p + 28);
      const extraLen = dir.readUInt16LE(p + 30);
      const commentLen = dir.readUInt16LE(p + 32);
      let headerOffset = dir.readUInt32LE(p + 42);
      if (p + 46 + nameLen + extraLen + commentLen > dir.length) throw new WeitiaoError(`${this.path}: corrupt central directory`);
      const name = dir.toString("utf8", p + 46, p + 46 + nameLen);
      // ZIP64 extra field: the 64-bit values of whichever fields were saturated, in this order.
      let e = p + 46 + nameLen;
      const extraEnd = e + extraLen;
      while (e + 4 <= extraEnd) {
        const id = dir.readUInt16LE(e);
        const len = dir.readUInt16LE(e + 2);
        if (id === 0x0001 && e + 4 + len <= extraEnd) {
          let q = e + 4;
          if (entrySize === 0xffffffff) { entrySize = Number(dir.readBigUInt64LE(q)); q += 8; }
          if (compressedSize === 0xffffffff) { compressedSize = Number(dir.readBigUInt64LE(q)); q += 8; }
          if (headerOffset === 0xffffffff) headerOffset = Number(dir.readBigUInt64LE(q));
        }
        e += 4 + len;
      }
      // Sizes are the archive's claims: hold them to the file before anything is allocated from them. A stored entry
      // is its own size; deflate cannot expand more than 1032:1, so a larger claim is a bomb or corruption.
      const fits = headerOffset + 30 + compressedSize <= size;
      const plausible = method === 0 ? entrySize === compressedSize : method !== 8 || entrySize <= compressedSize * 1032 + 64;
      if (!fits || !plausible) {
        throw new WeitiaoError(
          `${this.path}: entry ${name} claims ${entrySize} bytes (${compressedSize} in the archive) in a ${size}-byte file: corrupt or crafted zip`,
        );
      }
      this.entries.set(name, { method, compressedSize, size: entrySize, headerOffset });
      p = extraEnd + commentLen;
    }
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  size(name: string): number {
    return this.entry(name).size;
  }

  private entry(name: string): Entry {
    const e = this.entries.get(name);
    if (!e) throw new WeitiaoError(`${this.path}: archive has no entry ${name}`);
    return e;
  }

  /** Where an entry's data starts in the file. */
  private dataStart(name: string, e: Entry): number {
    const local = this.read(e.headerOffset, 30);
    if (local.readUInt32LE(0) !== 0x04034b50) throw new WeitiaoError(`${this.path}: corrupt local header of ${name}`);
    return e.headerOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
  }

  /**
   * Bytes [from, from + dst.length) of a stored (uncompressed) entry, read from the file straight into `dst`.
   * Returns false, reading nothing, when the entry is compressed.
   */
  readStoredInto(name: string, from: number, dst: Uint8Array): boolean {
    const e = this.entry(name);
    if (e.method !== 0) return false;
    if (from < 0 || from + dst.length > e.size) throw new WeitiaoError(`${this.path}: ${name} has ${e.size} bytes, not ${from + dst.length}`);
    const at = this.dataStart(name, e) + from;
    if (dst.length > 0 && readSync(this.fd, dst, 0, dst.length, at) !== dst.length) {
      throw new WeitiaoError(`${this.path}: unexpected end of file (truncated zip?)`);
    }
    return true;
  }

  /** The bytes of an entry (stored or deflated), refused when it declares more than `maxSize` bytes. */
  readEntry(name: string, maxSize = Number.MAX_SAFE_INTEGER): Buffer {
    const e = this.entry(name);
    if (e.size > maxSize) throw new WeitiaoError(`${this.path}: entry ${name} declares ${e.size} bytes, more than the ${maxSize} allowed`);
    const start = this.dataStart(name, e);
    if (start + e.compressedSize > fstatSync(this.fd).size) throw new WeitiaoError(`${this.path}: entry ${name} runs past the end of the file (truncated zip?)`);
    const raw = this.read(start, e.compressedSize);
    if (e.method === 0) return raw;
    if (e.method !== 8) throw new WeitiaoError(`${this.path}: entry ${name} uses unsupported compression method ${e.method}`);
    // Inflate no further than the declared size: a bomb stops at its claim instead of filling memory.
    let out: Buffer;
    try {
      out = inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size) });
    } catch (err) {
      throw new WeitiaoError(`${this.path}: entry ${name} does not inflate to its declared ${e.size} bytes (${(err as Error).message})`);
    }
    if (out.length !== e.size) throw new WeitiaoError(`${this.path}: entry ${name} inflates to ${out.length} bytes, not its declared ${e.size}`);
    return out;
  }

  close(): void {
    closeSync(this.fd);
  }
}
