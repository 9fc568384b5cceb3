import { describe, expect, test } from "bun:test";
import { applyPenalties, argmax, logprobs, makeSampler, topIndices } from "../src/sample.ts";

const logits = () => Float32Array.from([1, 3, 2, 0.5, 2.9, -1]);

describe("sampler", () => {
  test("temperature 0 is greedy", () => {
    expect(makeSampler({ temperature: 0 })(logits())).toBe(1);
    expect(argmax(Float32Array.from([0, 5, 5, 1]))).toBe(1); // first of a tie
  });

  test("a seed reproduces the draws; another seed differs", () => {
    const draw = (seed: number) => { const s = makeSampler({ temperature: 1, seed }); return Array.from({ length: 50 }, () => s(logits())); };
    expect(draw(42)).toEqual(draw(42));
    expect(draw(42)).not.toEqual(draw(43));
  });

  test("draws follow softmax(logits / T) (chi-square over 20000 draws)", () => {
    const l = logits(), T = 0.8, n = 20000, s = makeSampler({ temperature: T, seed: 1 });
    const p = Array.from(l, (x) => Math.exp(x / T)), z = p.reduce((a, b) => a + b);
    const counts = new Array(l.length).fill(0);
    for (let i = 0; i < n; i++) counts[s(l)]++;
    const chi2 = counts.reduce((a, c, i) => a + (c - (n * p[i]!) / z) ** 2 / ((n * p[i]!) / z), 0);
    expect(chi2).toBeLessThan(20.5); // 5 degrees of freedom, p = 0.001
  });

  test("top-k keeps only the k most likely", () => {
    const s = makeSampler({ temperature: 5, topK: 2, seed: 3 });
    const seen = new Set(Array.from({ length: 300 }, () => s(logits())));
    expect([...seen].sort()).toEqual([1, 4]);
  });

  test("top-p keeps the smallest set reaching the mass", () => {
    // probabilities 0.5, 0.3, 0.15, 0.05 -> top-p 0.75 keeps the first two
    const l = Float32Array.from([0.5, 0.3, 0.15, 0.05].map(Math.log));
    const s = makeSampler({ temperature: 1, topP: 0.75, seed: 9 });
    const seen = new Set(Array.from({ length: 400 }, () => s(l)));
    expect([...seen].sort()).toEqual([0, 1]);
  });

  test("min-p drops tokens below min_p x the best probability", () => {
    const l = Float32Array.from([0.5, 0.3, 0.15, 0.05].map(Math.log));
    const s = makeSampler({ temperature: 1, minP: 0.35, seed: 9 }); // cut at 0.175
    const seen = new Set(Array.from({ length: 400 }, () => s(l)));
    expect([...seen].sort()).toEqual([0, 1]);
  });

  test("repetition penalty divides positive and multiplies negative logits of seen tokens", () => {
    const l = Float32Array.from([2, -2, 1]);
    applyPenalties(l, [0, 1, 1], { repetitionPenalty: 2 });
    expect([...l]).toEqual([1, -4, 1]);
    const m = Float32Array.from([2, 2, 2]);
    applyPenalties(m, [0, 1, 1], { presencePenalty: 0.5, frequencyPenalty: 0.25 });
    expect([...m]).toEqual([1.25, 1, 2]);
  });

  test("bad options are refused with their name", () => {
    expect(() => makeSampler({ temperature: -1 })).toThrow(/temperature must be >= 0/);
    expect(() => makeSampler({ topP: 0 })).toThrow(/top-p must be in \(0, 1\]/);
    expect(() => makeSampler({ topK: 1.5 })).toThrow(/top-k must be an integer/);
  });

  test("logprobs and top alternatives", () => {
    const l = Float32Array.from([0, Math.log(3)]);
    const r = logprobs(l, 1, 2);
    expect(r.logprob).toBeCloseTo(Math.log(0.75), 6);
    expect(r.top.map((t) => t.token)).toEqual([1, 0]);
    expect(topIndices(Float32Array.from([5, 1, 9, 3, 7]), 3)).toEqual([2, 4, 0]);
  });
});
