// Errors in the shape OpenAI clients parse: {"error": {"message", "type", "param", "code"}}.
// Every client mistake becomes an ApiError with its HTTP status; anything else is a 500 whose
// message never carries a stack trace.

export type ErrorType = "invalid_request_error" | "authentication_error" | "not_found_error" | "server_error" | "overloaded_error";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly type: ErrorType = status === 401 ? "authentication_error" : status === 404 ? "not_found_error" : status >= 500 ? (status === 503 ? "overloaded_error" : "server_error") : "invalid_request_error",
  ) {
    super(message);
  }
}

export function errorBody(e: ApiError): { error: { message: string; type: string; param: string | null; code: string | null } } {
  return { error: { message: e.message, type: e.type, param: e.param, code: e.code } };
}

/** Any thrown value as an ApiError; unexpected ones are logged here and answered as a plain 500. */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  console.error(`[bunsai serve] internal error: ${(e as Error)?.stack ?? e}`);
  return new ApiError(500, "internal server error", null, "internal_error");
}

export function errorResponse(e: unknown): Response {
  const err = toApiError(e);
  return Response.json(errorBody(err), { status: err.status });
}
