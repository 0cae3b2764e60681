/**
 * Reads module specifiers out of TypeScript and JavaScript files (sources, built .js and
 * .d.ts) with the compiler's parser, so the architecture and exports checks see every form a
 * file can depend on another by, and walks the graph they make.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

export interface ModuleReference {
  specifier: string;
  /** `import type`, `export type`, `import("x").T` in a type: gone from the emitted JavaScript. */
  typeOnly: boolean;
  line: number;
}

/**
 * Every module a file names: import and export declarations, `import x = require()`,
 * `import("x")` calls and types, `declare module "x"` augmentations and triple-slash
 * references (types and paths).
 */
export function moduleReferences(fileName: string, text = readFileSync(fileName, 'utf8')): ModuleReference[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const out: ModuleReference[] = [];
  const add = (node: ts.Node, specifier: string, typeOnly: boolean) => {
    out.push({ specifier, typeOnly, line: source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1 });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      // `import { type A, type B }` also vanishes from the JavaScript when every name is a type.
      const allTypeNames =
        clause !== undefined &&
        clause.name === undefined &&
        clause.namedBindings !== undefined &&
        ts.isNamedImports(clause.namedBindings) &&
        clause.namedBindings.elements.length > 0 &&
        clause.namedBindings.elements.every((e) => e.isTypeOnly);
      add(node, node.moduleSpecifier.text, clause?.isTypeOnly === true || allTypeNames);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.exportClause;
      const allTypeNames =
        clause !== undefined && ts.isNamedExports(clause) && clause.elements.length > 0 && clause.elements.every((e) => e.isTypeOnly);
      add(node, node.moduleSpecifier.text, node.isTypeOnly || allTypeNames);
    } else if (
      ts.isImportEqualsDeclaration(node) &&
      ts.isExternalModuleReference(node.moduleReference) &&
      ts.isStringLiteral(node.moduleReference.expression)
    ) {
      add(node, node.moduleReference.expression.text, node.isTypeOnly);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      add(node, node.argument.literal.text, true);
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] !== undefined &&
      ts.isStringLiteralLike(node.arguments[0])
    ) {
      add(node, node.arguments[0].text, false);
    } else if (ts.isModuleDeclaration(node) && ts.isStringLiteral(node.name)) {
      add(node, node.name.text, true);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  for (const ref of source.typeReferenceDirectives) out.push({ specifier: ref.fileName, typeOnly: true, line: 1 });
  for (const ref of source.referencedFiles) {
    const relative = ref.fileName.startsWith('.') ? ref.fileName : `./${ref.fileName}`;
    out.push({ specifier: relative, typeOnly: true, line: 1 });
  }
  return out;
}

export function isRelative(specifier: string): boolean {
  return specifier.startsWith('./') || specifier.startsWith('../') || specifier === '.' || specifier === '..';
}

/** The package a bare specifier names: `@scope/name` or `name` (`node:fs` stays as it is). */
export function packageName(specifier: string): string {
  if (specifier.startsWith('node:')) return specifier;
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? specifier);
}

/** What a relative specifier in `from` names on disk, as the compiler would map it; null if nothing. */
export function resolveRelative(from: string, specifier: string, kind: 'source' | 'declaration' | 'javascript'): string | null {
  const base = path.resolve(path.dirname(from), specifier);
  const ext = path.extname(base);
  const stem = base.slice(0, base.length - ext.length);
  const candidates: string[] = [];
  const mapped: Record<string, Record<string, string[]>> = {
    source: { '.js': ['.ts', '.tsx'], '.mjs': ['.mts'], '.cjs': ['.cts'] },
    declaration: { '.js': ['.d.ts'], '.mjs': ['.d.mts'], '.cjs': ['.d.cts'], '.ts': ['.d.ts'] },
    javascript: {},
  };
  for (const e of mapped[kind]?.[ext] ?? []) candidates.push(stem + e);
  candidates.push(base);
  const index = { source: 'index.ts', declaration: 'index.d.ts', javascript: 'index.js' }[kind];
  candidates.push(path.join(base, index));
  return candidates.find((c) => existsSync(c) && statSync(c).isFile()) ?? null;
}

export interface GraphEdge {
  from: string;
  to: string | null;
  reference: ModuleReference;
}

/**
 * Every file reachable from `entries` through relative references, and every reference each
 * makes (`to` is the resolved file, or null for a bare specifier or one that names no file).
 */
export function walkGraph(entries: readonly string[], kind: 'source' | 'declaration' | 'javascript', options: { typeOnly?: boolean } = {}): {
  files: Set<string>;
  edges: GraphEdge[];
} {
  const files = new Set<string>();
  const edges: GraphEdge[] = [];
  const queue = entries.map((e) => path.resolve(e));
  while (queue.length > 0) {
    const file = queue.pop() as string;
    if (files.has(file)) continue;
    files.add(file);
    for (const reference of moduleReferences(file)) {
      // A type-only reference is no edge of the runtime graph.
      if (options.typeOnly === false && reference.typeOnly) continue;
      const to = isRelative(reference.specifier) ? resolveRelative(file, reference.specifier, kind) : null;
      edges.push({ from: file, to, reference });
      if (to !== null) queue.push(to);
    }
  }
  return { files, edges };
}

/** Every file under `dir` whose name passes `keep`, recursively, sorted. */
export function filesUnder(dir: string, keep: (name: string) => boolean): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(full, keep));
    else if (keep(entry.name)) out.push(full);
  }
  return out.sort();
}

/** Strongly connected components with more than one file (or a file importing itself): the cycles. */
export function cycles(graph: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  // Iterative Tarjan: the source graph is deep enough that recursion is a needless risk.
  for (const root of graph.keys()) {
    if (index.has(root)) continue;
    const work: { node: string; next: string[] }[] = [];
    const open = (node: string) => {
      index.set(node, counter);
      low.set(node, counter);
      counter++;
      stack.push(node);
      onStack.add(node);
      work.push({ node, next: [...(graph.get(node) ?? [])] });
    };
    open(root);
    while (work.length > 0) {
      const frame = work[work.length - 1] as { node: string; next: string[] };
      const child = frame.next.shift();
      if (child !== undefined) {
        if (!index.has(child)) open(child);
        else if (onStack.has(child)) low.set(frame.node, Math.min(low.get(frame.node) as number, index.get(child) as number));
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low.set(parent.node, Math.min(low.get(parent.node) as number, low.get(frame.node) as number));
      if (low.get(frame.node) === index.get(frame.node)) {
        const component: string[] = [];
        let member: string | undefined;
        do {
          member = stack.pop() as string;
          onStack.delete(member);
          component.push(member);
        } while (member !== frame.node);
        const selfLoop = component.length === 1 && (graph.get(frame.node)?.has(frame.node) ?? false);
        if (component.length > 1 || selfLoop) found.push(component.sort());
      }
    }
  }
  return found.sort((a, b) => (a[0] ?? '').localeCompare(b[0] ?? ''));
}
