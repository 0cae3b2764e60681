/**
 * A Claude Agent SDK agent under agent-sessions. It calls the model, so it needs a key
 * (ANTHROPIC_API_KEY) and the SDK's Claude Code binary (installed with the package):
 *
 *   ANTHROPIC_API_KEY=… npx tsx examples/claude-agent-sdk/agent.ts [session-id]
 *
 * Two turns on one session, each a run. The SDK's session id goes into the session's metadata
 * and the second turn resumes it; the SDK's transcript is mirrored into the session's items, so
 * with DATABASE_URL and REDIS_URL set, the next turn may run on any instance (start this on two
 * hosts with the same session id). While a turn runs, `sessions.runs.interrupt(sessionId)` on
 * any instance (or POST /v1/sessions/{id}/interrupt) stops it. Tested without a model:
 * test/integrations/claude-agent-sdk.test.ts (a scripted `query`) and
 * claude-agent-sdk.cli.test.ts (the real SDK and CLI, a stub of the Messages API). Deployment
 * notes: docs/integrations.md.
 */
import { query } from '@anthropic-ai/claude-agent-sdk';
import { createSessions } from '../../src/index.js'; // in your project: 'agent-sessions'
import { CLAUDE_SESSION_ID, claudeRunner } from './claude-runner.js';

// DATABASE_URL and REDIS_URL from the environment; embedded (./.agent-sessions) without them.
const sessions = await createSessions();
const agent = claudeRunner(sessions, {
  query,
  options: {
    cwd: process.cwd(),
    // Read-only tools, allowed without asking; anything else is refused.
    allowedTools: ['Read', 'Glob', 'Grep'],
    permissionMode: 'dontAsk',
    maxTurns: 8,
  },
});

const sessionId = process.argv[2] ?? 'claude-agent-sdk-example';
await sessions.getOrCreate(sessionId, { title: 'Claude Agent SDK example' });

for (const prompt of ['Which TypeScript files are in examples/? One line each.', 'Which one did you list first, and why that one?']) {
  console.log(`\n> ${prompt}`);
  await sessions.items.append(sessionId, [{ role: 'user', content: prompt }]);
  // persistOutput: the reply's text becomes the assistant message of the history.
  const run = await sessions.runs.start(sessionId, agent, { input: prompt, persistOutput: true });
  for await (const event of sessions.runs.stream(sessionId)) {
    const data = event.data as Record<string, unknown>;
    if (event.type === 'text') process.stdout.write(String(data.text));
    else if (event.type === 'tool_call') console.log(`\n  [${String(data.name)} ${JSON.stringify(data.input)}]`);
    else if (event.type === 'result') console.log(`\n  [${String(data.subtype)}, $${String(data.total_cost_usd)}]`);
  }
  const ended = await sessions.runs.wait(sessionId, run.id);
  const { metadata } = await sessions.get(sessionId);
  console.log(`  run ${ended.status}; Claude session ${String(metadata[CLAUDE_SESSION_ID])}`);
}

await sessions.close();
