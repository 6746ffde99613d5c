/**
 * Entity-level scores as seqeval computes them in its default mode (conlleval's chunking, the metric HF's run_ner
 * reports): chunks are read from the tag sequences with B/I/E/S prefixes (BIO, IOB1, BIOES alike; an I- without a B-
 * starts a chunk), and an entity counts when its type, start and end all match.
 */

export interface Entity {
  type: string;
  /** First and last word index (inclusive). */
  start: number;
  end: number;
}

function split(tag: string): [string, string] {
  const prefix = tag[0] ?? "O";
  const rest = tag.slice(1);
  const dash = rest.indexOf("-");
  const type = (dash >= 0 ? rest.slice(dash + 1) : rest) || "_";
  return [prefix, type];
}

function endOfChunk(prev: string, tag: string, prevType: string, type: string): boolean {
  if (prev === "E" || prev === "S") return true;
  if ((prev === "B" || prev === "I") && (tag === "B" || tag === "S" || tag === "O")) return true;
  return prev !== "O" && prev !== "." && prevType !== type;
}

function startOfChunk(prev: string, tag: string, prevType: string, type: string): boolean {
  if (tag === "B" || tag === "S") return true;
  if ((prev === "E" || prev === "S" || prev === "O") && (tag === "E" || tag === "I")) return true;
  return tag !== "O" && tag !== "." && prevType !== type;
}

/** The entities of one tag sequence (seqeval's get_entities). */
export function entities(tags: string[]): Entity[] {
  const out: Entity[] = [];
  let prev = "O";
  let prevType = "";
  let begin = 0;
  [...tags, "O"].forEach((t, i) => {
    const [tag, type] = split(t);
    if (endOfChunk(prev, tag, prevType, type)) out.push({ type: prevType, start: begin, end: i - 1 });
    if (startOfChunk(prev, tag, prevType, type)) begin = i;
    prev = tag;
    prevType = type;
  });
  return out;
}

export interface EntityScores {
  precision: number;
  recall: number;
  f1: number;
  /** Entities in the reference. */
  number: number;
}

export interface SeqevalResult {
  /** Micro-averaged over every entity type. */
  precision: number;
  recall: number;
  f1: number;
  /** Word-level tag accuracy. */
  accuracy: number;
  perType: Record<string, EntityScores>;
  /**
   * Which type a reference entity was predicted as, span for span: `types` are the entity types and then "O"; row =
   * the reference type, column = the predicted one; a missed entity counts in column O, a spurious one in row O.
   */
  confusion: { types: string[]; matrix: number[][] };
}

function scores(tp: number, predicted: number, gold: number): EntityScores {
  const precision = predicted ? tp / predicted : 0;
  const recall = gold ? tp / gold : 0;
  return { precision, recall, f1: precision + recall ? (2 * precision * recall) / (precision + recall) : 0, number: gold };
}

/** Scores of predicted against reference tag sequences (one pair of equal-length sequences per sentence). */
export function seqeval(gold: string[][], predicted: string[][]): SeqevalResult {
  const tp = new Map<string, number>();
  const nGold = new Map<string, number>();
  const nPred = new Map<string, number>();
  const bump = (m: Map<string, number>, k: string): void => void m.set(k, (m.get(k) ?? 0) + 1);
  let right = 0;
  let words = 0;
  const pairs: [string, string][] = [];
  gold.forEach((g, s) => {
    const p = predicted[s]!;
    g.forEach((t, i) => {
      words++;
      if (p[i] === t) right++;
    });
    const key = (e: Entity): string => `${e.type}\u0000${e.start}\u0000${e.end}`;
    const goldSet = new Set(entities(g).map((e) => (bump(nGold, e.type), key(e))));
    for (const e of entities(p)) {
      bump(nPred, e.type);
      if (goldSet.has(key(e))) bump(tp, e.type);
    }
    // The same span in both, whatever its type, is one cell of the type confusion; the rest are misses and spurious
    const span = (e: Entity): string => `${e.start}\u0000${e.end}`;
    const predBySpan = new Map(entities(p).map((e) => [span(e), e.type]));
    for (const e of entities(g)) {
      pairs.push([e.type, predBySpan.get(span(e)) ?? "O"]);
      predBySpan.delete(span(e));
    }
    for (const t of predBySpan.values()) pairs.push(["O", t]);
  });
  const types = [...new Set([...nGold.keys(), ...nPred.keys()])].sort();
  const perType = Object.fromEntries(types.map((t) => [t, scores(tp.get(t) ?? 0, nPred.get(t) ?? 0, nGold.get(t) ?? 0)]));
  const sum = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);
  const micro = scores(sum(tp), sum(nPred), sum(nGold));
  const axis = [...types, "O"];
  const matrix = axis.map(() => axis.map(() => 0));
  for (const [g, p] of pairs) matrix[axis.indexOf(g)]![axis.indexOf(p)]!++;
  return { precision: micro.precision, recall: micro.recall, f1: micro.f1, accuracy: words ? right / words : 0, perType, confusion: { types: axis, matrix } };
}
