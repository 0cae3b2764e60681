/**
 * What each command accepts and says about itself: one entry per command (and per keys
 * subcommand), so a new command is one new entry. `agent-sessions <command> --help` prints the
 * entry's text; the overview lists every entry's synopsis.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;

export interface CommandSpec {
  /** The usage lines, as in the overview. */
  synopsis: string[];
  /** The flags it accepts (`--help` is added to every command). */
  options: Options;
  /** At most this many positional arguments after the command (and subcommand). */
  positionals: number;
  /** What it does, its flags and examples; printed under the synopsis. */
  help: string;
}

const DATA_DIR = { 'data-dir': { type: 'string' } } as const satisfies Options;
const SERVE_FLAGS = {
  port: { type: 'string' },
  host: { type: 'string' },
  ...DATA_DIR,
  'no-auth': { type: 'boolean' },
} as const satisfies Options;

const CONFIG_NOTE = 'Configuration is read from the environment and a .env file (see .env.example); flags override it.';

export const COMMANDS: Record<string, CommandSpec> = {
  serve: {
    synopsis: ['agent-sessions serve [--port N] [--host H] [--data-dir DIR] [--no-auth]'],
    options: SERVE_FLAGS,
    positionals: 0,
    help: `Runs the HTTP server: the API under /v1, the web console at /, the OpenAPI document at
/docs, /health, /ready and (METRICS_ENABLED) /metrics. Without DATABASE_URL it is embedded
(PGlite in DATA_DIR); with it, distributed (PostgreSQL, and Redis and NATS when REDIS_URL and
NATS_URL are set). Pending migrations are applied at start. A database that cannot be reached
is one line naming it and exit code 1; a Redis or NATS that cannot be reached is one warning
naming it, and the server starts without it until it answers (it serves from PostgreSQL;
events wait in the outbox). SIGTERM or SIGINT stops it gracefully.

Embedded, with no key at all, the first start generates an admin API key and prints it once.

  --port N         port to listen on (PORT, default 3000)
  --host H         address to bind (HOST, default 127.0.0.1)
  --data-dir DIR   embedded data directory (DATA_DIR)
  --no-auth        serve /v1 without API keys (loopback hosts only)

Examples:
  agent-sessions serve
  DATABASE_URL=postgres://app@db/agents REDIS_URL=redis://cache:6379 agent-sessions serve --host 0.0.0.0`,
  },
  migrate: {
    synopsis: ['agent-sessions migrate [--data-dir DIR]'],
    options: DATA_DIR,
    positionals: 0,
    help: `Applies the pending database migrations (serve applies them at start too) and prints the
schema version. It touches the database only (DATABASE_URL, else the embedded DATA_DIR), never
Redis or NATS. A database that cannot be reached is one line and exit code 1.

  --data-dir DIR   embedded data directory (DATA_DIR)

Examples:
  DATABASE_URL=postgres://app@db/agents agent-sessions migrate`,
  },
  keys: {
    synopsis: [
      'agent-sessions keys create --tenant T --scopes read,write,runs[,admin] [--name NAME] [--root]',
      'agent-sessions keys list [--tenant T]',
      'agent-sessions keys revoke <id>',
    ],
    options: {},
    positionals: 0,
    help: `Manages API keys. On an embedded data directory that a running server holds, the command
is sent to that server. See \`agent-sessions keys <create|list|revoke> --help\`.`,
  },
  'keys create': {
    synopsis: ['agent-sessions keys create --tenant T --scopes read,write,runs[,admin] [--name NAME] [--root] [--data-dir DIR]'],
    options: { tenant: { type: 'string' }, scopes: { type: 'string' }, name: { type: 'string' }, root: { type: 'boolean' }, ...DATA_DIR },
    positionals: 0,
    help: `Creates an API key and prints it once, as one JSON object on stdout ({"id", "key", ...});
only its hash is stored.

  --tenant T       the tenant the key belongs to (letters, digits, _ . -)
  --scopes LIST    comma-separated: read, write, runs, admin
  --name NAME      a label shown by keys list
  --root           an admin key that manages every tenant's keys under /v1/admin/keys
                   (needs admin; any other admin key manages only its own tenant's)
  --data-dir DIR   embedded data directory (DATA_DIR)

Examples:
  agent-sessions keys create --tenant acme --scopes read,write,runs --name ci
  agent-sessions keys create --tenant acme --scopes read,write | jq -r .key`,
  },
  'keys list': {
    synopsis: ['agent-sessions keys list [--tenant T] [--data-dir DIR]'],
    options: { tenant: { type: 'string' }, ...DATA_DIR },
    positionals: 0,
    help: `Lists API keys (never the keys themselves), one JSON object per line.

  --tenant T       only this tenant's keys
  --data-dir DIR   embedded data directory (DATA_DIR)

Example:
  agent-sessions keys list --tenant acme`,
  },
  'keys revoke': {
    synopsis: ['agent-sessions keys revoke <id> [--data-dir DIR]'],
    options: DATA_DIR,
    positionals: 1,
    help: `Revokes the key with this id (a UUID, as keys list prints it); it stops working at once.

  --data-dir DIR   embedded data directory (DATA_DIR)

Example:
  agent-sessions keys revoke 0192f0c4-5b6e-7a8b-9c0d-1e2f3a4b5c6d`,
  },
  erase: {
    synopsis: ['agent-sessions erase --user U --tenant T', 'agent-sessions erase --tenant T --yes'],
    options: { user: { type: 'string' }, tenant: { type: 'string' }, yes: { type: 'boolean' }, ...DATA_DIR },
    positionals: 0,
    help: `Deletes every session of a user (or everything of a tenant, its API keys included) with
items, runs, output, the events that name them and cached copies, and prints the rows deleted
as JSON. It refuses (exit 1) while one of those sessions has a run going.

  --user U         the user whose sessions go
  --tenant T       the tenant (required; alone, with --yes, the whole tenant goes)
  --yes            confirms erasing a whole tenant
  --data-dir DIR   embedded data directory (DATA_DIR)

Examples:
  agent-sessions erase --user u-123 --tenant acme
  agent-sessions erase --tenant acme --yes`,
  },
  doctor: {
    synopsis: ['agent-sessions doctor [--json]'],
    options: { ...SERVE_FLAGS, json: { type: 'boolean' } },
    positionals: 0,
    help: `Checks the configuration as serve would use it (configuration, DATA_DIR, the database and
its migrations, Redis, NATS JetStream and the events stream), one line per check with its
latency, without changing anything. Each check has a 5 s deadline. Exits 1 if a check failed.

  --json           one JSON object instead of the lines
  (and serve's flags: --port, --host, --data-dir, --no-auth)

Example:
  DATABASE_URL=postgres://app@db/agents REDIS_URL=redis://cache:6379 agent-sessions doctor`,
  },
  bench: {
    synopsis: ['agent-sessions bench [--duration S] [--concurrency N] [--sessions N] [--interrupts N] [--output FILE]'],
    options: {
      duration: { type: 'string' },
      concurrency: { type: 'string' },
      sessions: { type: 'string' },
      interrupts: { type: 'string' },
      output: { type: 'string' },
    },
    positionals: 0,
    help: `Measures the session operations against raw PostgreSQL and Redis calls at equal
concurrency, and the HTTP GET of a session against a Fastify hello-world route. It needs
DATABASE_URL (it creates and drops a throwaway database on that server) and REDIS_URL (keys
under a unique prefix, deleted at the end). Prints a table; writes a JSON report.

  --duration S      measured seconds per operation (default 2)
  --concurrency N   operations in flight (default 32)
  --sessions N      sessions created first (default 2000)
  --interrupts N    runs interrupted across instances for the interrupt latency (default 50)
  --output FILE     the JSON report (default bench/results/bench-<time>.json)

Example:
  DATABASE_URL=postgres://postgres@127.0.0.1/postgres REDIS_URL=redis://127.0.0.1:6379 agent-sessions bench --duration 1`,
  },
  export: {
    synopsis: ['agent-sessions export [--output FILE] [--data-dir DIR]'],
    options: { output: { type: 'string' }, ...DATA_DIR },
    positionals: 0,
    help: `Writes every row of the store (DATABASE_URL, else the embedded DATA_DIR) as NDJSON: a
header (format, schema version), the rows of each table in foreign-key order with lossless
values, and a trailer with the row counts, so a truncated file is detected. A backup, and the
way to move an embedded directory to PostgreSQL and back (docs/operations.md). Redis holds
only caches and is not exported. On an embedded directory a running server holds, the server
writes the file (its control socket's permissions are the credential).

  --output FILE    where to write (default stdout; a file is written 0600, renamed when complete)
  --data-dir DIR   embedded data directory (DATA_DIR)

Examples:
  agent-sessions export --output backup.ndjson
  DATABASE_URL=postgres://app@db/agents agent-sessions export > agents.ndjson`,
  },
  import: {
    synopsis: ['agent-sessions import [--input FILE] [--data-dir DIR]'],
    options: { input: { type: 'string' }, ...DATA_DIR },
    positionals: 0,
    help: `Reads an export into an empty store (DATABASE_URL, else the embedded DATA_DIR) in one
transaction: it migrates the store to the file's schema, refuses (exit 1) when the store
already holds data, inserts every row, moves the sequences past the imported ids, and
migrates to this build's schema. A damaged or truncated file changes nothing. With REDIS_URL
set, the cached keys under KEY_PREFIX are cleared. Import with no instance serving the store.

  --input FILE     the export to read (default stdin)
  --data-dir DIR   embedded data directory (DATA_DIR)

Examples:
  agent-sessions export --data-dir ./.agent-sessions --output moving.ndjson
  DATABASE_URL=postgres://app@db/agents agent-sessions import --input moving.ndjson`,
  },
  help: {
    synopsis: ['agent-sessions help [<command> [<subcommand>]]'],
    options: {},
    positionals: 2,
    help: `Prints the usage of a command (the same as \`agent-sessions <command> --help\`), or the overview.

Example:
  agent-sessions help keys create`,
  },
};

