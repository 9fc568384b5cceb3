// The activation quantization of the binary-tensor-core matvec (cuda/qmv_q1_bmma.ts), on the host:
// the oracle tests compare that kernel with the CPU matvec applied to quantizeX16(x).
//
// Per 128-column group: E = the biased f32 exponent of max|x| (at least 15), step d = 2^(E - 141),
// q = round-half-even(x / d) clamped to [-32768, 32767], x_hat = q * d. So the group's largest
// value keeps 15-16 significant bits, every value is off by at most d/2 <= 2^-15 * max|x|, and
// integers and short binary fractions come through exactly.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Biased exponent field of the f32 nearest to v (v >= 0). */
function biasedExponent(v: number): number {
  f32[0] = v;
  return (u32[0]! >>> 23) & 255;
}

/** Round half to even (the GPU's cvt.rni / __float2int_rn). */
function rintEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** x quantized as the bmma matvec sees it; x.length must be a multiple of 128. */
export function quantizeX16(x: Float32Array): Float32Array {
  if (x.length % 128 !== 0) throw new Error(`quantizeX16: length ${x.length} is not a multiple of 128`);
  const out = new Float32Array(x.length);
  for (let g = 0; g < x.length; g += 128) {
    let m = 0;
    for (let k = g; k < g + 128; k++) m = Math.max(m, Math.abs(x[k]!));
    const E = Math.max(biasedExponent(m), 15);
    const inv = 2 ** (141 - E), d = 2 ** (E - 141);
    for (let k = g; k < g + 128; k++) out[k] = Math.min(rintEven(x[k]! * inv), 32767) * d;
  }
  return out;
}
