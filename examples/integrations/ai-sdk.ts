// The Vercel AI SDK (`ai` 6) on agent-sessions, offline (`npx tsx ai-sdk.ts`): a scripted model stands in for yours.
import { createSessions } from 'agent-sessions';
import { createChatStore, pipeUIMessageStreamToRun } from 'agent-sessions/ai-sdk';
import { simulateReadableStream, streamText, type UIMessage } from 'ai';
import { MockLanguageModelV3 } from 'ai/test';

const usage = { inputTokens: { total: 3, noCache: 3, cacheRead: 0, cacheWrite: 0 }, outputTokens: { total: 3, text: 3, reasoning: 0 } };
const words = ['Hello', ' from', ' a run.'].map((delta) => ({ type: 'text-delta' as const, id: 't', delta }));
const model = new MockLanguageModelV3({ doStream: { stream: simulateReadableStream({ chunks: [{ type: 'text-start', id: 't' }, ...words, { type: 'text-end', id: 't' }, { type: 'finish', finishReason: { unified: 'stop', raw: 'stop' }, usage }] }) } });

const sessions = await createSessions({ dataDir: ':memory:' }); // or { databaseUrl, redisUrl }
const chat = createChatStore({ sessions }); // or { client }: an AgentSessionsClient of a server
const messages: UIMessage[] = [{ id: 'u1', role: 'user', parts: [{ type: 'text', text: 'Hi!' }] }];
await chat.saveMessages('chat-1', messages); // POST /api/chat: save, run the reply, answer the run's stream
const run = await sessions.runs.start('chat-1', (run) =>
  pipeUIMessageStreamToRun(run, streamText({ model, prompt: 'Hi!', abortSignal: run.signal }).toUIMessageStream({
    originalMessages: messages, generateMessageId: () => 'a1', onFinish: ({ messages }) => chat.saveMessages('chat-1', messages) })));
const response = await chat.streamRun('chat-1', run.id); // what useChat reads; GET /api/chat/[id]/stream: chat.resumeStream(id)
console.log(response.headers.get('x-vercel-ai-ui-message-stream'), (await response.text()).match(/^data: /gm)?.length, 'chunks');
console.log(JSON.stringify((await chat.loadMessages('chat-1')).map((m) => [m.role, m.parts.flatMap((p) => (p.type === 'text' ? [p.text] : []))])));
console.log((await chat.resumeStream('chat-1')).status); // 204: nothing runs now
await sessions.close();