/** The entry for `command` and, when it has one (`keys create`), its subcommand. */
export function commandKey(command: string, sub: string | undefined): string | null {
  if (sub !== undefined && COMMANDS[`${command} ${sub}`]) return `${command} ${sub}`;
  return COMMANDS[command] ? command : null;
}

export function overview(version: string): string {
  // Subcommands are listed by their command's synopsis.
  const lines = Object.entries(COMMANDS)
    .filter(([name]) => !name.includes(' '))
    .flatMap(([, spec]) => spec.synopsis)
    .map((l) => `  ${l}`);
  return `agent-sessions ${version}

Usage:
${lines.join('\n')}

Run \`agent-sessions <command> --help\` for what a command does, its flags and examples.
${CONFIG_NOTE}`;
}

export function commandHelp(key: string): string {
  const spec = COMMANDS[key] as CommandSpec;
  return `Usage:\n${spec.synopsis.map((l) => `  ${l}`).join('\n')}\n\n${spec.help}\n\n${CONFIG_NOTE}`;
}

/** A usage error: the CLI prints its message as one line and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export interface ParsedCommand {
  /** The COMMANDS entry (`keys create`), or null for no command (the overview). */
  key: string | null;
  /** Positional arguments after the command (for keys: after the subcommand). */
  args: string[];
  values: Record<string, string | boolean | undefined>;
  help: boolean;
}

