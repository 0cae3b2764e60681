/**
 * The layering of SPEC §4, checked on whatever files src/ holds (no list of today's files):
 * src/ holds only folders and the two entry points; core and api import no package beyond
 * what they may; routes hold no SQL; adapter folders do not import each other; the client
 * stands on api and core only; and no files import each other in a cycle.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { cycles, filesUnder, isRelative, packageName, walkGraph, type GraphEdge } from '../setup/module-graph.js';

/**
 * Violations tolerated for a stated reason, one line each (none today). An entry that no
 * longer occurs fails the last test, and a violation not listed here fails its rule.
 */
const KNOWN_VIOLATIONS: Readonly<Record<string, string>> = {};

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));
const ENTRY_FILES = ['index.ts', 'internal.ts'];
const SOURCE = /\.(ts|mts|cts)$/;
/** The agent frameworks' packages (optional peers): the OpenAI Agents SDK, the AI SDK, the Claude Agent SDK. */
const FRAMEWORK = /^(@openai\/agents(-[\w-]+)?|openai|ai|@ai-sdk\/[\w.-]+|@anthropic-ai\/[\w.-]+)$/;

const rel = (file: string) => path.relative(SRC, file).split(path.sep).join('/');
/** The first folder under src/ (core, api, adapters, ...), or the file name for a top-level file. */
const layer = (file: string) => rel(file).split('/')[0] ?? '';
/** For a file under src/adapters/: its adapter folder (memory, postgres, ...). */
const adapterOf = (file: string) => (layer(file) === 'adapters' ? (rel(file).split('/')[1] ?? null) : null);

const files = filesUnder(SRC, (name) => SOURCE.test(name));
const { edges } = walkGraph(files, 'source');
const edgesFrom = (top: string) => edges.filter((e) => layer(e.from) === top);
const target = (e: GraphEdge) => (e.to === null ? e.reference.specifier : rel(e.to));

/**
 * Imports that leave the allowed ground: a relative import resolving outside `folders`, or a
 * package not in `packages` (`node:` builtins are always allowed).
 */
function importsOutside(from: string, folders: readonly string[], packages: readonly string[]): string[] {
  return edgesFrom(from)
    .filter((e) =>
      e.to === null
        ? !e.reference.specifier.startsWith('node:') && !packages.includes(packageName(e.reference.specifier))
        : !folders.includes(layer(e.to)),
    )
    .map((e) => `${from}: ${rel(e.from)} imports ${target(e)}`);
}

