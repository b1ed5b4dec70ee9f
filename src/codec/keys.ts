/** AES-256 keys are 32 bytes; in a secret file or variable they are written as hex or base64 text. */
export const KEY_BYTES = 32;

export const KEY_FORMAT_HINT = `${KEY_BYTES} bytes written as 64 hex digits or 44 base64 characters (make one with: openssl rand -base64 ${KEY_BYTES})`;

/**
 * The key bytes of a secret's text, or a reason it is not a key. The reason never repeats the text:
 * a near-miss key is still key material.
 */
export function decodeKeyText(text: string): { key: Buffer } | { problem: string } {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return { key: Buffer.from(t, 'hex') };
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) {
    const key = Buffer.from(t, 'base64');
    if (key.length === KEY_BYTES) return { key };
    return { problem: `expected ${KEY_FORMAT_HINT}; found base64 text of ${key.length} bytes` };
  }
  return { problem: `expected ${KEY_FORMAT_HINT}; found ${t.length} characters that are neither hex nor base64` };
}
