// The generation loop: one async generator of steps, used by the CLI and the server.
//
//   for await (const step of generateSteps(model, promptIds, opts)) process.stdout.write(step.text)
//
// It prefills the prompt, then samples one token per step until an EOS id, a stop string (also
// when split across tokens), max tokens, the context's end, or an abort signal.

import type { Qwen3, Session } from "./model/qwen3.ts";
import type { TextTokenizer } from "./tokenizer.ts";
import { applyPenalties, logprobs as logprobsOf, makeSampler, validateSampler, type PenaltyOptions, type SamplerOptions } from "./sample.ts";
import { sampleHost, type SamplingParams } from "./backend/gpu-sample.ts";
import { Rng } from "./util/rng.ts";

export interface GenerateOptions extends SamplerOptions, PenaltyOptions {
  maxTokens?: number; // default 256
  stop?: string[]; // stop strings; the text is cut before them
  logprobs?: number; // when set: each step carries its logprob and this many top alternatives
  signal?: AbortSignal; // abort: the generation ends at the next step with finishReason "abort"
  session?: Session; // reuse a sequence (its KV cache); default: a new one sized for this request
  ctx?: number; // context size for a new session (default: prompt + maxTokens)
}

export interface Step {
  token: number | null; // null: the last text held back, released at the end (no new token)
  text: string; // text this step makes final (may be "" while a character or stop string is pending)
  logprob?: number;
  topLogprobs?: { token: number; logprob: number }[];
}

export type FinishReason = "stop" | "length" | "abort";

export interface GenerationStats {
  promptTokens: number;
  generatedTokens: number;
  finishReason: FinishReason;
  text: string; // the whole generated text, stop string excluded
  ttftMs: number; // time to first token (prefill + first sample)
  promptTps: number;
  generationTps: number; // decode tokens per second after the first token
  peakMemoryBytes: number; // process RSS high-water mark
}

export class PromptTooLongError extends Error {
  constructor(readonly promptTokens: number, readonly ctx: number) {
    super(`the prompt has ${promptTokens} tokens but the context holds ${ctx}`);
  }
}

export async function* generateSteps(
  model: Qwen3, tokenizer: TextTokenizer, promptIds: number[], opts: GenerateOptions = {},
): AsyncGenerator<Step, GenerationStats> {
  validateSampler(opts);
  const maxTokens = opts.maxTokens ?? 256;
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new RangeError(`max tokens must be an integer >= 0, got ${maxTokens}`);
  if (promptIds.length === 0) throw new RangeError("the prompt is empty (0 tokens)");
  const limit = Math.min(model.config.maxPositionEmbeddings, opts.ctx ?? promptIds.length + maxTokens);
  const held = opts.session?.pos ?? 0, ctx = opts.session?.ctx ?? limit;
  if (held + promptIds.length > ctx) throw new PromptTooLongError(held + promptIds.length, ctx);
  const session = opts.session ?? model.newSession(Math.max(1, Math.min(limit, promptIds.length + maxTokens)));

  const ownSession = opts.session === undefined;
  // Draw on the device when the backend can and nothing needs the host logits (penalties, min-p,
  // logprobs): then only the token id crosses to the host each step. Same seed, same draws.
  const onDevice = model.backend.sampleToken !== undefined && opts.logprobs === undefined && (opts.minP ?? 0) === 0 &&
    (opts.repetitionPenalty ?? 1) === 1 && (opts.presencePenalty ?? 0) === 0 && (opts.frequencyPenalty ?? 0) === 0;
  const device: SamplingParams = { temperature: opts.temperature ?? 0, topK: opts.topK ?? 0, topP: opts.topP ?? 1 };
  const rng = new Rng(opts.seed ?? ((Math.random() * 2 ** 32) >>> 0));
  const sample = makeSampler(opts);
  const stops = (opts.stop ?? []).filter((s) => s.length > 0);
  const holdMax = stops.reduce((a, s) => Math.max(a, s.length - 1), 0);
  const eos = new Set(tokenizer.eosIds);
  const detok = tokenizer.stream();
  const history = [...promptIds];
  let text = "", emitted = 0; // all text so far, and how much of it was handed out
  let finishReason: FinishReason = "length", generated = 0, stoppedByString = false;

  const t0 = performance.now();
  let tFirst = t0, tPrefill = t0, peak = process.memoryUsage().rss;
  try {
    let logits: Float32Array | null = await model.forward(session, promptIds);
    let next = -1; // the token drawn on the device by the last step
    tPrefill = performance.now();

    while (generated < maxTokens) {
      if (opts.signal?.aborted) { finishReason = "abort"; break; }
      let token: number, lp: ReturnType<typeof logprobsOf> | undefined;
      if (logits) {
        applyPenalties(logits, history, opts);
        token = onDevice ? sampleHost(logits, device, rng.next()) : sample(logits);
        lp = opts.logprobs !== undefined ? logprobsOf(logits, token, opts.logprobs) : undefined;
      } else token = next;
      generated++;
      if (generated === 1) tFirst = performance.now();
      if (eos.has(token)) { finishReason = "stop"; break; }
      history.push(token);
      text += detok.push(token);

      // release text that can no longer be the start of a stop string
      let stopAt = -1;
      for (const s of stops) {
        const i = text.indexOf(s, Math.max(0, emitted - s.length + 1));
        if (i >= 0 && (stopAt < 0 || i < stopAt)) stopAt = i;
      }
      const safe = stopAt >= 0 ? stopAt : Math.max(emitted, text.length - holdMax);
      const step: Step = { token, text: text.slice(emitted, safe) };
      if (lp) { step.logprob = lp.logprob; step.topLogprobs = lp.top; }
      emitted = safe;
      yield step;
      if (stopAt >= 0) { text = text.slice(0, stopAt); finishReason = "stop"; stoppedByString = true; break; }
      if (generated >= maxTokens) break;
      if (session.pos >= session.ctx) { finishReason = "length"; break; }
      if (onDevice) {
        next = await model.nextToken(session, token, device, rng.next());
        logits = null;
      } else logits = await model.forward(session, [token]);
      if (generated % 32 === 0) peak = Math.max(peak, process.memoryUsage.rss()); // ~9 µs a call: not every token
    }
    peak = Math.max(peak, process.memoryUsage.rss());
  } finally {
    if (ownSession) session.dispose();
  }
  if (!stoppedByString) text += detok.flush();
  const tEnd = performance.now();
  const tail = text.slice(emitted);
  if (tail.length > 0 && finishReason !== "abort") yield { token: null, text: tail };
  const prefillS = (tPrefill - t0) / 1000, decodeS = (tEnd - tFirst) / 1000;
  return {
    promptTokens: promptIds.length,
    generatedTokens: generated,
    finishReason,
    text,
    ttftMs: tFirst - t0,
    promptTps: prefillS > 0 ? promptIds.length / prefillS : 0,
    generationTps: generated > 1 && decodeS > 0 ? (generated - 1) / decodeS : 0,
    peakMemoryBytes: peak,
  };
}
