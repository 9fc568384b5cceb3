import { describe, expect, test } from "bun:test";
import { affineToSign, dequantQ1, dequantRow, packBits, quantizeQ1, signToAffine, unpackBits } from "../src/quant/q1.ts";
import { f16BitsToF32, f32ToF16Bits, f32ToBf16Bits, bf16BitsToF32, bf16ToF16Bits } from "../src/quant/f16.ts";
import { Rng } from "../src/util/rng.ts";
import { quantizeX16 } from "../src/quant/x16.ts";

describe("bit packing", () => {
  test("LSB first: column 32c + j is bit j of word c (hand-written word)", () => {
    // columns 0, 1, 5 and 31 set in word 0; column 32 + 3 set in word 1
    const bits = new Uint8Array(64);
    for (const c of [0, 1, 5, 31, 35]) bits[c] = 1;
    const w = packBits(bits, 1, 64);
    expect(w[0]).toBe(0b10000000_00000000_00000000_00100011);
    expect(w[1]).toBe(0b1000);
    // little-endian bytes: byte b holds columns 8b .. 8b+7
    const bytes = new Uint8Array(w.buffer);
    expect([...bytes.slice(0, 5)]).toEqual([0b00100011, 0, 0, 0b10000000, 0b1000]);
  });

  test("pack / unpack round trip on random bits", () => {
    const rng = new Rng(7), rows = 5, cols = 256;
    const bits = Uint8Array.from({ length: rows * cols }, () => rng.u32() & 1);
    expect(unpackBits(packBits(bits, rows, cols), rows, cols)).toEqual(bits);
  });
});

describe("MLX bits=1 affine quantize", () => {
  test("a hand-made group: known scale, bias and bits", () => {
    // one group of 128: values alternate between -0.5 and 1.5 except column 3 = 0.6 and column 4 = 0.4
    const w = new Float32Array(128);
    for (let j = 0; j < 128; j++) w[j] = j % 2 ? 1.5 : -0.5;
    w[3] = 0.6; // (0.6 + 0.5) / 2 = 0.55 > 0.5 -> 1
    w[4] = 0.5; // (0.5 + 0.5) / 2 = 0.5 exactly -> round half to even -> 0
    const q = quantizeQ1(w, 1, 128);
    expect(f16BitsToF32(q.scales[0]!)).toBe(2); // max - min
    expect(f16BitsToF32(q.biases[0]!)).toBe(-0.5); // min
    const bits = unpackBits(q.words, 1, 128);
    for (let j = 0; j < 128; j++) {
      const want = j === 3 ? 1 : j === 4 ? 0 : j % 2;
      expect(bits[j]).toBe(want);
    }
  });

  test("constant group uses scale 1e-7 (cast to f16) and all-zero bits", () => {
    const q = quantizeQ1(new Float32Array(128).fill(3), 1, 128);
    expect(f16BitsToF32(q.biases[0]!)).toBe(3);
    expect(q.scales[0]).toBe(f32ToF16Bits(1e-7));
    expect([...q.words]).toEqual([0, 0, 0, 0]);
  });

  test("quantize -> dequantize of a sign-form matrix is exact", () => {
    // w = d * (+-1) with d a power of two per group: min = -d, max = d -> scale 2d, bias -d
    const rng = new Rng(3), rows = 3, cols = 384, w = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) for (let g = 0; g < 3; g++) {
      const d = 2 ** -(1 + ((r + g) % 4));
      for (let j = 0; j < 128; j++) w[r * cols + g * 128 + j] = rng.u32() & 1 ? d : -d;
    }
    expect(dequantQ1(quantizeQ1(w, rows, cols))).toEqual(w);
  });

  test("rejects in-features that are not a multiple of 128", () => {
    expect(() => quantizeQ1(new Float32Array(100), 1, 100)).toThrow(/multiple of 128/);
  });

  test("dequantRow uses the group of each column", () => {
    const q = quantizeQ1(Float32Array.from({ length: 256 }, (_, i) => (i < 128 ? (i % 2 ? 1 : 0) : (i % 2 ? 8 : 4))), 1, 256);
    const row = dequantRow(q, 0, new Float32Array(256));
    expect([row[0], row[1], row[128], row[129]]).toEqual([0, 1, 4, 8]);
  });
});

