/**
 * Reading labelled text files: CSV/TSV (RFC 4180 via csv-parse: quoting, embedded newlines, BOM, CRLF) and
 * JSONL. Every row keeps its source line so errors can say file:line. Nothing is dropped silently: rows that
 * cannot be used are reported with the reason.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { extname, join } from "node:path";
import { parse } from "csv-parse/sync";
import { WeitiaoError } from "../util/errors.js";

export interface RawRow {
  /** 1-based line of the row's start in its file. */
  line: number;
  file: string;
  fields: Record<string, unknown>;
}

export interface ReadOptions {
  /** Treat the first CSV/TSV line as data; columns are then named by index ("0", "1", …). */
  noHeader?: boolean;
  /**
   * "csv": RFC 4180 quotes (a field in "…" may hold the delimiter, newlines and "" for a quote); "none": every " is
   * text. Default: csv for .csv, none for .tsv/.tab, which are not RFC 4180 (CLUE's TNEWS has bare quotes in fields).
   */
  quoting?: Quoting;
  /** Read .txt files as plain text, one row per line (field "text"), as datasets' text loader does (masked LM). */
  plainText?: boolean;
}

export const QUOTINGS = ["csv", "none"] as const;
export type Quoting = (typeof QUOTINGS)[number];

/** Reject what is clearly not UTF-8 text before parsing, with a hint. */
export function readText(file: string): string {
  let st;
  try {
    st = statSync(file);
  } catch {
    throw new WeitiaoError(`${file}: file not found`);
  }
  if (st.isDirectory()) throw new WeitiaoError(`${file}: is a folder, expected a data file`);
  const buf = readFileSync(file);
  if (buf.length === 0) throw new WeitiaoError(`${file}: file is empty`);
  if (buf.length >= 2 && ((buf[0] === 0xff && buf[1] === 0xfe) || (buf[0] === 0xfe && buf[1] === 0xff))) {
    throw new WeitiaoError(`${file}: UTF-16 text is not supported; save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)`);
  }
  const probe = buf.subarray(0, 8192);
  if (probe.includes(0)) throw new WeitiaoError(`${file}: looks like a binary file (NUL bytes), expected UTF-8 text`);
  const text = new TextDecoder("utf-8", { fatal: false }).decode(buf);
  const bad = text.indexOf("\uFFFD");
  if (bad >= 0 && !buf.includes(Buffer.from("\uFFFD"))) {
    const line = text.slice(0, bad).split("\n").length;
    throw new WeitiaoError(
      `${file}:${line}: not valid UTF-8 (GBK/GB18030 export?); convert it first, e.g. iconv -f GB18030 -t UTF-8 ${file} > out.csv`,
    );
  }
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function readDelimited(file: string, delimiter: string, opts: ReadOptions): RawRow[] {
  const text = readText(file);
  const quoting = opts.quoting ?? (delimiter === "\t" ? "none" : "csv");
  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(text, {
      delimiter,
      quote: quoting === "csv" ? '"' : false,
      relax_column_count: true,
      skip_empty_lines: true,
      info: true,
    }) as unknown as { record: string[]; info: { lines: number } }[];
  } catch (e) {
    const err = e as Error & { lines?: number };
    const where = err.lines ? `${file}:${err.lines}` : file;
    const hint = quoting === "csv" ? "; if quotes in this file are plain text, read it with --quoting none" : "";
    throw new WeitiaoError(`${where}: malformed ${delimiter === "\t" ? "TSV" : "CSV"} (${err.message.replace(/^Invalid \w+: /, "")})${hint}`);
  }
  if (records.length === 0) throw new WeitiaoError(`${file}: file has no rows`);
  // csv-parse reports the line where a record ends; track where each one starts.
  let header: string[];
  let start = 0;
  let nextLine = 1;
  const rows: RawRow[] = [];
  if (opts.noHeader) {
    header = records[0]!.record.map((_, i) => String(i));
  } else {
    header = records[0]!.record.map((h) => h.trim());
    const dup = header.find((h, i) => header.indexOf(h) !== i);
    if (dup !== undefined) throw new WeitiaoError(`${file}:1: duplicate column name "${dup}" in the header`);
    nextLine = records[0]!.info.lines + 1;
    start = 1;
    if (records.length === 1) throw new WeitiaoError(`${file}: has a header but no data rows`);
  }
  for (let r = start; r < records.length; r++) {
    const { record, info } = records[r]!;
    const line = nextLine;
    nextLine = info.lines + 1;
    if (record.length !== header.length) {
      throw new WeitiaoError(`${file}:${line}: expected ${header.length} columns (${header.join(", ")}), found ${record.length}`);
    }
    rows.push({ line, file, fields: Object.fromEntries(header.map((h, i) => [h, record[i]])) });
  }
  return rows;
}

function readJsonl(file: string): RawRow[] {
  const text = readText(file);
  const rows: RawRow[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    if (raw.trim() === "") return;
    let obj: unknown;
    try {
      obj = JSON.parse(raw);
    } catch (e) {
      throw new WeitiaoError(`${file}:${i + 1}: invalid JSON (${(e as Error).message})`);
    }
    if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
      throw new WeitiaoError(`${file}:${i + 1}: each line must be a JSON object`);
    }
    rows.push({ line: i + 1, file, fields: obj as Record<string, unknown> });
  });
  if (rows.length === 0) throw new WeitiaoError(`${file}: file has no rows`);
  return rows;
}

/** Read rows from a .csv, .tsv, .jsonl/.json file. */
export function readRows(file: string, opts: ReadOptions = {}): RawRow[] {
  const ext = extname(file).toLowerCase();
  if (opts.plainText && ext === ".txt") {
    const lines = readText(file).replace(/\r\n?/g, "\n").split("\n");
    if (lines.at(-1) === "") lines.pop();
    return lines.map((text, i) => ({ line: i + 1, file, fields: { text } }));
  }
  if (ext === ".jsonl" || ext === ".json" || ext === ".ndjson") return readJsonl(file);
  if (ext === ".tsv" || ext === ".tab") return readDelimited(file, "\t", opts);
  return readDelimited(file, ",", opts);
}

const DATA_EXTENSIONS = [".csv", ".tsv", ".tab", ".jsonl", ".json", ".ndjson"];

/** Read a comma-separated list of files and folders (a folder: its data files, in name order) into one list. */
export function readRowsMany(spec: string, opts: ReadOptions = {}): RawRow[] {
  return spec.split(",").map((f) => f.trim()).filter(Boolean).flatMap((f) => {
    if (existsSync(f) && statSync(f).isDirectory()) {
      const exts = opts.plainText ? [...DATA_EXTENSIONS, ".txt"] : DATA_EXTENSIONS;
      const files = readdirSync(f).filter((n) => exts.includes(extname(n).toLowerCase())).sort();
      if (files.length === 0) throw new WeitiaoError(`${f}: folder has no .csv, .tsv or .jsonl files${opts.plainText ? " (or .txt)" : ""}`);
      return files.flatMap((n) => readRows(join(f, n), opts));
    }
    return readRows(f, opts);
  });
}
