// Half-precision helpers. f16 and bf16 values travel as raw uint16 bits.

const f16view = new Float16Array(1);
const f16bits = new Uint16Array(f16view.buffer);

/** f32 -> f16 bits, round to nearest even (as every framework casts). */
export function f32ToF16Bits(x: number): number {
  f16view[0] = x;
  return f16bits[0]!;
}

export function f16BitsToF32(b: number): number {
  f16bits[0] = b;
  return f16view[0]!;
}

/** Rounds x to the nearest f16 value (what a cast to f16 and back gives). */
export const roundF16 = (x: number): number => Math.f16round(x);

/** Converts a whole f16-bit array to f32. */
export function f16ArrayToF32(bits: Uint16Array): Float32Array {
  return Float32Array.from(new Float16Array(bits.buffer, bits.byteOffset, bits.length));
}

export function f32ArrayToF16Bits(x: Float32Array): Uint16Array {
  const h = Float16Array.from(x);
  return new Uint16Array(h.buffer, h.byteOffset, h.length);
}

const bfF32 = new Float32Array(1);
const bfU32 = new Uint32Array(bfF32.buffer);

export function bf16BitsToF32(b: number): number {
  bfU32[0] = b << 16;
  return bfF32[0]!;
}

/** f32 -> bf16 bits, round to nearest even. */
export function f32ToBf16Bits(x: number): number {
  bfF32[0] = x;
  const u = bfU32[0]!;
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0) return 0x7fc0; // NaN
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16ArrayToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i]! << 16;
  return out;
}

/** bf16 bits -> f16 bits (exact for normal f16 magnitudes, which scales and biases are). */
export function bf16ToF16Bits(bits: Uint16Array): Uint16Array {
  return f32ArrayToF16Bits(bf16ArrayToF32(bits));
}
