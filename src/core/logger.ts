/**
 * The logging calls the library makes. pino's Logger satisfies it, as does any logger with
 * the same `(fields, message)` methods; the core never imports a logging library.
 */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}
