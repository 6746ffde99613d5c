/**
 * Reading torch.save checkpoints (pytorch_model.bin, the tutorial's state_dict .pth) without Python and without
 * running any code from the file. A pickle is a program; this reader executes only the opcodes a state dict
 * needs and knows only the callables torch writes for tensors (OrderedDict, _rebuild_tensor_v2,
 * _rebuild_parameter, the typed storages). Any other GLOBAL — os.system, builtins.eval, … — stops loading with an
 * error before anything is called.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { WeitiaoError } from "../util/errors.js";
import { decodeFloat, decodeInt, DTYPE_SIZE, isFloatDType, type SafeDType } from "./safetensors.js";
import { ZipFile } from "./zip.js";
import type { TensorSource } from "./checkpoint.js";
import type { FArray } from "../backend/types.js";

class Tuple {
  constructor(readonly items: unknown[]) {}
}
class Global {
  constructor(readonly module: string, readonly name: string) {}
  get id(): string {
    return `${this.module}.${this.name}`;
  }
}
interface StorageRef {
  kind: "storage";
  dtype: SafeDType;
  key: string;
  numel: number;
}
export interface TensorRef {
  kind: "tensor";
  storage: StorageRef;
  offset: number;
  shape: number[];
  stride: number[];
}
const MARK = Symbol("mark");

/** A pickle that runs past the end of its buffer (the legacy reader then reads more of the file). */
class TruncatedPickle extends WeitiaoError {}

const STORAGE_DTYPES: Record<string, SafeDType> = {
  FloatStorage: "F32", HalfStorage: "F16", BFloat16Storage: "BF16", DoubleStorage: "F64",
  LongStorage: "I64", IntStorage: "I32", ShortStorage: "I16", CharStorage: "I8", ByteStorage: "U8", BoolStorage: "BOOL",
};

const ALLOWED = new Set([
  "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
  ...Object.keys(STORAGE_DTYPES).map((s) => `torch.${s}`),
]);

