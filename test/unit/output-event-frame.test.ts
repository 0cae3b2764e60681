/**
 * The SSE frame of an output event splices the data's JSON text in where a step already had it
 * (noteDataJson); the frame is the same as serializing the event's JSON shape whole.
 */
import { describe, expect, it } from 'vitest';
import { outputEventFrame, outputEventJson } from '../../src/api/runs.js';
import { noteDataJson, outputDataJson, type OutputEvent } from '../../src/core/runs.js';

const whole = (e: OutputEvent) => `id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(outputEventJson(e))}\n\n`;

describe('outputEventFrame', () => {
  const events: OutputEvent[] = [
    { seq: 1, runId: '0190a0e0-0000-7000-8000-000000000001', type: 'text', data: { text: 'he said "hi"\n', n: 1.5, list: [null, true] }, createdAt: '2026-12-02T10:00:00.000Z' },
    { seq: 2, runId: 'r', type: 'tool_call', data: 'line\u2028sep', createdAt: '2026-12-02T10:00:00.001Z' },
    { seq: 3, runId: 'r', type: 'done', data: null, createdAt: '' },
  ];

  it('is the event serialized whole, with or without noted data JSON', () => {
    for (const e of events) {
      expect(outputEventFrame(e)).toBe(whole(e));
      const noted = noteDataJson({ ...e }, JSON.stringify(e.data));
      expect(outputEventFrame(noted)).toBe(whole(e));
      expect(JSON.parse(outputEventFrame(noted).split('data: ')[1] as string)).toEqual(outputEventJson(e));
    }
  });

  it('uses the noted JSON text as it is, not the value again', () => {
    // jsonb's form of the same value (key order, spacing): spliced in unchanged.
    const e = noteDataJson({ seq: 4, runId: 'r', type: 'text', data: { b: 1, a: 2 }, createdAt: '' }, '{"a": 2, "b": 1}');
    expect(outputDataJson(e)).toBe('{"a": 2, "b": 1}');
    expect(outputEventFrame(e)).toContain('"data":{"a": 2, "b": 1},');
    expect(outputDataJson({ ...e })).toBe('{"b":1,"a":2}');
  });
});
