/**
 * The built-in runners, embedded: the command runner (stdout lines to events, exit codes,
 * the SIGINT → SIGTERM → SIGKILL ladder on interrupt) and the demo agent.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OutputEvent } from '../../src/core/runs.js';
import { commandRunner, lineToEvent } from '../../src/runners/command.js';
import { demoRunner } from '../../src/runners/demo.js';
import { createSessions, type Sessions } from '../../src/internal.js';
import { collect, waitFor } from './support.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/echo-agent.mjs', import.meta.url));
const node = (script: string) => `"${process.execPath}" ${script}`;

describe('runners', () => {
  let sessions: Sessions;

  beforeAll(async () => {
    sessions = await createSessions({ env: { DATA_DIR: ':memory:', RUN_SWEEP_INTERVAL_MS: '0', RUN_LEASE_MS: '900' } });
  });

  afterAll(async () => {
    await sessions?.close();
  });

  it('turns stdout lines into events: JSON objects with a type pass through, the rest is text', () => {
    expect(lineToEvent('hello')).toEqual({ type: 'text', data: { text: 'hello' } });
    expect(lineToEvent('{"type":"tool_call","data":{"name":"ls"}}')).toEqual({ type: 'tool_call', data: { name: 'ls' } });
    expect(lineToEvent('{"type":"thinking","text":"hm"}')).toEqual({ type: 'thinking', data: { text: 'hm' } });
    expect(lineToEvent('{"type":"done"}')).toEqual({ type: 'agent_done', data: {} });
    expect(lineToEvent('{"type":"gap"}')).toEqual({ type: 'agent_gap', data: {} });
    expect(lineToEvent('{"type":"restarted"}')).toEqual({ type: 'agent_restarted', data: {} });
    expect(lineToEvent('{"type":"bad type!"}')).toEqual({ type: 'text', data: { text: '{"type":"bad type!"}' } });
    expect(lineToEvent('[1,2]')).toEqual({ type: 'text', data: { text: '[1,2]' } });
    expect(lineToEvent('{not json')).toEqual({ type: 'text', data: { text: '{not json' } });
  });

  it('completes on exit 0 and fails with the exit code otherwise', async () => {
    const runner = commandRunner({ command: node(`"${FIXTURE}"`) });
    const ok = await sessions.create();
    const good = await sessions.runs.start(ok.id, runner, { input: { mode: 'stream', count: 3, delay_ms: 1 } });
    const events = await collect(sessions.runs.stream(ok.id));
    expect(events.filter((e) => e.type === 'text').map((e) => (e.data as { text: string }).text)).toEqual(['word 0', 'word 1', 'word 2']);
    expect((await sessions.runs.wait(ok.id, good.id)).status).toBe('completed');

    const bad = await sessions.create();
    const failed = await sessions.runs.start(bad.id, runner, { input: { mode: 'fail' } });
    const ended = await sessions.runs.wait(bad.id, failed.id);
    expect(ended).toMatchObject({ status: 'failed', endReason: 'runner_error' });
    expect(ended.error).toContain('code 3');

    const missing = await sessions.create();
    const nothing = await sessions.runs.start(missing.id, commandRunner({ command: '/nonexistent/agent-binary' }));
    expect((await sessions.runs.wait(missing.id, nothing.id)).status).toBe('failed');
  });

  it('sends SIGINT on interrupt, then SIGTERM and SIGKILL to a child that ignores them', async () => {
    const stubborn = node(`-e "process.on('SIGINT',()=>console.log('got SIGINT'));process.on('SIGTERM',()=>console.log('got SIGTERM'));console.log('up');setInterval(()=>{},1000)"`);
    // Graces long enough for a busy machine to schedule the child between two signals (it must
    // print its line for each before the next one comes).
    const runner = commandRunner({ command: stubborn, interruptGraceMs: 1_000, killGraceMs: 1_000 });
    const session = await sessions.create();
    const run = await sessions.runs.start(session.id, runner);
    const events: OutputEvent[] = [];
    const reading = (async () => {
      for await (const e of sessions.runs.stream(session.id)) events.push(e);
    })();
    const texts = () => events.filter((e) => e.type === 'text').map((e) => (e.data as { text: string }).text);
    // 'up' comes after the handlers are in place: signal before it and the child just dies.
    await waitFor(() => texts().includes('up'), 30_000, 'the child to start');
    const started = Date.now();
    await sessions.runs.interrupt(session.id);
    const ended = await sessions.runs.wait(session.id, run.id);
    expect(ended.status).toBe('interrupted');
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_900);
    await reading;
    expect(texts()).toEqual(['up', 'got SIGINT', 'got SIGTERM']);
  });

  it('the demo agent streams word by word, answers input, and stops on interrupt', async () => {
    const runner = demoRunner({ wordDelayMs: 5 });
    const session = await sessions.create();
    const run = await sessions.runs.start(session.id, runner, { input: { text: 'hi', words: 10 } });
    const events = await collect(sessions.runs.stream(session.id));
    const text = events.filter((e) => e.type === 'text').map((e) => (e.data as { text: string }).text).join('');
    expect(text.startsWith('You said: "hi".')).toBe(true);
    expect(text.split(' ')).toHaveLength(10);
    expect((await sessions.runs.wait(session.id, run.id)).status).toBe('completed');

    const long = await sessions.runs.start(session.id, runner, { input: { words: 1_000, delay_ms: 10 } });
    const all: OutputEvent[] = [];
    const reading = (async () => {
      for await (const e of sessions.runs.stream(session.id)) all.push(e);
    })();
    await waitFor(() => all.some((e) => e.type === 'text'), 10_000, 'the first word');
    await sessions.runs.sendInput(session.id, 'and this?');
    // Interrupt once the agent has taken the input (fixed waits could come before it).
    const received = () => all.some((e) => e.type === 'status' && (e.data as { state?: string }).state === 'input_received');
    await waitFor(received, 10_000, 'the input to be received');
    await sessions.runs.interrupt(session.id);
    await reading;
    expect(received()).toBe(true);
    expect(all.filter((e) => e.type === 'text').length).toBeLessThan(100);
    expect((await sessions.runs.wait(session.id, long.id)).status).toBe('interrupted');
  });

  it('the demo agent answers every input a run starts with, and weaves steered input into its reply', async () => {
    const runner = demoRunner({ wordDelayMs: 5 });
    const textOf = (events: OutputEvent[], runId: string) =>
      events.filter((e) => e.type === 'text' && e.runId === runId).map((e) => (e.data as { text: string }).text).join('');
    const session = await sessions.create();
    const first = await sessions.runs.start(session.id, runner, { input: { words: 60, delay_ms: 10 }, takesInput: true });
    const all: OutputEvent[] = [];
    const reading = (async () => {
      for await (const e of sessions.runs.stream(session.id)) all.push(e);
    })();
    await waitFor(() => all.some((e) => e.type === 'text'), 10_000, 'the first word');
    const steered = await sessions.runs.start(session.id, runner, { input: 'woven', ifBusy: 'steer' });
    expect(steered).toMatchObject({ decision: 'steered', id: first.id });
    const merged1 = await sessions.runs.start(session.id, runner, { input: 'x1', ifBusy: 'merge' });
    const merged2 = await sessions.runs.start(session.id, runner, { input: 'x2', ifBusy: 'merge' });
    expect([merged1.decision, merged2.decision, merged2.id]).toEqual(['queued', 'merged', merged1.id]);
    await reading;
    // The steered input is answered inside the reply: words of the reply come after it.
    const reply = textOf(all, first.id);
    const at = reply.indexOf('You said: "woven"');
    expect(at).toBeGreaterThan(0);
    expect(reply.slice(at).split(' ').length).toBeGreaterThan(12);
    const next = await collect(sessions.runs.stream(session.id));
    const answer = textOf(next, merged1.id);
    expect(answer).toContain('You said: "x1"');
    expect(answer).toContain('You said: "x2"');
    expect(answer.indexOf('"x1"')).toBeLessThan(answer.indexOf('"x2"'));
    expect((await sessions.runs.wait(session.id, merged1.id)).status).toBe('completed');
  });
});