function asInt(v: unknown, what: string, file: string): number {
  if (typeof v === "number" && Number.isSafeInteger(v)) return v;
  if (typeof v === "bigint" && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  throw new WeitiaoError(`${file}: expected an integer for ${what}`);
}

/** Offsets, sizes, strides and element counts: a negative one would read before its storage (or as NaN). */
function count(v: unknown, what: string, file: string): number {
  const n = asInt(v, what, file);
  if (n < 0) throw new WeitiaoError(`${file}: negative ${what} (${n}) in the checkpoint: corrupt or crafted`);
  return n;
}

function intList(v: unknown, what: string, file: string): number[] {
  if (!(v instanceof Tuple)) throw new WeitiaoError(`${file}: expected a tuple for ${what}`);
  return v.items.map((x) => count(x, what, file));
}

function describe(v: unknown): string {
  return v instanceof Map ? "dict" : Array.isArray(v) ? "list" : v instanceof Tuple ? "tuple" : v === MARK ? "mark" : v === undefined ? "empty stack" : typeof v;
}

/** Call one of the allowed callables. */
function call(fn: Global, args: unknown[], file: string): unknown {
  switch (fn.id) {
    case "collections.OrderedDict":
      return new Map<unknown, unknown>();
    case "torch._utils._rebuild_tensor_v2": {
      const [storage, offset, size, stride] = args;
      if (!storage || (storage as StorageRef).kind !== "storage") throw new WeitiaoError(`${file}: tensor without a storage`);
      const t = {
        kind: "tensor", storage: storage as StorageRef, offset: count(offset, "storage offset", file),
        shape: intList(size, "tensor size", file), stride: intList(stride, "tensor stride", file),
      } satisfies TensorRef;
      if (t.shape.length !== t.stride.length) throw new WeitiaoError(`${file}: a tensor with ${t.shape.length} sizes and ${t.stride.length} strides`);
      if (t.shape.reduce((a, b) => a * b, 1) > 2 ** 31 - 1) throw new WeitiaoError(`${file}: a tensor of more than 2³¹ elements`);
      return t;
    }
    case "torch._utils._rebuild_parameter":
      return args[0];
    default:
      throw new WeitiaoError(`${file}: cannot call ${fn.id}`);
  }
}

/** Run a pickle in the restricted VM; returns the top-level object. */
export function unpickle(data: Buffer, file: string): unknown {
  return runPickle(data, file, 0).value;
}

/** Run the pickle that starts at byte `start`; returns its object and the byte after its STOP. */
export function runPickle(data: Buffer, file: string, start: number): { value: unknown; end: number } {
  try {
    return runPickleOps(data, file, start);
  } catch (e) {
    // Anything the VM did not foresee (a string where a tuple goes, a huge memo index) is still a corrupt file.
    if (e instanceof WeitiaoError) throw e;
    throw new WeitiaoError(`${file}: corrupt pickle (${(e as Error).message})`);
  }
}

function runPickleOps(data: Buffer, file: string, start: number): { value: unknown; end: number } {
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let p = start;
  const need = (n: number): void => {
    if (p + n > data.length) throw new TruncatedPickle(`${file}: truncated pickle`);
  };
  const u8 = (): number => (need(1), data[p++]!);
  const u16 = (): number => (need(2), (p += 2), data.readUInt16LE(p - 2));
  const u32 = (): number => (need(4), (p += 4), data.readUInt32LE(p - 4));
  const bytes = (n: number): Buffer => (need(n), (p += n), data.subarray(p - n, p));
  const line = (): string => {
    const end = data.indexOf(0x0a, p);
    if (end < 0) throw new TruncatedPickle(`${file}: truncated pickle`);
    const s = data.toString("utf8", p, end);
    p = end + 1;
    return s;
  };
  const pop = (): unknown => {
    if (stack.length === 0) throw new WeitiaoError(`${file}: corrupt pickle (stack underflow)`);
    return stack.pop();
  };
  const popMark = (): unknown[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) throw new WeitiaoError(`${file}: corrupt pickle (no mark)`);
    const items = stack.splice(i);
    items.shift();
    return items;
  };
  const global = (module: string, name: string): Global => {
    const g = new Global(module, name);
    if (!ALLOWED.has(g.id)) {
      throw new WeitiaoError(
        `${file}: refused: the checkpoint's pickle references ${g.id}, which is not part of a tensor state dict ` +
          "(weitiao never runs code from a checkpoint; convert it to safetensors with the library that made it)",
      );
    }
    return g;
  };
  const top = (): unknown => stack[stack.length - 1];
  // APPEND and SETITEM act on whatever is on the stack: a crafted pickle puts the wrong container (or none) there.
  const list = (): unknown[] => {
    const t = top();
    if (!Array.isArray(t)) throw new WeitiaoError(`${file}: corrupt pickle (APPEND onto a ${describe(t)}) at byte ${p - 1}`);
    return t;
  };
  const dict = (): Map<unknown, unknown> => {
    const t = top();
    if (!(t instanceof Map)) throw new WeitiaoError(`${file}: corrupt pickle (SETITEM onto a ${describe(t)}) at byte ${p - 1}`);
    return t;
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO
      case 0x95: bytes(8); break; // FRAME
      case 0x63: { const m = line(); stack.push(global(m, line())); break; } // GLOBAL
      case 0x93: { const name = pop(); const m = pop(); stack.push(global(String(m), String(name))); break; } // STACK_GLOBAL
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const k = op === 0x68 ? u8() : u32();
        if (!memo.has(k)) throw new WeitiaoError(`${file}: corrupt pickle (memo ${k})`);
        stack.push(memo.get(k));
        break;
      }
      case 0x28: stack.push(MARK); break;
      case 0x29: stack.push(new Tuple([])); break;
      case 0x74: stack.push(new Tuple(popMark())); break;
      case 0x85: stack.push(new Tuple([pop()])); break;
      case 0x86: { const b = pop(); stack.push(new Tuple([pop(), b])); break; }
      case 0x87: { const c = pop(); const b = pop(); stack.push(new Tuple([pop(), b, c])); break; }
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x61: { const v = pop(); list().push(v); break; } // APPEND
      case 0x65: { const items = popMark(); list().push(...items); break; } // APPENDS
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x73: { const v = pop(); const k = pop(); dict().set(k, v); break; } // SETITEM
      case 0x75: { // SETITEMS
        const items = popMark();
        const d = dict();
        for (let i = 0; i + 1 < items.length; i += 2) d.set(items[i], items[i + 1]);
        break;
      }
      case 0x58: stack.push(bytes(u32()).toString("utf8")); break; // BINUNICODE
      case 0x8c: stack.push(bytes(u8()).toString("utf8")); break; // SHORT_BINUNICODE
      case 0x55: stack.push(bytes(u8()).toString("latin1")); break; // SHORT_BINSTRING
      case 0x54: stack.push(bytes(u32()).toString("latin1")); break; // BINSTRING
      case 0x43: stack.push(bytes(u8())); break; // SHORT_BINBYTES
      case 0x42: stack.push(bytes(u32())); break; // BINBYTES
      case 0x4a: stack.push((need(4), (p += 4), data.readInt32LE(p - 4))); break; // BININT
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x8a: { // LONG1
        const n = u8();
        const b = bytes(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
        if (n > 0 && b[n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: stack.push((need(8), (p += 8), data.readDoubleBE(p - 8))); break; // BINFLOAT
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break;
      case 0x89: stack.push(false); break;
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop();
        if (!(fn instanceof Global) || !(args instanceof Tuple)) throw new WeitiaoError(`${file}: corrupt pickle (REDUCE)`);
        stack.push(call(fn, args.items, file));
        break;
      }
      case 0x51: { // BINPERSID: ('storage', StorageType, key, location, numel)
        const pid = pop();
        if (!(pid instanceof Tuple) || pid.items[0] !== "storage" || !(pid.items[1] instanceof Global)) {
          throw new WeitiaoError(`${file}: unsupported persistent id in pickle`);
        }
        const dtype = STORAGE_DTYPES[(pid.items[1] as Global).name];
        if (!dtype) throw new WeitiaoError(`${file}: unsupported storage type ${(pid.items[1] as Global).id} in pickle`);
        stack.push({ kind: "storage", dtype, key: String(pid.items[2]), numel: count(pid.items[4], "storage size", file) } satisfies StorageRef);
        break;
      }
      case 0x62: pop(); break; // BUILD: state of an OrderedDict (its _metadata) is not needed
      case 0x2e: return { value: pop(), end: p }; // STOP
      default:
        throw new WeitiaoError(`${file}: unsupported pickle opcode 0x${op.toString(16)} at byte ${p - 1}`);
    }
  }
}

/**
 * Tensors of a state dict, given how to get each storage's bytes, and optionally how to read a byte range of a
 * storage straight into a buffer (false when it cannot).
 */
function stateDictSource(
  path: string,
  root: unknown,
  storageBytes: (ref: StorageRef) => Buffer,
  close: () => void,
  storageRangeInto?: (ref: StorageRef, from: number, dst: Uint8Array) => boolean,
): TensorSource {
  if (!(root instanceof Map)) throw new WeitiaoError(`${path}: the checkpoint is not a state dict`);
  const tensors = new Map<string, TensorRef>();
  for (const [k, v] of root) {
    if (typeof k === "string" && v && (v as TensorRef).kind === "tensor") tensors.set(k, v as TensorRef);
  }
  /** The tensor, its element count, and whether it is contiguous (a plain slice of its storage). */
  const tensor = (name: string): { t: TensorRef; numel: number; contiguous: boolean } => {
    const t = tensors.get(name);
    if (!t) throw new WeitiaoError(`${path}: no tensor ${name}`);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    let maxIndex = t.offset;
    t.shape.forEach((d, i) => (maxIndex += d > 0 ? (d - 1) * t.stride[i]! : 0));
    if (numel > 0 && maxIndex >= t.storage.numel) throw new WeitiaoError(`${path}: tensor ${name} reaches past its storage`);
    // Only broadcast views (stride 0) have more elements than their storage; a state dict never holds one, and a
    // crafted one would allocate shape-many floats from a few bytes.
    if (numel > t.storage.numel) throw new WeitiaoError(`${path}: tensor ${name} has more elements than its storage`);
    return { t, numel, contiguous: t.stride.every((st, i) => st === t.shape.slice(i + 1).reduce((a, b) => a * b, 1)) };
  };
  const read = (name: string): Float32Array => {
    const { t, numel, contiguous } = tensor(name);
    const bytes = storageBytes(t.storage);
    if (bytes.length < t.storage.numel * DTYPE_SIZE[t.storage.dtype]) throw new WeitiaoError(`${path}: storage of ${name} is truncated`);
    // An aligned F32 storage is viewed in place, not decoded into a copy (BERT-base: 0.4 GB less to allocate).
    const all = t.storage.dtype === "F32" && bytes.byteOffset % 4 === 0
      ? new Float32Array(bytes.buffer, bytes.byteOffset, t.storage.numel)
      : isFloatDType(t.storage.dtype) ? decodeFloat(bytes, t.storage.dtype, t.storage.numel) : Float32Array.from(decodeInt(bytes, t.storage.dtype, t.storage.numel));
    // Gather by strides (contiguous tensors are a plain slice). `bytes` are this call's own (a fresh read), so a
    // slice can be a view.
    if (contiguous) return all.subarray(t.offset, t.offset + numel);
    const out = new Float32Array(numel);
    const idx = new Array<number>(t.shape.length).fill(0);
    for (let i = 0; i < numel; i++) {
      let src = t.offset;
      for (let d = 0; d < idx.length; d++) src += idx[d]! * t.stride[d]!;
      out[i] = all[src]!;
      for (let d = idx.length - 1; d >= 0; d--) {
        if (++idx[d]! < t.shape[d]!) break;
        idx[d] = 0;
      }
    }
    return out;
  };
  // A contiguous F32 tensor goes from the file straight into a float32 destination (no storage-sized buffer).
  const readInto = (name: string, out: FArray): void => {
    const { t, numel, contiguous } = tensor(name);
    if (out.length !== numel) throw new WeitiaoError(`${path}: ${name} has ${numel} values, the destination ${out.length}`);
    const direct = contiguous && t.storage.dtype === "F32" && out instanceof Float32Array &&
      storageRangeInto?.(t.storage, t.offset * 4, new Uint8Array(out.buffer, out.byteOffset, numel * 4));
    if (!direct) out.set(read(name));
  };
  return { names: () => [...tensors.keys()], shape: (n) => tensors.get(n)!.shape, read, readInto, close };
}

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

/**
 * torch's legacy format (torch < 1.6, or _use_new_zipfile_serialization=False): pickles of the magic number, the
 * protocol version, system info and the state dict, a pickled list of storage keys, then each storage as an
 * 8-byte element count followed by its raw bytes, in that order. Only the pickles are read whole (from a prefix
 * of the file, grown until they fit); storages are read from the file when a tensor is, contiguous F32 tensors
 * straight into their destination, as for zip checkpoints.
 */
function legacyTorchSource(path: string, headBytes: number): TensorSource {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const readAt = (dst: Uint8Array, pos: number, what: string): void => {
      if (dst.length > 0 && readSync(fd, dst, 0, dst.length, pos) !== dst.length) throw new WeitiaoError(`${path}: truncated legacy checkpoint (${what})`);
    };
    let head: ReturnType<typeof legacyPickles>;
    for (let prefix = Math.min(size, headBytes); ; prefix = Math.min(size, prefix * 8)) {
      const data = Buffer.alloc(prefix);
      readAt(data, 0, "header");
      try {
        head = legacyPickles(path, data);
        break;
      } catch (e) {
        if (!(e instanceof TruncatedPickle) || prefix >= size) throw e; // else they run past this prefix: read more
      }
    }
    const { main, keys, end } = head;
    // Storage dtypes come from the references in the state dict.
    const dtypes = new Map<string, SafeDType>();
    if (main instanceof Map) for (const v of main.values()) if ((v as TensorRef)?.kind === "tensor") dtypes.set((v as TensorRef).storage.key, (v as TensorRef).storage.dtype);
    const storages = new Map<string, { at: number; bytes: number }>();
    const count = Buffer.alloc(8);
    for (let pos = end, i = 0; i < keys.length; i++) {
      const key = String(keys[i]);
      readAt(count, pos, `storage ${key}`);
      const numel = Number(count.readBigInt64LE(0));
      const bytes = numel * DTYPE_SIZE[dtypes.get(key) ?? "F32"];
      if (numel < 0 || pos + 8 + bytes > size) throw new WeitiaoError(`${path}: truncated legacy checkpoint (storage ${key})`);
      storages.set(key, { at: pos + 8, bytes });
      pos += 8 + bytes;
    }
    const storage = (ref: StorageRef): { at: number; bytes: number } => {
      const s = storages.get(ref.key);
      if (!s) throw new WeitiaoError(`${path}: storage ${ref.key} is missing`);
      return s;
    };
    /** Bytes [from, from + dst.length) of a storage, read from the file into dst. */
    const rangeInto = (ref: StorageRef, from: number, dst: Uint8Array): boolean => {
      const s = storage(ref);
      if (from < 0 || from + dst.length > s.bytes) throw new WeitiaoError(`${path}: storage ${ref.key} has ${s.bytes} bytes, not ${from + dst.length}`);
      readAt(dst, s.at + from, `storage ${ref.key}`);
      return true;
    };
    const whole = (ref: StorageRef): Buffer => {
      const data = Buffer.alloc(storage(ref).bytes);
      rangeInto(ref, 0, data);
      return data;
    };
    return stateDictSource(path, main, whole, () => closeSync(fd), rangeInto);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** The pickles at the start of a legacy checkpoint: its state dict, its storage keys, and where the storages start. */
function legacyPickles(path: string, data: Buffer): { main: unknown; keys: unknown[]; end: number } {
  let r = runPickle(data, path, 0);
  if (r.value !== LEGACY_MAGIC) throw new WeitiaoError(`${path}: not a torch checkpoint (no zip archive, no legacy magic number)`);
  r = runPickle(data, path, r.end);
  if (r.value !== 1001) throw new WeitiaoError(`${path}: unsupported legacy torch protocol ${String(r.value)}`);
  r = runPickle(data, path, r.end);
  const sysInfo = r.value as Map<string, unknown>;
  if (sysInfo instanceof Map && sysInfo.get("little_endian") === false) throw new WeitiaoError(`${path}: big-endian checkpoints are not supported`);
  const main = runPickle(data, path, r.end);
  const keys = runPickle(data, path, main.end);
  if (!Array.isArray(keys.value)) throw new WeitiaoError(`${path}: corrupt legacy checkpoint (storage key list)`);
  return { main: main.value, keys: keys.value, end: keys.end };
}

/**
 * A torch.save checkpoint (zip, or the legacy format) as a TensorSource. `legacyHeadBytes`: how much of a legacy
 * file to read first for its pickles (grown ×8 until they fit; tests make it small).
 */
export function torchSource(path: string, { legacyHeadBytes = 1 << 20 } = {}): TensorSource {
  const head = Buffer.alloc(4);
  const fd = openSync(path, "r");
  readSync(fd, head, 0, 4, 0);
  closeSync(fd);
  if (head[0] === 0x80 && head[1] === 0x02) return legacyTorchSource(path, legacyHeadBytes);
  let zip: ZipFile;
  try {
    zip = new ZipFile(path);
  } catch (e) {
    if (e instanceof WeitiaoError) throw e;
    throw new WeitiaoError(`${path}: cannot read (${(e as Error).message})`);
  }
  try {
    const pkl = zip.names().find((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (!pkl) throw new WeitiaoError(`${path}: no data.pkl inside (not a torch.save checkpoint)`);
    const prefix = pkl.slice(0, -"data.pkl".length);
    // A state dict's pickle is kilobytes (BERT-large: ~100 KB); 256 MiB is far past any real one.
    const root = unpickle(zip.readEntry(pkl, 256 << 20), path);
    const entryOf = (ref: StorageRef): string => {
      const entry = `${prefix}data/${ref.key}`;
      if (!zip.has(entry)) throw new WeitiaoError(`${path}: storage ${ref.key} is missing`);
      return entry;
    };
    return stateDictSource(path, root, (ref) => zip.readEntry(entryOf(ref)), () => zip.close(),
      (ref, from, dst) => zip.readStoredInto(entryOf(ref), from, dst));
  } catch (e) {
    zip.close();
    throw e;
  }
}
