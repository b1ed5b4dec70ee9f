import { existsSync, readFileSync, accessSync, constants } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';

/** A secret is never written in the config; it is a reference to an environment variable or a file. */
export type SecretRef = `env:${string}` | `file:${string}`;

export const SECRET_REF = /^(env:[A-Za-z_][A-Za-z0-9_]*|file:\S.*)$/;

export function isSecretRef(value: string): value is SecretRef {
  return SECRET_REF.test(value);
}

/** Text that is certainly key material, wherever it appears in a config file. */
const KEY_MATERIAL = /-----BEGIN [A-Z ]*PRIVATE KEY-----|-----BEGIN CERTIFICATE-----|\bAKIA[0-9A-Z]{16}\b/;

export function looksLikeKeyMaterial(value: string): boolean {
  return KEY_MATERIAL.test(value);
}

/** Path of a file: reference, resolved against the directory of the config file that holds it. */
export function secretFilePath(ref: SecretRef, baseDir: string): string {
  const path = ref.slice('file:'.length);
  return isAbsolute(path) ? path : resolve(baseDir, path);
}

/** Why a reference cannot be resolved on this machine, or undefined when it can. */
export function secretRefProblem(ref: SecretRef, baseDir: string): string | undefined {
  if (ref.startsWith('env:')) {
    const name = ref.slice(4);
    return process.env[name] === undefined ? `environment variable ${name} is not set` : undefined;
  }
  const path = secretFilePath(ref, baseDir);
  if (!existsSync(path)) return `file ${path} does not exist`;
  try {
    accessSync(path, constants.R_OK);
  } catch {
    return `file ${path} is not readable`;
  }
  return undefined;
}

/** Reads a secret's value. Files are read on every call, so a rotated file is picked up. */
export function readSecret(ref: SecretRef, baseDir: string): string {
  if (ref.startsWith('env:')) {
    const name = ref.slice(4);
    const value = process.env[name];
    if (value === undefined) throw new Error(`secret ${ref}: environment variable ${name} is not set`);
    return value;
  }
  const path = secretFilePath(ref, baseDir);
  try {
    return readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new Error(`secret ${ref}: cannot read ${path}: ${(err as Error).message}`);
  }
}
