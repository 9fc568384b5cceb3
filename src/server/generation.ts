// One request's generation: wait for a slot, run the shared generation loop, free the slot, record
// metrics. Both endpoints, streamed or not, consume this generator.

import { generateSteps, type GenerateOptions, type GenerationStats, type Step } from "../generate.ts";
import type { Model } from "../index.ts";
import type { ServerState } from "./state.ts";
import { setImmediate as tick } from "node:timers/promises";

const ABORTED: GenerationStats = {
  promptTokens: 0, generatedTokens: 0, finishReason: "abort", text: "", ttftMs: 0, promptTps: 0, generationTps: 0, peakMemoryBytes: 0,
};

/**
 * Admits the request now (throws the scheduler's 503 synchronously, before any response starts)
 * and returns the generator of its steps; the generator's return value holds the stats.
 */
export function startGeneration(
  state: ServerState, model: Model, ids: number[], opts: GenerateOptions & { signal: AbortSignal },
): AsyncGenerator<Step, GenerationStats> {
  const admitted = state.scheduler.acquire(opts.signal);
  admitted.catch(() => {}); // a rejection is handled where it is awaited; never "unhandled"
  return run(state, model, ids, opts, admitted);
}

async function* run(
  state: ServerState, model: Model, ids: number[], opts: GenerateOptions & { signal: AbortSignal }, admitted: Promise<() => void>,
): AsyncGenerator<Step, GenerationStats> {
  let release: () => void;
  try {
    release = await admitted;
  } catch {
    state.metrics.generation(ABORTED); // the client left while queued
    return ABORTED;
  }
  const session = state.takeSession(model);
  try {
    const steps = generateSteps(model.model, model.tokenizer, ids, { ...opts, session });
    for (;;) {
      // A CPU forward never leaves the microtask queue; yield to the event loop before each step so
      // sockets flush, keep-alives fire, disconnects are seen and new requests are admitted.
      await tick();
      const r = await steps.next();
      if (r.done) {
        state.metrics.generation(r.value);
        return r.value;
      }
      yield r.value;
    }
  } finally {
    state.returnSession(session);
    release(); // also when the consumer stops early (return()) or the loop throws
  }
}
