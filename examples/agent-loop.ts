/**
 * Your own agent loop under agent-sessions, with nothing installed and no network:
 *
 *   npx tsx examples/agent-loop.ts
 *
 * The loop is shaped like one written against the Vercel AI SDK (`streamText(...).fullStream`
 * parts: text-delta, tool-call, finish) and calls tools until the model stops asking. The
 * MODEL IS FAKE: `fakeModelStream` below yields canned parts with small delays so the
 * example runs offline; swap in `streamText({ model, messages, tools, abortSignal })` from
 * the `ai` package and iterate its `fullStream` the same way.
 *
 * What agent-sessions adds: the run's output gets a per-session seq and can be read (and
 * resumed) from any instance; `run.signal` fires when any instance interrupts; input sent
 * from anywhere arrives on `run.inputs`; history and counters live in the session.
 */
import { createSessions, type RunContext } from '../src/index.js'; // in your project: 'agent-sessions'

// --- A FAKE model stream (stands in for the AI SDK's streamText().fullStream) ----------------

type StreamPart =
  | { type: 'text-delta'; text: string }
  | { type: 'tool-call'; toolCallId: string; toolName: string; input: Record<string, unknown> }
  | { type: 'finish'; finishReason: 'stop' | 'tool-calls'; usage: { inputTokens: number; outputTokens: number } };

interface Message {
  /** null for items stored without one (a framework's function call, say). */
  role: string | null;
  content: unknown;
}

async function* fakeModelStream(opts: { messages: Message[]; abortSignal: AbortSignal }): AsyncIterable<StreamPart> {
  const pause = () =>
    new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        clearTimeout(t);
        reject(opts.abortSignal.reason);
      };
      const t = setTimeout(() => {
        opts.abortSignal.removeEventListener('abort', onAbort);
        resolve();
      }, 30);
      if (opts.abortSignal.aborted) onAbort();
      else opts.abortSignal.addEventListener('abort', onAbort, { once: true });
    });
  const last = opts.messages.at(-1);
  const words =
    last?.role === 'tool'
      ? `It is ${(last.content as { forecast: string }).forecast} in Lisbon, up to ${(last.content as { high_c: number }).high_c} °C.`.split(' ')
      : ['Let', 'me', 'check', 'the', 'weather.'];
  for (const [i, w] of words.entries()) {
    await pause();
    yield { type: 'text-delta', text: i === 0 ? w : ` ${w}` };
  }
  if (last?.role !== 'tool') {
    yield { type: 'tool-call', toolCallId: 'call_1', toolName: 'get_weather', input: { city: 'Lisbon' } };
    yield { type: 'finish', finishReason: 'tool-calls', usage: { inputTokens: 40, outputTokens: 12 } };
  } else {
    yield { type: 'finish', finishReason: 'stop', usage: { inputTokens: 70, outputTokens: 15 } };
  }
}

// --- Tools -----------------------------------------------------------------------------------

const tools: Record<string, (input: Record<string, unknown>) => Promise<unknown>> = {
  get_weather: async ({ city }) => ({ city, forecast: 'sunny', high_c: 21 }),
};

// --- The agent loop, as a runner -------------------------------------------------------------

const sessions = await createSessions({ dataDir: ':memory:' });

async function agent(run: RunContext) {
  // The latest 100 items: read newest first, then put them back in chronological order.
  const history = await sessions.items.list(run.sessionId, { order: 'desc', limit: 100 });
  const messages: Message[] = history.items.reverse().map((i) => ({ role: i.role, content: i.content }));
  for (let step = 0; step < 5; step++) {
    let text = '';
    const calls: Array<Extract<StreamPart, { type: 'tool-call' }>> = [];
    for await (const part of fakeModelStream({ messages, abortSignal: run.signal })) {
      if (part.type === 'text-delta') {
        text += part.text;
        await run.emit({ type: 'text', data: { text: part.text } });
      } else if (part.type === 'tool-call') {
        calls.push(part);
        await run.emit({ type: 'tool_call', data: { id: part.toolCallId, name: part.toolName, input: part.input } });
      } else {
        await sessions.incrementCounters(run.sessionId, { ...part.usage, totalTurns: part.finishReason === 'stop' ? 1 : 0 });
      }
    }
    messages.push({ role: 'assistant', content: text });
    await sessions.items.append(run.sessionId, [{ role: 'assistant', content: text }]);
    if (calls.length === 0) return { sessionStatus: 'waiting_input' as const };
    for (const call of calls) {
      const result = await tools[call.toolName]?.(call.input);
      await run.emit({ type: 'tool_result', data: { id: call.toolCallId, result } });
      messages.push({ role: 'tool', content: result });
      await sessions.items.append(run.sessionId, [{ role: 'tool', type: 'tool_result', content: result }]);
    }
  }
}

// --- Using it ---------------------------------------------------------------------------------

const session = await sessions.create({ title: 'weather chat' });
await sessions.items.append(session.id, [{ role: 'user', content: 'What is the weather in Lisbon?' }]);

const run = await sessions.runs.start(session.id, agent, { input: 'What is the weather in Lisbon?' });
console.log(`run ${run.id} is ${run.status}; streaming its output:`);
for await (const event of sessions.runs.stream(session.id)) {
  console.log(`  #${event.seq} ${event.type.padEnd(11)} ${JSON.stringify(event.data)}`);
}
const after = await sessions.get(session.id);
console.log(`session is ${after.status}; turns=${after.totalTurns} tokens in/out=${after.inputTokens}/${after.outputTokens}`);

// An interrupt (from this or any other instance) fires run.signal; the fake stream rejects
// with it and the run ends `interrupted`, with a `done` event readers see.
await sessions.items.append(session.id, [{ role: 'user', content: 'And tomorrow?' }]);
const second = await sessions.runs.start(session.id, agent);
setTimeout(() => void sessions.runs.interrupt(session.id), 60);
const ended = await sessions.runs.wait(session.id, second.id);
console.log(`second run ended ${ended.status} (${ended.endReason})`);

await sessions.close();
