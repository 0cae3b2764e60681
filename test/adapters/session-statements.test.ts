/**
 * Every session operation is one statement text, whatever its optional fields: a connection
 * prepares one statement per operation, however many combinations of fields, filters and
 * options the calls use (a text per combination would exhaust the 500 statement names).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ListSessionsFilter, SessionStatus, UpdateSessionInput } from '../../src/core/types.js';
import { PgDatabase } from '../../src/adapters/postgres/database.js';
import { migrate } from '../../src/adapters/postgres/migrator.js';
import { PostgresSessionRepository } from '../../src/adapters/postgres/session-repository.js';
import { freshDatabase, requireServices, type FreshDatabase } from '../setup/harness.js';

const ready = requireServices(['postgres'], 'adapters/session-statements');
const TENANT = 'statements';
const LIFETIMES = { ttlSeconds: 3600, idleTimeoutSeconds: 1800, absoluteTimeoutSeconds: 86_400 };

describe.skipIf(!ready)('adapters/session-statements', () => {
  let fresh: FreshDatabase;
  let db: PgDatabase;
  let repo: PostgresSessionRepository;

  beforeAll(async () => {
    fresh = await freshDatabase();
    // One connection, so every statement below is prepared on the connection we inspect.
    db = new PgDatabase({ connectionString: fresh.url, max: 1 });
    await migrate(db);
    repo = new PostgresSessionRepository(db, { metadataLimitBytes: 4096 });
  });

  afterAll(async () => {
    await db?.close();
    await fresh?.drop();
  });

  async function prepared(): Promise<string[]> {
    const rows = await db.query<{ statement: string }>('SELECT statement FROM pg_prepared_statements WHERE from_sql = false');
    return rows.map((r) => r.statement);
  }

  it('prepares one statement per operation for every combination of optional fields', async () => {
    const s = await repo.create(TENANT, randomUUID(), { userId: 'u' }, LIFETIMES);
    const before = await prepared();
    const fields: Array<[keyof UpdateSessionInput, unknown]> = [
      ['model', 'm'],
      ['title', null],
      ['systemPrompt', 'p'],
      ['workspacePath', '/w'],
      ['mcpClientIds', ['a']],
      ['metadata', { k: 1 }],
      ['idleTimeoutSeconds', 600],
      ['status', 'active'],
    ];
    for (let mask = 0; mask < 2 ** fields.length; mask++) {
      const patch = Object.fromEntries(fields.filter((_, i) => mask & (1 << i))) as UpdateSessionInput;
      if (patch.status) patch.status = (mask & 1 ? 'idle' : 'active') as SessionStatus;
      await repo.update(TENANT, s.id, patch, mask % 3 === 0 ? {} : { expectedRevision: (await repo.get(TENANT, s.id))?.revision });
    }
    const filters: ListSessionsFilter[] = [{}, { userId: 'u' }, { status: 'idle' }, { updatedAfter: new Date(0).toISOString() }];
    for (const f of filters) {
      const page = await repo.list(TENANT, { ...f, limit: 1 });
      if (page.nextCursor) await repo.list(TENANT, { ...f, cursor: page.nextCursor, limit: 1 });
    }
    await repo.appendItems(TENANT, s.id, [{ id: randomUUID(), role: 'user', type: 'message', content: 'x' }], {});
    for (const q of [{}, { lastTurns: 1 }, { cursor: Buffer.from('{"s":0}').toString('base64url') }]) {
      await repo.listItems(TENANT, s.id, { ...q, limit: 5 });
    }
    await repo.incrementCounters(TENANT, s.id, { totalTurns: 1 }, {});
    await repo.incrementCounters(TENANT, s.id, { inputTokens: 1, outputTokens: 2, totalCostUsd: 0.5 }, {});
    const added = (await prepared()).filter((t) => !before.includes(t));
    // update, get, list, list by user, append, list items, increment: one text each.
    expect(added).toHaveLength(7);
  });
});