/** SQL statements inside string and template literals (comments and identifiers do not count). */
const SQL_PATTERNS = [
  /\bselect\s+(?:distinct\s+)?(?:\*|count\s*\(|[\w."]+(?:\s*,\s*[\w."()*]+)*)\s+from\s/i,
  /\binsert\s+into\s/i,
  /\bupdate\s+[\w."]+\s+set\s/i,
  /\bdelete\s+from\s/i,
];

function sqlLiterals(file: string): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    let text: string | null = null;
    if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) text = node.text;
    else if (ts.isTemplateExpression(node)) text = [node.head.text, ...node.templateSpans.map((s) => s.literal.text)].join(' $ ');
    if (text !== null && SQL_PATTERNS.some((p) => p.test(text))) {
      found.push(`line ${source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1}: ${text.trim().slice(0, 60)}`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** Every rule's violations, keyed as KNOWN_VIOLATIONS keys them. */
const RULES: Record<string, () => string[]> = {
  'every relative import names a file in src/': () =>
    edges
      .filter((e) => isRelative(e.reference.specifier) && (e.to === null || !e.to.startsWith(SRC)))
      .map((e) => `unresolved: ${rel(e.from)} imports ${e.reference.specifier}`),

  'src/ holds only folders plus index.ts and internal.ts': () =>
    readdirSync(SRC, { withFileTypes: true })
      .filter((d) => !d.isDirectory() && !ENTRY_FILES.includes(d.name))
      .map((d) => `layout: src/${d.name}`),

  'src/core imports only core and node: builtins': () => importsOutside('core', ['core'], []),

  'src/api imports only api, core, typebox and node: builtins': () => importsOutside('api', ['api', 'core'], ['typebox']),

  'src/client stands on api and core only (no server, app or adapters)': () =>
    importsOutside('client', ['client', 'api', 'core'], ['typebox']),

  'everything the client reaches at runtime or in types is client, api or core, with no package but typebox': () => {
    const reach = walkGraph([path.join(SRC, 'client/index.ts')], 'source');
    return reach.edges
      .filter((e) =>
        e.to === null
          ? !e.reference.specifier.startsWith('node:') && packageName(e.reference.specifier) !== 'typebox'
          : !['client', 'api', 'core'].includes(layer(e.to)),
      )
      .map((e) => `client-reach: ${rel(e.from)} imports ${target(e)}`);
  },

  // The optional peer @opentelemetry/api: one adapter folder imports it, and the main entry's
  // graph never reaches that folder (it is the `agent-sessions/opentelemetry` subpath).
  'only src/adapters/otel imports @opentelemetry packages': () =>
    edges
      .filter((e) => e.to === null && packageName(e.reference.specifier).startsWith('@opentelemetry/') && adapterOf(e.from) !== 'otel')
      .map((e) => `otel-import: ${rel(e.from)} imports ${e.reference.specifier}`),

  'the main entry reaches neither src/adapters/otel nor an @opentelemetry package': () => {
    const reach = walkGraph([path.join(SRC, 'index.ts')], 'source');
    return reach.edges
      .filter((e) => (e.to === null ? packageName(e.reference.specifier).startsWith('@opentelemetry/') : adapterOf(e.to) === 'otel'))
      .map((e) => `main-otel: ${rel(e.from)} imports ${target(e)}`);
  },

  // The agent frameworks are optional peers: only their adapters (src/integrations, each a
  // subpath such as `agent-sessions/openai-agents`) import them, and the main entry reaches
  // none of those.
  'only src/integrations imports an agent framework package': () =>
    edges
      .filter((e) => e.to === null && FRAMEWORK.test(packageName(e.reference.specifier)) && layer(e.from) !== 'integrations')
      .map((e) => `framework-import: ${rel(e.from)} imports ${e.reference.specifier}`),

  'the main entry reaches neither src/integrations nor an agent framework package': () => {
    const reach = walkGraph([path.join(SRC, 'index.ts')], 'source');
    return reach.edges
      .filter((e) => (e.to === null ? FRAMEWORK.test(packageName(e.reference.specifier)) : layer(e.to) === 'integrations'))
      .map((e) => `main-framework: ${rel(e.from)} imports ${target(e)}`);
  },

  // The optional peer `ai`: only the `agent-sessions/ai-sdk` subpath names it, for its types
  // alone, so the subpath loads without it; the main entry never reaches the integrations.
  "only src/integrations/ai-sdk.ts imports the `ai` package, and only its types": () =>
    edges
      .filter((e) => e.to === null && packageName(e.reference.specifier) === 'ai' && (rel(e.from) !== 'integrations/ai-sdk.ts' || !e.reference.typeOnly))
      .map((e) => `ai-import: ${rel(e.from)} imports ${e.reference.specifier}${e.reference.typeOnly ? '' : ' at runtime'}`),

  'no adapter folder imports another adapter folder': () =>
    edgesFrom('adapters')
      .filter((e) => e.to !== null && layer(e.to) === 'adapters' && adapterOf(e.to) !== adapterOf(e.from))
      .map((e) => `adapters: ${rel(e.from)} -> ${target(e)}`),

  'routes hold no SQL and import nothing from adapters/postgres': () => {
    const routes = files.filter((f) => rel(f).startsWith('server/routes/'));
    const sql = routes.flatMap((f) => (sqlLiterals(f).length > 0 ? [`routes-sql: ${rel(f)}`] : []));
    const postgres = edges
      .filter((e) => rel(e.from).startsWith('server/routes/') && e.to !== null && rel(e.to).startsWith('adapters/postgres/'))
      .map((e) => `routes-postgres: ${rel(e.from)} -> ${target(e)}`);
    return [...sql, ...postgres];
  },

  'no import cycles (type-only imports included)': () => importCycles(false),

  'no import cycles at runtime (imports not marked `type`)': () => importCycles(true).map((c) => `runtime-${c}`),
};

function importCycles(runtimeOnly: boolean): string[] {
  const graph = new Map<string, Set<string>>(files.map((f) => [f, new Set<string>()]));
  for (const e of edges) {
    if (e.to === null || (runtimeOnly && e.reference.typeOnly)) continue;
    graph.get(e.from)?.add(e.to);
  }
  return cycles(graph).map((members) => `cycle: ${members.map(rel).join(', ')}`);
}

const newViolations = (found: string[]) => [...new Set(found)].filter((v) => !(v in KNOWN_VIOLATIONS)).sort();

describe('architecture (SPEC §4)', () => {
  it('sees the source tree', () => {
    // A wrong path would make every rule pass vacuously.
    expect(files.map(rel)).toEqual(expect.arrayContaining(ENTRY_FILES));
    expect(edges.length).toBeGreaterThan(files.length);
  });

  for (const [rule, check] of Object.entries(RULES)) {
    it(rule, () => {
      expect(newViolations(check())).toEqual([]);
    });
  }

  it('finds SQL in a literal and not in prose', () => {
    const probe = (text: string) => SQL_PATTERNS.some((p) => p.test(text));
    expect(probe('SELECT id, tenant FROM sessions WHERE id = $1')).toBe(true);
    expect(probe('select * from agent_sessions')).toBe(true);
    expect(probe('INSERT INTO items (a) VALUES ($1)')).toBe(true);
    expect(probe('UPDATE sessions SET version = version + 1')).toBe(true);
    expect(probe('DELETE FROM items WHERE session_id = $1')).toBe(true);
    expect(probe('select the session to update from the list')).toBe(false);
    expect(probe('the session was deleted; update its cache')).toBe(false);
  });

  it('lists in KNOWN_VIOLATIONS only violations that still occur (remove the ones fixed)', () => {
    const all = new Set(Object.values(RULES).flatMap((check) => check()));
    expect(Object.keys(KNOWN_VIOLATIONS).filter((v) => !all.has(v))).toEqual([]);
  });
});
