/** What the package-build global setup hands to test files (built-package.global.ts). */
declare module 'vitest' {
  export interface ProvidedContext {
    /** An empty directory, one per run, where the first file that needs it builds the package. */
    packageBuildDir: string;
  }
}

export {};
