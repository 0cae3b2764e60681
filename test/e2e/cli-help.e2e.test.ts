/**
 * The real CLI's usage: `<command> --help` (and `-h`, and `help <command>`) prints that
 * command's own usage on stdout and exits 0, for every command in the table; a flag the
 * command does not know, a flag without its value or a value for a switch is one line on
 * stderr and exit 2, before anything is opened.
 */
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../../src/cli/commands.js';
import { runCli } from '../setup/server-process.js';

/** Spawned a few at a time: each is a Node process with tsx, on shared cores. */
async function inBatches<T, R>(items: readonly T[], size: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
}

describe('e2e/cli/help', { timeout: 180_000 }, () => {
  it('prints each command\'s own usage for --help, exit 0, nothing on stderr', async () => {
    const names = Object.keys(COMMANDS);
    const results = await inBatches(names, 4, (name) => runCli([...name.split(' '), '--help']));
    names.forEach((name, i) => {
      const r = results[i];
      expect(r?.code, `${name}: ${r?.stderr}`).toBe(0);
      expect(r?.stderr, name).toBe('');
      expect(r?.stdout, name).toMatch(/^Usage:\n/);
      for (const line of COMMANDS[name]?.synopsis ?? []) expect(r?.stdout, name).toContain(line);
      // Every flag the command accepts is described.
      for (const flag of Object.keys(COMMANDS[name]?.options ?? {})) expect(r?.stdout, `${name} --${flag}`).toContain(`--${flag}`);
    });
  });

  it('answers -h and `help <command>` the same, and the overview lists every command', async () => {
    const [short, viaHelp, viaHelpSub, overview, version] = await Promise.all([
      runCli(['serve', '-h']),
      runCli(['help', 'serve']),
      runCli(['help', 'keys', 'create']),
      runCli(['--help']),
      runCli(['--version']),
    ]);
    expect(short.code).toBe(0);
    expect(short.stdout).toContain('agent-sessions serve [--port N]');
    expect(viaHelp.stdout).toBe(short.stdout);
    expect(viaHelpSub.code).toBe(0);
    expect(viaHelpSub.stdout).toContain('--scopes LIST');
    expect(overview.code).toBe(0);
    for (const name of Object.keys(COMMANDS).filter((n) => !n.includes(' '))) {
      expect(overview.stdout).toContain(`agent-sessions ${name}`);
    }
    expect(overview.stdout).toContain('agent-sessions <command> --help');
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('refuses unknown flags, missing values and wrong types with one line and exit 2', async () => {
    const cases: Array<[args: string[], stderr: RegExp]> = [
      [['serve', '--bogus'], /^agent-sessions: Unknown option '--bogus' \(see agent-sessions serve --help\)\n$/],
      [['keys', 'list', '--port', '4'], /Unknown option '--port' \(see agent-sessions keys list --help\)\n$/],
      [['serve', '--port'], /'--port <value>' argument missing/],
      [['serve', '--port', 'abc'], /^agent-sessions: --port must be 0 to 65535, got abc\n$/],
      [['erase', '--yes=1', '--tenant', 't'], /'--yes' does not take an argument/],
      [['bench', '--duration', 'soon'], /--duration must be a positive number, got soon/],
      [['serve', 'extra'], /serve takes no arguments, got extra/],
      [['keys', 'frob'], /unknown keys command frob/],
      [['frob'], /unknown command frob/],
      [['--nope'], /Unknown option '--nope' \(see agent-sessions --help\)/],
    ];
    const results = await inBatches(cases, 4, ([args]) => runCli(args));
    cases.forEach(([args, stderr], i) => {
      const r = results[i];
      expect(r?.code, args.join(' ')).toBe(2);
      expect(r?.stdout, args.join(' ')).toBe('');
      expect(r?.stderr, args.join(' ')).toMatch(stderr);
      expect(r?.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r?.stderr, args.join(' ')).not.toMatch(/\n\s+at /);
    });
  });
});
