// The library in ten lines: embedded, a client-chosen id, an item without a role, the latest items first.
import { createSessions } from 'agent-sessions';

const sessions = await createSessions({ dataDir: ':memory:' });
const session = await sessions.getOrCreate('chat_V1StGXR8_Z5jdHi6B');
await sessions.items.append(session.id, [{ role: 'user', content: 'What is the weather in Lisbon?' }]);
await sessions.items.append(session.id, [{ type: 'function_call', content: { name: 'get_weather', arguments: '{"city":"Lisbon"}' } }]);
const { items } = await sessions.items.list(session.id, { order: 'desc', limit: 10 });
console.log(items.map((i) => `#${i.seq} ${i.role ?? '(no role)'} ${i.type}`).join('\n'));
await sessions.close();