/** The first sentence of parseArgs' message, as one line naming the command's help. */
function parseError(err: unknown, key: string | null): UsageError {
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS_')) throw err;
  const message = (err as Error).message.split('. ')[0]?.replace(/\.$/, '') ?? 'bad arguments';
  return new UsageError(`${message} (see agent-sessions ${key === null ? '' : `${key} `}--help)`);
}

/**
 * Parses `argv` (without node and the script) for the command it starts with: only that
 * command's flags are accepted, each with its type. Throws UsageError.
 */
export function parseCommand(argv: string[]): ParsedCommand {
  const [command, ...rest] = argv;
  if (command === undefined || command.startsWith('-')) {
    // Only the global flags may come before a command.
    let values: { help?: boolean; version?: boolean };
    try {
      ({ values } = parseArgs({
        args: argv,
        options: { help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'v' } },
        strict: true,
        allowPositionals: false,
      }));
    } catch (err) {
      throw parseError(err, null);
    }
    return { key: null, args: [], values, help: values.help === true };
  }
  const sub = rest[0] !== undefined && !rest[0].startsWith('-') ? rest[0] : undefined;
  const key = commandKey(command, sub);
  if (key === null) throw new UsageError(`unknown command ${command} (see agent-sessions --help)`);
  const spec = COMMANDS[key] as CommandSpec;
  const args = key.includes(' ') ? rest.slice(1) : rest;
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({
      args,
      options: { ...spec.options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: true,
    });
  } catch (err) {
    throw parseError(err, key);
  }
  const help = parsed.values.help === true;
  if (!help && parsed.positionals.length > spec.positionals) {
    const extra = parsed.positionals.slice(spec.positionals).join(' ');
    throw new UsageError(
      key === 'keys'
        ? `unknown keys command ${extra} (see agent-sessions keys --help)`
        : `${key} takes ${spec.positionals === 0 ? 'no arguments' : `at most ${spec.positionals}`}, got ${extra} (see agent-sessions ${key} --help)`,
    );
  }
  return { key, args: parsed.positionals, values: parsed.values, help };
}
