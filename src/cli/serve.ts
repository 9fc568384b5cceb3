// bun run serve [--model DIR] [--port 8080] [--host 127.0.0.1] ...: the OpenAI-compatible server.
import { BACKEND_CHOICES, BackendUnavailableError, unavailableReason, type BackendChoice } from "../backend/select.ts";
import { DEFAULTS, startServer } from "../server/server.ts";
import { numFlag, parseFlags, runMain, UsageError } from "./args.ts";
import { DEMO_NOTICE, defaultModelPath } from "./default-model.ts";

const USAGE = `usage: bun run serve [--model DIR] [options]

  --model DIR            Bonsai MLX 1-bit checkpoint (default: the embedded random-weight demo model)
  --port N               port to listen on (default ${DEFAULTS.port}; 0 = any free port)
  --host ADDR            address to bind (default ${DEFAULTS.host}, loopback only)
  --backend NAME         ${BACKEND_CHOICES.join(" | ")} (default auto)
  --api-key KEY          require "Authorization: Bearer KEY" on /v1/* (default: env BUNSAI_API_KEY, else none)
  --max-concurrency N    generations running at once (default ${DEFAULTS.maxConcurrency})
  --queue N              requests waiting beyond those before 503 (default ${DEFAULTS.maxQueue})
  --ctx N                tokens per sequence, prompt + completion (default: the model's, at most 4096)
  --max-body BYTES       request body limit (default ${DEFAULTS.bodyLimit})
  --help                 this text

Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health, GET /metrics`;

await runMain(async () => {
  const { values: f } = parseFlags(process.argv.slice(2), {
    model: { type: "string" }, port: { type: "string" }, host: { type: "string" }, backend: { type: "string" },
    "api-key": { type: "string" }, "max-concurrency": { type: "string" }, queue: { type: "string" },
    ctx: { type: "string" }, "max-body": { type: "string" }, help: { type: "boolean" },
  }, USAGE);
  if (f.help) { console.log(USAGE); return; }
  const backend = (f.backend ?? "auto") as BackendChoice;
  if (!BACKEND_CHOICES.includes(backend)) throw new UsageError(`--backend must be one of ${BACKEND_CHOICES.join(", ")}, got "${f.backend}"`);
  if (f.host !== undefined && f.host.trim() === "") throw new UsageError("--host must not be empty");
  if (f["api-key"] !== undefined && f["api-key"].length === 0) throw new UsageError("--api-key must not be empty");
  const opts = {
    port: numFlag("port", f.port, DEFAULTS.port, { int: true, min: 0, max: 65535 }),
    host: f.host ?? DEFAULTS.host,
    maxConcurrency: numFlag("max-concurrency", f["max-concurrency"], DEFAULTS.maxConcurrency, { int: true, min: 1, max: 1024 }),
    maxQueue: numFlag("queue", f.queue, DEFAULTS.maxQueue, { int: true, min: 0, max: 100_000 }),
    ctx: f.ctx === undefined ? undefined : numFlag("ctx", f.ctx, 0, { int: true, min: 2 }),
    bodyLimit: numFlag("max-body", f["max-body"], DEFAULTS.bodyLimit, { int: true, min: 1024 }),
    apiKey: f["api-key"] ?? (process.env.BUNSAI_API_KEY || undefined),
  };
  if (backend === "cuda" || backend === "metal") { // say so before building or loading anything
    const why = await unavailableReason(backend);
    if (why !== null) throw new BackendUnavailableError(`backend "${backend}" is not available: ${why}`);
  }
  let modelPath = f.model;
  if (modelPath === undefined) {
    modelPath = await defaultModelPath();
    console.error(DEMO_NOTICE);
  }

  let server;
  try {
    server = startServer({ ...opts, modelPath, backend });
  } catch (e) {
    throw new Error(`cannot listen on ${opts.host}:${opts.port}: ${(e as Error).message}`);
  }
  console.error(`bunsai: listening on ${server.url} (loading ${modelPath} ...)`);
  const model = await server.ready.catch(async (e) => {
    await server.stop();
    throw e;
  });
  console.error(`bunsai: ready in ${(model.loadMs / 1000).toFixed(2)} s: model "${server.state.opts.modelId}" on ${model.backend.device}, ` +
    `ctx ${server.state.ctx}, ${opts.maxConcurrency} concurrent + ${opts.maxQueue} queued${opts.apiKey ? ", API key required" : ""}`);

  const shutdown = async () => {
    console.error("bunsai: shutting down");
    await server.stop();
    process.exit(0);
  };
  process.once("SIGINT", shutdown);
  process.once("SIGTERM", shutdown);
});
