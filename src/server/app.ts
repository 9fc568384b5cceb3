// The HTTP surface: routes, API key check, metrics per request, and OpenAI-shaped errors for
// everything that goes wrong (including unknown routes and methods).

import { timingSafeEqual } from "node:crypto";
import { Hono } from "hono";
import { chatCompletions } from "./chat.ts";
import { completions } from "./completions.ts";
import { ApiError, errorResponse } from "./errors.ts";
import type { ServerState } from "./state.ts";

const ENDPOINTS = new Set(["/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics"]);

function sameKey(given: string, want: string): boolean {
  const a = Buffer.from(given), b = Buffer.from(want);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function createApp(state: ServerState): Hono {
  const app = new Hono();

  app.use("*", async (c, next) => {
    await next();
    const path = ENDPOINTS.has(c.req.path) ? c.req.path : "other";
    state.metrics.request(path, c.res.status);
  });

  app.use("/v1/*", async (c, next) => {
    const key = state.opts.apiKey;
    if (key === undefined) return next();
    const auth = c.req.header("authorization") ?? "";
    const m = /^Bearer\s+(.+)$/i.exec(auth);
    if (!m) throw new ApiError(401, "missing API key: send `Authorization: Bearer <key>`", null, "invalid_api_key");
    if (!sameKey(m[1]!.trim(), key)) throw new ApiError(401, "incorrect API key", null, "invalid_api_key");
    return next();
  });

  app.post("/v1/chat/completions", (c) => chatCompletions(state, c.req.raw));
  app.post("/v1/completions", (c) => completions(state, c.req.raw));

  app.get("/v1/models", (c) => c.json({
    object: "list",
    data: [{ id: state.opts.modelId, object: "model", created: state.started, owned_by: "bunsai", max_model_len: state.ctx }],
  }));
  app.get("/v1/models/:id", (c) => {
    const id = c.req.param("id");
    if (id !== state.opts.modelId) throw new ApiError(404, `the model "${id}" does not exist`, "model", "model_not_found");
    return c.json({ id, object: "model", created: state.started, owned_by: "bunsai" });
  });

  app.get("/health", (c) => {
    if (state.model) return c.json({ status: "ok", model: state.opts.modelId });
    return c.json({ status: state.loadError ? "error" : "loading", ...(state.loadError && { error: state.loadError }) }, 503);
  });

  app.get("/metrics", (c) => c.text(state.metrics.render(), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }));

  app.notFound((c) => errorResponse(new ApiError(404, `no route for ${c.req.method} ${c.req.path}`, null, "not_found")));
  app.onError((e) => errorResponse(e));
  return app;
}
