// Token sampling: penalties, then temperature (0 = greedy), top-k, top-p, min-p, then a draw from a
// seeded PRNG, so a seed reproduces a run. The order follows transformers' logits processors.

import { Rng } from "./util/rng.ts";

export interface SamplerOptions {
  temperature?: number; // 0 = greedy (default 0.7 in the CLI, here 0)
  topK?: number; // 0 = off
  topP?: number; // 1 = off
  minP?: number; // 0 = off
  seed?: number;
}

export interface PenaltyOptions {
  repetitionPenalty?: number; // 1 = off; > 1 discourages tokens already seen (CTRL / transformers rule)
  repetitionContext?: number; // how many recent tokens count (default 64)
  presencePenalty?: number; // OpenAI: subtract once per distinct seen token
  frequencyPenalty?: number; // OpenAI: subtract per occurrence
}

export function validateSampler(o: SamplerOptions & PenaltyOptions): void {
  const bad = (name: string, v: unknown, why: string) => { throw new RangeError(`${name} ${why}, got ${v}`); };
  if (o.temperature !== undefined && !(o.temperature >= 0 && Number.isFinite(o.temperature))) bad("temperature", o.temperature, "must be >= 0");
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) bad("top-k", o.topK, "must be an integer >= 0");
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) bad("top-p", o.topP, "must be in (0, 1]");
  if (o.minP !== undefined && !(o.minP >= 0 && o.minP <= 1)) bad("min-p", o.minP, "must be in [0, 1]");
  if (o.repetitionPenalty !== undefined && !(o.repetitionPenalty > 0 && Number.isFinite(o.repetitionPenalty))) bad("repetition penalty", o.repetitionPenalty, "must be > 0");
  if (o.seed !== undefined && !Number.isInteger(o.seed)) bad("seed", o.seed, "must be an integer");
  for (const k of ["presencePenalty", "frequencyPenalty"] as const) {
    const v = o[k];
    if (v !== undefined && !(v >= -2 && v <= 2)) bad(k, v, "must be in [-2, 2]");
  }
}

/** Applies repetition / presence / frequency penalties to logits in place. */
export function applyPenalties(logits: Float32Array, history: number[], o: PenaltyOptions): void {
  const rp = o.repetitionPenalty ?? 1, pp = o.presencePenalty ?? 0, fp = o.frequencyPenalty ?? 0;
  if (rp !== 1) {
    const recent = new Set(history.slice(-(o.repetitionContext ?? 64)));
    for (const id of recent) {
      const l = logits[id]!;
      logits[id] = l > 0 ? l / rp : l * rp;
    }
  }
  if (pp !== 0 || fp !== 0) {
    const counts = new Map<number, number>();
    for (const id of history) counts.set(id, (counts.get(id) ?? 0) + 1);
    for (const [id, n] of counts) logits[id] = logits[id]! - pp - fp * n;
  }
}

export function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

/** log softmax of the logits, at the given ids, and the `top` best ids with theirs. */
export function logprobs(logits: Float32Array, id: number, top: number): { logprob: number; top: { token: number; logprob: number }[] } {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  const lse = max + Math.log(sum);
  const best = top > 0 ? topIndices(logits, top) : [];
  return { logprob: logits[id]! - lse, top: best.map((t) => ({ token: t, logprob: logits[t]! - lse })) };
}

/** Indices of the k largest values, largest first. */
export function topIndices(x: Float32Array, k: number): number[] {
  k = Math.min(k, x.length);
  const idx: number[] = [];
  for (let i = 0; i < x.length; i++) {
    if (idx.length < k) {
      idx.push(i);
      if (idx.length === k) idx.sort((a, b) => x[b]! - x[a]!);
    } else if (x[i]! > x[idx[k - 1]!]!) {
      let j = k - 1; // insert keeping the order
      while (j > 0 && x[idx[j - 1]!]! < x[i]!) { idx[j] = idx[j - 1]!; j--; }
      idx[j] = i;
    }
  }
  if (idx.length < k || k === x.length) idx.sort((a, b) => x[b]! - x[a]!);
  return idx;
}

export type Sampler = (logits: Float32Array) => number;

/** Builds the sampler for one generation (it owns its PRNG). */
export function makeSampler(o: SamplerOptions = {}): Sampler {
  validateSampler(o);
  const temp = o.temperature ?? 0;
  if (temp === 0) return argmax;
  const rng = new Rng(o.seed ?? ((Math.random() * 2 ** 32) >>> 0));
  const topK = o.topK ?? 0, topP = o.topP ?? 1, minP = o.minP ?? 0;
  return (logits) => {
    const V = logits.length;
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (logits[i]! > max) max = logits[i]!;
    // unnormalized probabilities at this temperature; a dropped token gets 0
    const p = new Float64Array(V);
    for (let i = 0; i < V; i++) p[i] = Math.exp((logits[i]! - max) / temp);
    if (topK > 0 && topK < V) {
      const keep = new Uint8Array(V);
      for (const i of topIndices(logits, topK)) keep[i] = 1;
      for (let i = 0; i < V; i++) if (!keep[i]) p[i] = 0;
    }
    if (topP < 1) {
      // the smallest set of most likely tokens whose mass reaches topP (ties at the edge kept)
      const sorted = Float64Array.from(p).sort().reverse();
      let total = 0;
      for (let i = 0; i < V; i++) total += sorted[i]!;
      let acc = 0, cut = sorted[0]!;
      for (let i = 0; i < V; i++) {
        acc += sorted[i]!;
        cut = sorted[i]!;
        if (acc >= topP * total) break;
      }
      for (let i = 0; i < V; i++) if (p[i]! < cut) p[i] = 0;
    }
    if (minP > 0) {
      const cut = minP; // the best token has p = 1 here
      for (let i = 0; i < V; i++) if (p[i]! < cut) p[i] = 0;
    }
    let total = 0;
    for (let i = 0; i < V; i++) total += p[i]!;
    let r = rng.next() * total, last = 0;
    for (let i = 0; i < V; i++) {
      if (p[i] === 0) continue;
      last = i;
      r -= p[i]!;
      if (r < 0) return i;
    }
    return last;
  };
}
