// POST /v1/completions: raw text in (no chat template), text out, whole or as events.

import { checkModelId, clientGone, drain, finishReason, randomId, readJson, requireModel, usage } from "./common.ts";
import { startGeneration } from "./generation.ts";
import { addCompletionLogprob, emptyCompletionLogprobs } from "./logprobs.ts";
import { completionPromptIds, prepare } from "./request.ts";
import { checkSupported, completionRequest, parse } from "./schema.ts";
import { sseResponse } from "./sse.ts";
import type { ServerState } from "./state.ts";

export async function completions(state: ServerState, req: Request): Promise<Response> {
  const model = requireModel(state);
  const r = parse(completionRequest, await readJson(req, state.opts.bodyLimit));
  checkSupported(r);
  checkModelId(state, r.model);
  const p = prepare(state, r, completionPromptIds(model, r), r.logprobs);
  const abort = clientGone(req);
  const steps = startGeneration(state, model, p.ids, { ...p.opts, signal: abort.signal });
  const base = { id: randomId("cmpl"), object: "text_completion", created: Math.floor(Date.now() / 1000), model: state.opts.modelId, system_fingerprint: "bunsai" };
  const wantLogprobs = r.logprobs !== undefined;
  let offset = 0;

  if (r.stream) {
    return sseResponse(async (send) => {
      const stats = await drain(steps, (step) => {
        const lp = wantLogprobs ? emptyCompletionLogprobs() : null;
        if (lp) addCompletionLogprob(model.tokenizer, lp, step, offset);
        offset += step.text.length;
        if (step.text || (lp && lp.tokens.length > 0)) send({ ...base, choices: [{ index: 0, text: step.text, logprobs: lp, finish_reason: null }] });
      });
      if (stats.finishReason === "abort") return;
      send({ ...base, choices: [{ index: 0, text: "", logprobs: null, finish_reason: finishReason(stats) }] });
      if (r.stream_options?.include_usage) send({ ...base, choices: [], usage: usage(stats) });
    }, abort, state.opts.keepAliveMs);
  }

  let text = "";
  const lp = wantLogprobs ? emptyCompletionLogprobs() : null;
  const stats = await drain(steps, (step) => {
    if (lp) addCompletionLogprob(model.tokenizer, lp, step, text.length);
    text += step.text;
  });
  return Response.json({
    ...base,
    choices: [{ index: 0, text, logprobs: lp, finish_reason: finishReason(stats) }],
    usage: usage(stats),
  });
}
