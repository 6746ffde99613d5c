/**
 * safetensors reading and writing (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
 * length, a JSON header of {name: {dtype, shape, data_offsets}}, then the raw little-endian data.
 * Everything in the header is bounds-checked before anything is allocated, so a hostile or truncated file fails
 * with a clear message instead of an out-of-memory crash.
 */
import { closeSync, fstatSync, openSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { WeitiaoError } from "../util/errors.js";

export type SafeDType = "F32" | "F16" | "BF16" | "F64" | "I32" | "I64" | "I16" | "I8" | "U8" | "BOOL";

/** Bytes per element of each dtype (also the element sizes of torch's typed storages). */
export const DTYPE_SIZE: Record<SafeDType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export function isFloatDType(dtype: SafeDType): boolean {
  return dtype === "F32" || dtype === "F16" || dtype === "BF16" || dtype === "F64";
}

/** Largest header we accept (the format's own reference implementation uses 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  dtype: SafeDType;
  shape: number[];
  /** Byte range inside the data section. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** Byte offset of the data section in the file. */
  dataStart: number;
}

/** Parse and validate a header from the first bytes of a file of `fileSize` bytes. */
export function parseHeader(readAt: (pos: number, len: number) => Buffer, fileSize: number, file: string): SafetensorsHeader {
  if (fileSize < 8) throw new WeitiaoError(`${file}: not a safetensors file (only ${fileSize} bytes)`);
  const lenBuf = readAt(0, 8);
  const headerLen = Number(lenBuf.readBigUInt64LE(0));
  if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > fileSize) {
    throw new WeitiaoError(
      `${file}: safetensors header claims ${headerLen} bytes but the file has ${fileSize} (truncated or corrupt file)`,
    );
  }
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readAt(8, headerLen).toString("utf8")) as Record<string, unknown>;
  } catch (e) {
    throw new WeitiaoError(`${file}: safetensors header is not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new WeitiaoError(`${file}: safetensors header is not a JSON object`);
  }
  const dataStart = 8 + headerLen;
  const dataSize = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(json)) {
    if (name === "__metadata__") {
      if (raw !== null && (typeof raw !== "object" || Array.isArray(raw))) throw new WeitiaoError(`${file}: safetensors __metadata__ is not an object`);
      metadata = (raw ?? {}) as Record<string, string>;
      continue;
    }
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
      throw new WeitiaoError(`${file}: safetensors header entry ${name} is ${raw === null ? "null" : typeof raw}, not a tensor description`);
    }
    const t = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = t.dtype as SafeDType;
    if (typeof dtype !== "string" || !(dtype in DTYPE_SIZE)) {
      throw new WeitiaoError(`${file}: tensor ${name} has unsupported dtype ${String(t.dtype)}`);
    }
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new WeitiaoError(`${file}: tensor ${name} has an invalid shape`);
    }
    const offs = t.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new WeitiaoError(`${file}: tensor ${name} has invalid data_offsets`);
    }
    const [begin, end] = offs as [number, number];
    const shape = t.shape as number[];
    const numel = shape.reduce((a, b) => a * b, 1);
    if (end < begin || end > dataSize) {
      throw new WeitiaoError(
        `${file}: tensor ${name} lies at bytes ${begin}-${end} but the data section has ${dataSize} bytes (truncated file?)`,
      );
    }
    if ((end - begin) !== numel * DTYPE_SIZE[dtype]) {
      throw new WeitiaoError(`${file}: tensor ${name} has ${end - begin} bytes for shape [${shape}] of ${dtype}`);
    }
    tensors.set(name, { dtype, shape, begin, end });
  }
  return { tensors, metadata, dataStart };
}

export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Decode raw little-endian bytes of a floating-point dtype into float32. */
export function decodeFloat(bytes: Buffer, dtype: SafeDType, numel: number): Float32Array {
  const out = new Float32Array(numel);
  switch (dtype) {
    case "F32": // the host is little-endian (x86-64, arm64), like the format
      new Uint8Array(out.buffer).set(bytes.subarray(0, numel * 4));
      break;
    case "F64":
      for (let i = 0; i < numel; i++) out[i] = bytes.readDoubleLE(i * 8);
      break;
    case "BF16": {
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < numel; i++) u[i] = bytes.readUInt16LE(i * 2) << 16;
      break;
    }
    case "F16":
      for (let i = 0; i < numel; i++) out[i] = f16ToF32(bytes.readUInt16LE(i * 2));
      break;
    default:
      throw new WeitiaoError(`expected a floating-point tensor, found ${dtype}`);
  }
  return out;
}

/** Decode an integer dtype into Int32 (I64 values must fit). */
export function decodeInt(bytes: Buffer, dtype: SafeDType, numel: number): Int32Array {
  const out = new Int32Array(numel);
  for (let i = 0; i < numel; i++) {
    switch (dtype) {
      case "I32": out[i] = bytes.readInt32LE(i * 4); break;
      case "I64": out[i] = Number(bytes.readBigInt64LE(i * 8)); break;
      case "I16": out[i] = bytes.readInt16LE(i * 2); break;
      case "I8": out[i] = bytes.readInt8(i); break;
      case "U8": case "BOOL": out[i] = bytes.readUInt8(i); break;
      default: throw new WeitiaoError(`expected an integer tensor, found ${dtype}`);
    }
  }
  return out;
}

/** An open safetensors file: header parsed up front, tensors read on demand. */
export class SafetensorsFile {
  readonly header: SafetensorsHeader;
  private constructor(readonly path: string, private readonly fd: number, header: SafetensorsHeader) {
    this.header = header;
  }

  static open(path: string): SafetensorsFile {
    const fd = openSync(path, "r");
    try {
      const size = fstatSync(fd).size;
      const readAt = (pos: number, len: number): Buffer => {
        const buf = Buffer.alloc(len);
        const got = readSync(fd, buf, 0, len, pos);
        if (got !== len) throw new WeitiaoError(`${path}: unexpected end of file`);
        return buf;
      };
      return new SafetensorsFile(path, fd, parseHeader(readAt, size, path));
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  names(): string[] {
    return [...this.header.tensors.keys()];
  }

  info(name: string): TensorInfo {
    const t = this.header.tensors.get(name);
    if (!t) throw new WeitiaoError(`${this.path}: no tensor named ${name}`);
    return t;
  }

  private raw(name: string): { bytes: Buffer; info: TensorInfo } {
    const info = this.info(name);
    const len = info.end - info.begin;
    const bytes = Buffer.alloc(len);
    if (len > 0 && readSync(this.fd, bytes, 0, len, this.header.dataStart + info.begin) !== len) {
      throw new WeitiaoError(`${this.path}: unexpected end of file reading ${name}`);
    }
    return { bytes, info };
  }

  /** A floating-point tensor as float32 (F16/BF16/F64 converted). */
  float(name: string): Float32Array {
    const { bytes, info } = this.raw(name);
    return decodeFloat(bytes, info.dtype, info.shape.reduce((a, b) => a * b, 1));
  }

  /**
   * float(), written into `out` (float32 or float64, one element per value). An F32 tensor is read from the file
   * straight into a float32 `out`: no intermediate buffers, which for a BERT-base checkpoint are 0.8 GB of fresh
   * memory to fault in.
   */
  floatInto(name: string, out: Float32Array | Float64Array): void {
    const info = this.info(name);
    const numel = info.shape.reduce((a, b) => a * b, 1);
    if (out.length !== numel) throw new WeitiaoError(`${this.path}: ${name} has ${numel} values, the destination ${out.length}`);
    if (info.dtype !== "F32" || !(out instanceof Float32Array)) {
      out.set(this.float(name));
      return;
    }
    const len = info.end - info.begin;
    const bytes = new Uint8Array(out.buffer, out.byteOffset, len);
    if (len > 0 && readSync(this.fd, bytes, 0, len, this.header.dataStart + info.begin) !== len) {
      throw new WeitiaoError(`${this.path}: unexpected end of file reading ${name}`);
    }
  }

  int(name: string): Int32Array {
    const { bytes, info } = this.raw(name);
    return decodeInt(bytes, info.dtype, info.shape.reduce((a, b) => a * b, 1));
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Read every tensor of a file as float32 (integer tensors are converted too). */
export function readSafetensors(path: string): Map<string, { shape: number[]; data: Float32Array }> {
  const f = SafetensorsFile.open(path);
  try {
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const name of f.names()) {
      const info = f.info(name);
      out.set(name, { shape: info.shape, data: isFloatDType(info.dtype) ? f.float(name) : Float32Array.from(f.int(name)) });
    }
    return out;
  } finally {
    f.close();
  }
}

export interface TensorToWrite {
  dtype: "F32" | "I32" | "I64";
  shape: number[];
  data: Float32Array | Int32Array | BigInt64Array;
}

/** The file's first bytes (length + JSON header, padded so data starts 8-byte aligned) and the tensor order. */
function safetensorsHead(tensors: Map<string, TensorToWrite>, metadata: Record<string, string>): { head: Buffer; names: string[] } {
  const names = [...tensors.keys()].sort(); // as the Python library orders them
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const bytes = t.data.byteLength;
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let headerJson = JSON.stringify(header);
  while ((8 + Buffer.byteLength(headerJson)) % 8 !== 0) headerJson += " ";
  const headerBuf = Buffer.from(headerJson, "utf8");
  const head = Buffer.alloc(8 + headerBuf.length);
  head.writeBigUInt64LE(BigInt(headerBuf.length), 0);
  headerBuf.copy(head, 8);
  return { head, names };
}

const bytesOf = (t: TensorToWrite): Buffer => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);

/** Serialise tensors (sorted by name, as the Python library does) with 8-byte-aligned data, into one buffer. */
export function encodeSafetensors(tensors: Map<string, TensorToWrite>, metadata: Record<string, string> = {}): Buffer {
  const { head, names } = safetensorsHead(tensors, metadata);
  return Buffer.concat([head, ...names.map((n) => bytesOf(tensors.get(n)!))]);
}

/**
 * Write atomically: a temporary file in the same folder, then rename. Each tensor's bytes go to the file from where
 * they lie (no file-sized buffer: for BERT-base that was 0.4 GB of fresh memory and seconds of page faults).
 */
export function writeSafetensors(path: string, tensors: Map<string, TensorToWrite>, metadata: Record<string, string> = {}): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const { head, names } = safetensorsHead(tensors, metadata);
  const fd = openSync(tmp, "w");
  try {
    writeAll(fd, head);
    for (const name of names) writeAll(fd, bytesOf(tensors.get(name)!));
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

function writeAll(fd: number, bytes: Buffer): void {
  for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, bytes.length - at);
}
