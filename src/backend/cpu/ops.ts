// The transformer math in plain TypeScript (f32 storage, f64 sums): the readable copy of every
// kernel, and the oracle the GPU kernels are tested against.

/** x[rows, dim] -> out: x * rsqrt(mean(x^2) + eps) * w. */
export function rmsnorm(out: Float32Array, x: Float32Array, w: Float32Array, rows: number, dim: number, eps: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[o + i]! * x[o + i]!;
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) out[o + i] = x[o + i]! * inv * w[i]!;
  }
}

/**
 * Rotary embedding, "rotate half" form: pairs (i, i + d/2) of one head x[d] at position pos.
 * angle = f32(pos * invFreq[i]) as transformers computes it; cos/sin scaled by attentionFactor (YaRN).
 */
export function ropeHead(x: Float32Array, off: number, d: number, pos: number, invFreq: Float32Array, attentionFactor: number): void {
  const half = d / 2;
  for (let i = 0; i < half; i++) {
    const angle = Math.fround(pos * invFreq[i]!);
    const c = Math.fround(Math.cos(angle) * attentionFactor), s = Math.fround(Math.sin(angle) * attentionFactor);
    const x1 = x[off + i]!, x2 = x[off + i + half]!;
    x[off + i] = x1 * c - x2 * s;
    x[off + i + half] = x2 * c + x1 * s;
  }
}

/**
 * Causal GQA attention for T query rows at positions pos .. pos+T-1.
 * q[T, nHeads*d]; kc, vc: one layer's cache [ctx, nKv*d]; out[T, nHeads*d].
 * Query head h reads kv head h / (nHeads / nKv).
 */
export function attention(
  out: Float32Array, q: Float32Array, kc: Float32Array, vc: Float32Array,
  T: number, pos: number, nHeads: number, nKv: number, d: number,
): void {
  const group = nHeads / nKv, scale = 1 / Math.sqrt(d), kvStride = nKv * d;
  const scores = new Float64Array(pos + T);
  for (let t = 0; t < T; t++) {
    const len = pos + t + 1; // causal: positions 0 .. pos + t
    for (let h = 0; h < nHeads; h++) {
      const qo = (t * nHeads + h) * d, kvh = Math.floor(h / group) * d;
      let max = -Infinity;
      for (let p = 0; p < len; p++) {
        let dot = 0;
        const ko = p * kvStride + kvh;
        for (let i = 0; i < d; i++) dot += q[qo + i]! * kc[ko + i]!;
        scores[p] = dot * scale;
        if (scores[p]! > max) max = scores[p]!;
      }
      let sum = 0;
      for (let p = 0; p < len; p++) sum += (scores[p] = Math.exp(scores[p]! - max));
      for (let i = 0; i < d; i++) {
        let acc = 0;
        for (let p = 0; p < len; p++) acc += scores[p]! * vc[p * kvStride + kvh + i]!;
        out[qo + i] = acc / sum;
      }
    }
  }
}

export function swiglu(out: Float32Array, gate: Float32Array, up: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const g = gate[i]!;
    out[i] = (g / (1 + Math.exp(-g))) * up[i]!;
  }
}

export function add(out: Float32Array, a: Float32Array, b: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = a[i]! + b[i]!;
}
