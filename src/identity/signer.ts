import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { childEnv, findBinary } from '../system/process';
import { SIGNATURE_NAMESPACE, SignedStatement, Statement, statementText } from './statement';

/**
 * Signing happens in ssh-keygen, never in this process: the private key (or the ssh-agent holding it)
 * stays with OpenSSH, and the project only ever sees the public half and the signature.
 */
export function sshKeygen(): string {
  return findBinary('ssh-keygen', { hint: 'install openssh-client (apt-get install openssh-client)' });
}

function run(args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    // ssh-agent is reached through SSH_AUTH_SOCK; nothing else of the caller's environment goes along.
    const child = execFile(sshKeygen(), args, { timeout: 30_000, maxBuffer: 1 << 20, env: childEnv({}, ['HOME', 'SSH_AUTH_SOCK']) }, (err, stdout, stderr) => {
      if (err) reject(new Error(`ssh-keygen ${args[0]} ${args[1] ?? ''}: ${(stderr || err.message).trim()}`));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

/**
 * Signs a statement with `ssh-keygen -Y sign -n runbook-decision -f KEY`. KEY is a private key file,
 * or the public key (.pub) of a key held by ssh-agent (SSH_AUTH_SOCK).
 */
export async function signStatement(statement: Statement, keyFile: string): Promise<SignedStatement> {
  if (!existsSync(keyFile)) throw new Error(`--key: ${keyFile} does not exist; pass your SSH key (or its .pub with the key in ssh-agent)`);
  const text = statementText(statement);
  const signature = await run(['-Y', 'sign', '-n', SIGNATURE_NAMESPACE, '-f', keyFile, '-q'], text);
  return { statement: text, signature: signature.trim() };
}

/** A throwaway Ed25519 key pair without a passphrase (the sandbox's operators). Returns the public key line. */
export async function generateKey(file: string, comment: string): Promise<string> {
  if (!existsSync(file)) await run(['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file]);
  return readFileSync(`${file}.pub`, 'utf8').trim();
}