describe("sign form <-> affine", () => {
  test("scale = 2d, bias = -d, and back, exactly", () => {
    const d = Uint16Array.from([0.25, 0.0107421875, 3.5, 6e-5].map(f32ToF16Bits));
    const words = new Uint32Array(4 * 4);
    const a = signToAffine(4, 128, words, d);
    for (let i = 0; i < 4; i++) {
      expect(f16BitsToF32(a.scales[i]!)).toBe(2 * f16BitsToF32(d[i]!));
      expect(f16BitsToF32(a.biases[i]!)).toBe(-f16BitsToF32(d[i]!));
    }
    expect(affineToSign(a).d).toEqual(d);
  });

  test("affineToSign refuses a general affine weight", () => {
    const q = quantizeQ1(Float32Array.from({ length: 128 }, (_, i) => i), 1, 128);
    expect(() => affineToSign(q)).toThrow(/not a sign-form/);
  });
});

describe("half floats", () => {
  test("f16 and bf16 conversions round to nearest even", () => {
    expect(f16BitsToF32(f32ToF16Bits(1 + 2 ** -11))).toBe(1); // tie -> even
    expect(f16BitsToF32(f32ToF16Bits(1 + 3 * 2 ** -11))).toBe(1 + 2 ** -9);
    expect(bf16BitsToF32(f32ToBf16Bits(1 + 2 ** -8))).toBe(1);
    expect(bf16BitsToF32(f32ToBf16Bits(-2.5))).toBe(-2.5);
    expect(f16BitsToF32(bf16ToF16Bits(Uint16Array.from([f32ToBf16Bits(0.3125)]))[0]!)).toBe(0.3125);
  });
});

describe("x16: the bmma matvec's activation quantization (host twin)", () => {
  test("integers and short binary fractions come through exactly", () => {
    const x = Float32Array.from({ length: 256 }, (_, i) => (i % 9) - 4 + (i % 4) * 0.25);
    expect([...quantizeX16(x)]).toEqual([...x]);
  });
  test("random groups: error <= 2^-15 of the group's max, the max keeps >= 15 bits; zeros stay zero", () => {
    const rng = new Rng(3), x = Float32Array.from({ length: 1024 }, () => (rng.next() * 2 - 1) * 10 ** (rng.next() * 8 - 4));
    x.fill(0, 128, 256);
    const q = quantizeX16(x);
    for (let g = 0; g < 1024; g += 128) {
      const m = Math.max(...Array.from(x.subarray(g, g + 128), Math.abs));
      for (let k = g; k < g + 128; k++) expect(Math.abs(q[k]! - x[k]!)).toBeLessThanOrEqual(m * 2 ** -15);
      if (m > 0) expect(Math.abs(Math.abs(q[g + Array.from(x.subarray(g, g + 128), Math.abs).indexOf(m)]!) / m - 1)).toBeLessThanOrEqual(2 ** -15);
    }
    expect([...q.subarray(128, 256)].every((v) => v === 0)).toBe(true);
  });
  test("round half to even, and the clamp at +32767 steps", () => {
    // group max 65535.5 -> step 2; 65535.5 / 2 = 32767.75 rounds to 32768, clamped to 32767 -> 65534
    const x = new Float32Array(128);
    x[0] = 65535.5; x[1] = -65535.5; x[2] = 5; x[3] = 7; x[4] = -5;
    const q = quantizeX16(x);
    expect([q[0], q[1], q[2], q[3], q[4]]).toEqual([65534, -65536, 4, 8, -4]);
  });
  test("a length that is not a multiple of 128 is refused", () => {
    expect(() => quantizeX16(new Float32Array(100))).toThrow(/multiple of 128/);
  });
});

