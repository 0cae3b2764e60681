/**
 * `agent-sessions/opentelemetry`: tracing through OpenTelemetry, a subpath of its own so the
 * main entry never loads `@opentelemetry/api` (an optional peer dependency).
 *
 *   import { createSessions } from 'agent-sessions';
 *   import { openTelemetryTracing } from 'agent-sessions/opentelemetry';
 *   const sessions = await createSessions({ tracing: openTelemetryTracing() });
 */
export { openTelemetryTracing, TRACER_NAME, type OpenTelemetryTracingOptions } from './tracing.js';
export type { Tracing } from '../../core/tracing.js';
