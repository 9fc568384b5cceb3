// The CLIs end to end, as a user runs them.
import { beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { PRESETS } from "../src/model/make.ts";
import { testModel } from "./helpers.ts";

const root = join(import.meta.dir, "..");
let model = "";
beforeAll(async () => { model = await testModel("tiny-seed0", PRESETS.tiny!, 0); });

function cli(script: string, args: string[], env: Record<string, string> = {}) {
  const p = Bun.spawnSync([process.execPath, join(root, "src/cli", script), ...args], {
    cwd: root, env: { ...process.env, ...env }, stdin: "ignore", stdout: "pipe", stderr: "pipe",
  });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

describe("bun run generate", () => {
  test("streams text then the stats, naming the backend", () => {
    const r = cli("generate.ts", ["--model", model, "--prompt", "Hello", "--max-tokens", "5", "--backend", "cpu"]);
    expect(r.code).toBe(0);
    expect(r.out.trim().length).toBeGreaterThan(0);
    expect(r.err).toMatch(/on cpu \(CPU/);
    expect(r.err).toMatch(/Prompt: 9 tokens, [\d.]+ tokens-per-sec/);
    expect(r.err).toMatch(/Generation: 5 tokens, [\d.]+ tokens-per-sec \(finish: length\)/);
    expect(r.err).toMatch(/Peak memory: [\d.]+ GB/);
  });

  test("--json prints one object whose text matches the streamed text (greedy)", () => {
    const a = cli("generate.ts", ["--model", model, "--prompt", "Hi", "--max-tokens", "6", "--backend", "cpu", "--json"]);
    const b = cli("generate.ts", ["--model", model, "--prompt", "Hi", "--max-tokens", "6", "--backend", "cpu"]);
    expect(a.code).toBe(0);
    const j = JSON.parse(a.out);
    expect(j.generatedTokens).toBe(6);
    expect(j.backend).toBe("cpu");
    expect(b.out).toBe(j.text + "\n");
  });

  test("reads the prompt from stdin with --prompt -", () => {
    const f = join(mkdtempSync(join(tmpdir(), "bunsai-cli-")), "p.txt");
    writeFileSync(f, "Hello");
    const p = Bun.spawnSync([process.execPath, join(root, "src/cli/generate.ts"), "--model", model, "--prompt", "-", "--max-tokens", "2", "--json", "--backend", "cpu"], { stdin: Bun.file(f), stdout: "pipe", stderr: "pipe" });
    expect(p.exitCode).toBe(0);
    expect(JSON.parse(p.stdout.toString()).promptTokens).toBe(9);
  });

  test("without --model it builds and runs the embedded demo, saying it is random", () => {
    const cache = mkdtempSync(join(tmpdir(), "bunsai-cache-"));
    const r = cli("generate.ts", ["--max-tokens", "3", "--backend", "cpu"], { BUNSAI_CACHE_DIR: cache });
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/RANDOM-WEIGHT demo model/);
    expect(r.err).toMatch(/--model path\/to\/Bonsai/);
    expect(existsSync(join(cache, "models", "tiny-random-v1", "model.safetensors"))).toBe(true);
  });

  const bad: [string[], number, RegExp][] = [
    [["--temp", "hot"], 2, /--temp must be a number, got "hot"/],
    [["--max-tokens=-3"], 2, /--max-tokens must be >= 0/],
    [["--top-p", "1.5"], 2, /--top-p must be <= 1/],
    [["--backend", "tpu"], 2, /--backend must be one of auto, cpu, cuda, metal/],
    [["--frobnicate"], 2, /Unknown option '--frobnicate'/],
    [["--model", "/definitely/not/here"], 1, /\/definitely\/not\/here: model directory not found/],
    [["--backend", "metal"], 1, /backend "metal" is not available/],
  ];
  for (const [args, code, re] of bad) {
    test(`bad input: ${args.join(" ")}`, () => {
      const r = cli("generate.ts", args[0] === "--model" ? args : ["--model", model, ...args]);
      expect(r.code).toBe(code);
      expect(r.err).toMatch(re);
      expect(r.err).not.toMatch(/\n\s+at /); // no stack trace
    });
  }

  test("--help", () => {
    const r = cli("generate.ts", ["--help"]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/--max-tokens N/);
  });
});

describe("bun run make-model", () => {
  test("writes a checkpoint, and refuses to overwrite a non-empty folder", () => {
    const out = join(mkdtempSync(join(tmpdir(), "bunsai-mm-")), "m");
    expect(cli("make-model.ts", ["--preset", "tiny", "--out", out, "--seed", "3"]).code).toBe(0);
    for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]) expect(existsSync(join(out, f))).toBe(true);
    const again = cli("make-model.ts", ["--out", out]);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/exists and is not empty; pass --force/);
    expect(cli("make-model.ts", ["--preset", "70b", "--out", out]).err).toMatch(/--preset must be one of tiny, 1\.7b, 4b, 8b/);
  });
});
