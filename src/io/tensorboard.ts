/**
 * `--report-to tensorboard`: scalars in TensorBoard's event-file format, as HF's TensorBoardCallback logs them
 * (`train/loss`, `train/learning_rate`, `eval/accuracy`, … at the global step). The npm writer we know
 * (@tensorflow/tfjs-node's summaryFileWriter) needs TensorFlow's native library, so this is the documented record
 * format itself: each record is its length (uint64 LE),
 * the masked CRC-32C of the length, the bytes of an `Event` protobuf, their masked CRC-32C. The protobuf has four
 * fields here (wall_time, step, file_version, summary.value[tag, simple_value]), encoded by hand below.
 */
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1; // Castagnoli, reflected
  return c >>> 0;
});

export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotate right by 15 and add a constant. */
export function maskedCrc(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

function varint(n: number | bigint): number[] {
  let v = BigInt(n);
  const out: number[] = [];
  do {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? b | 0x80 : b);
  } while (v > 0n);
  return out;
}

const key = (field: number, wire: number): number[] => varint((field << 3) | wire);
const bytesField = (field: number, data: Uint8Array): number[] => [...key(field, 2), ...varint(data.length), ...data];

/** An Event: wall_time (1, double), step (2, int64), then file_version (3) or a summary (5) of one simple_value. */
export function encodeEvent(wallTime: number, step: number, content: { fileVersion: string } | { tag: string; value: number }): Uint8Array {
  const time = new Uint8Array(8);
  new DataView(time.buffer).setFloat64(0, wallTime, true);
  const out = [...key(1, 1), ...time, ...key(2, 0), ...varint(step)];
  if ("fileVersion" in content) out.push(...bytesField(3, new TextEncoder().encode(content.fileVersion)));
  else {
    const f = new Uint8Array(4);
    new DataView(f.buffer).setFloat32(0, content.value, true);
    const value = [...bytesField(1, new TextEncoder().encode(content.tag)), ...key(2, 5), ...f]; // Summary.Value: tag, simple_value
    out.push(...bytesField(5, Uint8Array.from(bytesField(1, Uint8Array.from(value))))); // Summary { repeated Value value = 1 }
  }
  return Uint8Array.from(out);
}

/** One TFRecord around `data`. */
export function record(data: Uint8Array): Uint8Array {
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(data.length), true);
  const out = new Uint8Array(8 + 4 + data.length + 4);
  const view = new DataView(out.buffer);
  out.set(len, 0);
  view.setUint32(8, maskedCrc(len), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc(data), true);
  return out;
}

/** HF's rewrite_logs: eval_x → eval/x, test_x → test/x, the rest train/x. */
export function tensorboardTag(key: string): string {
  for (const p of ["eval_", "test_"]) if (key.startsWith(p)) return `${p.slice(0, -1)}/${key.slice(p.length)}`;
  return `train/${key}`;
}

/** An event file in `dir` named as TensorBoard's writers name them, written as the run logs. */
export class TensorBoardWriter {
  private readonly fd: number;
  readonly file: string;

  constructor(dir: string) {
    mkdirSync(dir, { recursive: true });
    this.file = join(dir, `events.out.tfevents.${Math.floor(Date.now() / 1000)}.${hostname()}.${process.pid}.0`);
    this.fd = openSync(this.file, "a");
    writeSync(this.fd, record(encodeEvent(Date.now() / 1000, 0, { fileVersion: "brain.Event:2" })));
  }

  /** A log entry's numbers (not its step or epoch counters' own tags), at its step. */
  log(entry: Record<string, number>): void {
    const step = entry.step ?? 0;
    for (const [k, v] of Object.entries(entry)) {
      if (k === "step" || typeof v !== "number" || !Number.isFinite(v)) continue;
      writeSync(this.fd, record(encodeEvent(Date.now() / 1000, step, { tag: tensorboardTag(k), value: v })));
    }
  }

  close(): void {
    closeSync(this.fd);
  }
}
