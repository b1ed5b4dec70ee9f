import { ApplicationFailure } from '@temporalio/workflow';

/**
 * Input checks shared by the CLI (refuse before starting) and the workflows (refuse bad input from
 * any client). Each problem names the field; all are reported at once.
 */
export class InputChecker {
  private readonly problems: string[] = [];
  constructor(
    private readonly runbook: string,
    readonly value: Record<string, unknown>,
  ) {}

  static of(runbook: string, input: unknown): InputChecker {
    return new InputChecker(runbook, input !== null && typeof input === 'object' && !Array.isArray(input) ? (input as Record<string, unknown>) : {});
  }

  problem(text: string): void {
    this.problems.push(text);
  }

  matches(field: string, pattern: RegExp, expected: string, optional = false): void {
    const v = this.value[field];
    if (v === undefined && optional) return;
    if (typeof v !== 'string' || !pattern.test(v)) this.problem(`${field}: expected ${expected}, found ${describe(v)}`);
  }

  done(): void {
    if (this.problems.length > 0) {
      throw ApplicationFailure.create({ type: 'InvalidInput', message: `invalid ${this.runbook} input: ${this.problems.join('; ')}`, nonRetryable: true });
    }
  }
}

export function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 60 ? `${text.slice(0, 57)}..." (${text.length} characters)` : text;
}

export const ENVIRONMENT_NAME = /^[a-z][a-z0-9-]{0,30}$/;
export const DATABASE_KEY = /^[a-z_][a-z0-9_]{0,62}$/;
export const BACKUP_ID = /^\d{8}T\d{6}Z-[a-z0-9]{4,16}$/;

/** A sortable id from the workflow clock: 20261125T030000Z-a1b2c3. */
export function timestampId(nowMs: number, suffix: string): string {
  return `${new Date(nowMs).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${suffix}`;
}
