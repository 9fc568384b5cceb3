// How many cache positions an attention launch covers (src/backend/checks.ts attentionSpan): the
// grid no longer grows with the cache, and a captured decode graph is re-captured only when the
// sequence doubles past 4096. No GPU needed.

import { describe, expect, test } from "bun:test";
import { ATT_PARTIALS_MAX, ATT_SPAN_MIN, attentionLaunchSpan, attentionRowsPerBatch, attentionSpan, longMerge, longMergePerDim, PREFILL_TILED_ROWS, prefillTiled } from "../src/backend/checks.ts";

describe("attentionSpan", () => {
  test("covers the step's end, in powers of two from 4096, never more than the cache", () => {
    expect(ATT_SPAN_MIN).toBe(4096);
    expect(attentionSpan(32768, 1)).toBe(4096);
    expect(attentionSpan(32768, 4096)).toBe(4096);
    expect(attentionSpan(32768, 4097)).toBe(8192);
    expect(attentionSpan(32768, 20000)).toBe(32768);
    expect(attentionSpan(832, 17)).toBe(832); // a small cache: all of it, as before
    expect(attentionSpan(5000, 4097)).toBe(5000);
    expect(attentionSpan(Infinity, 70000)).toBe(131072); // the graph key: position only
    for (const [ctx, end] of [[40960, 1], [40960, 12345], [6000, 5999], [131072, 131072]]) {
      const s = attentionSpan(ctx!, end!);
      expect([ctx, end, s >= end! && s <= ctx!]).toEqual([ctx, end, true]);
    }
  });
  test("a prefill pass (T > 1, never replayed) covers exactly its end; a decode step the power-of-two span", () => {
    expect(attentionLaunchSpan(4096, 512, 512)).toBe(512); // a 512-token prompt in a 4096 session
    expect(attentionLaunchSpan(4096, 600, 88)).toBe(600);
    expect(attentionLaunchSpan(520, 512, 512)).toBe(512);
    expect(attentionLaunchSpan(32768, 513, 1)).toBe(4096);
    expect(attentionLaunchSpan(832, 17, 1)).toBe(832);
  });
  test("queries per attention sub-batch: as many as the partials budget holds, at least 1, at most T", () => {
    const perRow = (S: number) => 4 * 32 * S * 130; // the 8B: 32 heads, head_dim 128
    expect(attentionRowsPerBatch(512, 32, 16, 128, ATT_PARTIALS_MAX)).toBe(512); // a 512-token prompt: one batch
    expect(attentionRowsPerBatch(512, 32, 1024, 128, ATT_PARTIALS_MAX)).toBe(Math.floor(ATT_PARTIALS_MAX / perRow(1024))); // at 32k: 31 (17 MB each)
    expect(attentionRowsPerBatch(512, 32, 1024, 128, ATT_PARTIALS_MAX)).toBe(31);
    expect(attentionRowsPerBatch(1, 32, 1 << 20, 128, ATT_PARTIALS_MAX)).toBe(1); // never 0
    expect(attentionRowsPerBatch(7, 4, 2, 64, 10 ** 9)).toBe(7);
  });
  // attention_combine_long_f32 is instantiated for 8, 4 and 2 threads per dim: any other count
  // would make its threads sum overlapping partials
  test("threads per dim of the long merge: a power of two that fits the block, else 0", () => {
    expect(longMergePerDim(1024, 128, 8)).toBe(8);
    expect(longMergePerDim(1024, 64, 8)).toBe(8);
    expect(longMergePerDim(1024, 256, 8)).toBe(4);
    expect(longMergePerDim(896, 128, 8)).toBe(4); // 7 would fit: not a power of two
    expect(longMergePerDim(768, 256, 8)).toBe(2); // 3 would fit
    expect(longMergePerDim(384, 256, 8)).toBe(0); // the serial merge
    expect(longMergePerDim(1024, 128, 4)).toBe(4);
  });

  test("the tiled prefill kernel: T > 1, a head_dim it has, G dividing its rows; auto from PREFILL_TILED_ROWS rows", () => {
    const b8 = { nHeads: 32, nKvHeads: 8, headDim: 128 }, dims = [64, 128];
    expect(PREFILL_TILED_ROWS).toBe(3072);
    expect(prefillTiled("auto", 512, b8, 64, dims)).toBe(true);
    expect(prefillTiled("auto", 96, b8, 64, dims)).toBe(true); // 96 x 32 = 3072 rows
    expect(prefillTiled("auto", 95, b8, 64, dims)).toBe(false);
    expect(prefillTiled("tiled", 2, b8, 64, dims)).toBe(true);
    expect(prefillTiled("tiled", 1, b8, 64, dims)).toBe(false); // a decode step stays split
    for (const v of ["serial", "long"] as const) expect([v, prefillTiled(v, 512, b8, 64, dims)]).toEqual([v, false]);
    expect(prefillTiled("tiled", 512, { nHeads: 8, nKvHeads: 8, headDim: 256 }, 64, dims)).toBe(false); // no head_dim 256 case
    expect(prefillTiled("tiled", 512, { nHeads: 24, nKvHeads: 8, headDim: 128 }, 64, dims)).toBe(false); // G = 3 does not divide 64
    expect(prefillTiled("tiled", 512, { nHeads: 64, nKvHeads: 8, headDim: 128 }, 32, dims)).toBe(true); // G = 8, Metal's 32 rows
    // "tiled" merges a decode step's partials as "auto" does
    expect([longMerge("tiled", 1024, 1024), longMerge("tiled", 1025, 1024)]).toEqual([false, true]);
  });
});
