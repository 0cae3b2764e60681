/**
 * `serve` with OTEL_TRACING=true: loads the OpenTelemetry adapter (and with it
 * `@opentelemetry/api`, an optional peer dependency) only then, so a server without tracing
 * never loads the API, and one without the package installed gets one line saying so.
 */
import type { Tracing } from '../core/tracing.js';

type AdapterModule = typeof import('../adapters/otel/index.js');

export class TracingUnavailableError extends Error {
  override name = 'TracingUnavailableError';
}

/** The port over the globally registered tracer provider (the SDK started before the server). */
export async function loadTracing(load: () => Promise<AdapterModule> = () => import('../adapters/otel/index.js')): Promise<Tracing> {
  let adapter: AdapterModule;
  try {
    adapter = await load();
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && /@opentelemetry\/api/.test(String((err as Error).message));
    if (!missing) throw err;
    throw new TracingUnavailableError(
      'OTEL_TRACING=true needs the package @opentelemetry/api, which is not installed: `npm install @opentelemetry/api` ' +
        'and register an OpenTelemetry SDK before start (node --import ./otel.mjs), or unset OTEL_TRACING',
      { cause: err },
    );
  }
  return adapter.openTelemetryTracing();
}
