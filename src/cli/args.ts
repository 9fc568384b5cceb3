// Shared CLI plumbing: strict flag parsing, number checks, and errors without stack traces.
import { parseArgs, type ParseArgsConfig } from "node:util";

export class UsageError extends Error {}

export function parseFlags<T extends NonNullable<ParseArgsConfig["options"]>>(argv: string[], options: T, usage: string) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false });
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${usage}`);
  }
}

/** Parses a numeric flag value, naming the flag when it is not a number in range. */
export function numFlag(name: string, v: string | undefined, def: number, o: { int?: boolean; min?: number; max?: number } = {}): number {
  if (v === undefined) return def;
  const x = Number(v);
  const kind = o.int ? "an integer" : "a number";
  if (v.trim() === "" || !Number.isFinite(x) || (o.int && !Number.isInteger(x))) throw new UsageError(`--${name} must be ${kind}, got "${v}"`);
  if (o.min !== undefined && x < o.min) throw new UsageError(`--${name} must be >= ${o.min}, got ${v}`);
  if (o.max !== undefined && x > o.max) throw new UsageError(`--${name} must be <= ${o.max}, got ${v}`);
  return x;
}

/** Runs a CLI main: clear one-line errors (stack only with BUNSAI_DEBUG=1), exit 2 for usage. */
export async function runMain(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (e) {
    const err = e as Error;
    if (process.env.BUNSAI_DEBUG) console.error(err);
    else console.error(`error: ${err.message}`);
    process.exit(err instanceof UsageError ? 2 : 1);
  }
}
