/**
 * Migration 054 on a database populated before it: every existing session gets its version as
 * its revision (so an ETag a client took before the upgrade keeps its meaning), and afterwards
 * only writes to the fields a client sets move the revision.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgDatabase } from '../../src/adapters/postgres/database.js';
import { loadMigrations, migrate } from '../../src/adapters/postgres/migrator.js';
import { PostgresSessionRepository } from '../../src/adapters/postgres/session-repository.js';
import { freshDatabase, requireServices, type FreshDatabase } from '../setup/harness.js';

const ready = requireServices(['postgres'], 'adapters/session-revision-migration');
const TENANT = 'revision';
const LIFETIMES = { ttlSeconds: 3600, idleTimeoutSeconds: null, absoluteTimeoutSeconds: null };

describe.skipIf(!ready)('adapters/session-revision-migration', () => {
  let fresh: FreshDatabase;
  let db: PgDatabase;

  beforeAll(async () => {
    fresh = await freshDatabase();
    db = new PgDatabase({ connectionString: fresh.url });
  });

  afterAll(async () => {
    await db?.close();
    await fresh?.drop();
  });

  it('starts existing sessions at their version; then only update and terminate move it', async () => {
    await migrate(db, loadMigrations().filter((m) => m.version < 54));
    const repo = new PostgresSessionRepository(db);
    const written = randomUUID();
    const untouched = randomUUID();
    await repo.create(TENANT, written, { title: 'before' }, LIFETIMES);
    await repo.create(TENANT, untouched, {}, LIFETIMES);
    // As the previous release left it: several writes, each a version.
    await db.query('UPDATE sessions SET version = 7 WHERE id = $1', [written]);

    const result = await migrate(db);
    expect(result.applied).toContain('054_session_revision');
    expect(await repo.get(TENANT, written)).toMatchObject({ version: 7, revision: 7 });
    expect(await repo.get(TENANT, untouched)).toMatchObject({ version: 1, revision: 1 });

    // The ETag "7" a client read before the upgrade still matches; appends do not move it.
    await repo.appendItems(TENANT, written, [{ id: randomUUID(), role: 'user', content: 'hi' }], { expectedRevision: 7 });
    const updated = await repo.update(TENANT, written, { title: 'after' }, { expectedRevision: 7 });
    expect(updated).toMatchObject({ version: 9, revision: 8, title: 'after' });
    await expect(repo.update(TENANT, written, { title: 'lost' }, { expectedRevision: 7 })).rejects.toMatchObject({
      code: 'version_conflict',
      details: { currentRevision: 8 },
    });
    expect(await repo.terminate(TENANT, written, 'done', { expectedRevision: 8 })).toMatchObject({ version: 10, revision: 9 });

    // 051's version-comparing function stays for instances of the previous release.
    const [row] = await db.query<{ holds: boolean }>(
      'SELECT agent_sessions_preconditions_hold(s, 10, NULL) AS holds FROM sessions s WHERE id = $1',
      [written],
    );
    expect(row?.holds).toBe(true);
  });
});
