// Device-side sampling, defined on the host: what GPU samplers compute (cuda/sample_f32.ts), and the
// fallback for backends without `sampleToken` (f32 arithmetic at the kernel's steps). Generation
// with penalties / min-p uses src/sample.ts on the host instead.
//
//   temperature <= 0      -> argmax (smallest index among equal maxima)
//   candidates            -> every logit >= the k-th largest (ties kept), k = topK, or 1024 when
//                            topK <= 0 or larger; ordered by (logit desc, index asc), at most 2048
//   p_i                   =  exp((logit_i - logit_0) / temperature), running sums c_i in f32
//   top-p                 -> the shortest prefix with c >= topP * c_total
//   draw                  -> the first i with c_i > rand * c_kept, rand uniform in [0, 1)

export interface SamplingParams {
  temperature: number; // 0 = greedy
  topK: number; // 0 = off (the cap of 1024 candidates still applies)
  topP: number; // 1 = off
}

export const SAMPLE_CAP = 1024;
export const SAMPLE_MAX_CANDIDATES = 2048;

const f = Math.fround;

export function argmax(x: Float32Array, n = x.length): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

export function sampleHost(logits: Float32Array, p: SamplingParams, rand: number, n = logits.length): number {
  if (!(p.temperature > 0)) return argmax(logits, n);
  let k = p.topK <= 0 || p.topK > SAMPLE_CAP ? SAMPLE_CAP : p.topK;
  k = Math.min(k, n);
  const sorted = Float32Array.from(logits.subarray(0, n)).sort(); // ascending
  const thr = sorted[n - k]!;
  const idx: number[] = [];
  for (let i = 0; i < n; i++) if (logits[i]! >= thr) idx.push(i);
  idx.sort((a, b) => logits[b]! - logits[a]! || a - b);
  const cand = idx.slice(0, SAMPLE_MAX_CANDIDATES);
  const invTemp = f(1 / p.temperature), top = logits[cand[0]!]!;
  const cum = new Float32Array(cand.length);
  let c = 0;
  for (let i = 0; i < cand.length; i++) {
    c = f(c + f(Math.exp(f(f(logits[cand[i]!]! - top) * invTemp))));
    cum[i] = c;
  }
  const cut = f(f(p.topP) * c);
  let keep = cand.length;
  for (let i = 0; i < cand.length; i++) if (cum[i]! >= cut) { keep = i + 1; break; }
  const u = f(f(rand) * cum[keep - 1]!);
  for (let i = 0; i < keep; i++) if (cum[i]! > u) return cand[i]!;
  return cand[keep - 1]!;
}
