// The OpenAI Agents SDK with its history in agent-sessions (`npx tsx openai-agents.ts`). It
// runs offline: the stand-in model replies with how many items it was sent. Give the Agent a
// real model instead (`model: 'gpt-5-mini'`, with OPENAI_API_KEY set).
import { Agent, run, setTracingDisabled, Usage, type Model } from '@openai/agents';
import { createSessions } from 'agent-sessions';
import { AgentSessionsSession } from 'agent-sessions/openai-agents';

setTracingDisabled(true); // the stand-in model has no OpenAI account to send traces to
const model: Model = {
  getResponse: async ({ input }) => {
    const text = `items sent: ${Array.isArray(input) ? input.length : 1}`;
    return { usage: new Usage(), output: [{ type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text }] }] };
  },
  getStreamedResponse: () => {
    throw new Error('not streamed here');
  },
};
const sessions = await createSessions({ dataDir: ':memory:' }); // or { databaseUrl, redisUrl }
const session = new AgentSessionsSession({ sessions, sessionId: 'conv_42' }); // or { client, sessionId }
const agent = new Agent({ name: 'Assistant', model });
console.log((await run(agent, 'Hello', { session })).finalOutput); // items sent: 1
console.log((await run(agent, 'Still there?', { session })).finalOutput); // items sent: 3 (turn one came back)
await sessions.close();
