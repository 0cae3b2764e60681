/**
 * The demo agent (the default runner): streams a reply word by word with a small delay, so
 * streaming, resume, interrupt and input can be tried with nothing installed.
 *
 * Input: a string, or `{ text?, words?, delay_ms? }` (reply length in words, at most
 * 10,000; delay per word, at most 1,000 ms). A run that starts with several inputs (merged or
 * debounced) answers each in turn. Input sent (or steered) while it streams is woven into the
 * reply at the next word: a short answer to it, then the reply goes on; an interrupt stops it
 * between two words.
 */
import type { Runner } from '../core/runs.js';
import { sleep } from '../core/abort.js';

export interface DemoRunnerOptions {
  /** Default delay between words. */
  wordDelayMs?: number;
  /** Default reply length in words. */
  words?: number;
}

const FILLER = (
  'agent sessions keeps the state of every run in PostgreSQL streams its output through Redis and lets any ' +
  'instance interrupt it or feed it input so a reader can move between servers without losing a word'
).split(' ');

interface DemoInput {
  text: string;
  words: number;
  delayMs: number;
}

function parse(input: unknown, defaults: Required<DemoRunnerOptions>): DemoInput {
  const clamp = (v: unknown, max: number, fallback: number) =>
    typeof v === 'number' && Number.isFinite(v) ? Math.min(Math.max(0, Math.floor(v)), max) : fallback;
  if (typeof input === 'string') return { text: input, words: defaults.words, delayMs: defaults.wordDelayMs };
  const o = typeof input === 'object' && input !== null ? (input as Record<string, unknown>) : {};
  return {
    text: typeof o.text === 'string' ? o.text : '',
    words: clamp(o.words, 10_000, defaults.words),
    delayMs: clamp(o.delay_ms, 1_000, defaults.wordDelayMs),
  };
}

function reply(text: string, words: number): string[] {
  const opening = text ? `You said: "${text.slice(0, 200)}".`.split(' ') : ['Hello.'];
  const out = [...opening];
  for (let i = 0; out.length < Math.max(words, opening.length); i++) out.push(FILLER[i % FILLER.length] as string);
  return out;
}

export function demoRunner(options: DemoRunnerOptions = {}): Runner {
  const defaults = { wordDelayMs: options.wordDelayMs ?? 40, words: options.words ?? 24 };
  const runner: Runner = async (run) => {
    const initial = run.initialInputs.length > 0 ? run.initialInputs : [run.input];
    const { text, words, delayMs } = parse(initial[0], defaults);
    const received: unknown[] = [];
    // Collects input while the reply streams; the iteration ends with the run.
    void (async () => {
      for await (const input of run.inputs) {
        received.push(input);
        await run.emit({ type: 'status', data: { state: 'input_received', input } });
      }
    })().catch(() => undefined);
    const answer = (input: unknown) => reply(typeof input === 'string' ? input : JSON.stringify(input), Math.min(words, 12));
    // `weave`: input that arrived is answered before the next word of this reply.
    const say = async (parts: string[], weave: boolean) => {
      for (const [i, word] of parts.entries()) {
        while (weave && received.length > 0) await say(['\n', ...answer(received.shift()), '\n'], false);
        await sleep(delayMs, run.signal);
        await run.emit({ type: 'text', data: { text: i === 0 ? word : ` ${word}` } });
      }
    };
    await say(reply(text, words), true);
    for (const more of initial.slice(1)) await say(['\n', ...answer(parse(more, defaults).text || more)], true);
    while (received.length > 0) await say(['\n', ...answer(received.shift())], false);
    run.signal.throwIfAborted();
  };
  // Input sent or steered while it streams is woven into the reply.
  return Object.assign(runner, { takesInput: true });
}
