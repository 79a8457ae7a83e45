// An independent decrypter and verifier of sessiond's encrypted access
// tokens (--jwt-encrypt-key), with panva/jose as a recipient would use it:
// compactDecrypt with the recipient's P-256 private key, pinned to the one
// key management and content encryption algorithm sessiond uses, then
// jwtVerify of the nested JWT against the server's JWKS URL.
//
//   node decrypt.mjs PRIVATE_KEY_PEM_FILE JWKS_URL ISSUER AUDIENCE < tokens
//
// Writes one JSON line a token: {"ok": true, "jwe": {...}, "header": {...},
// "payload": {...}} or {"ok": false, "stage": "decrypt" or "verify",
// "code": "ERR_..."}. Exit 0 unless the input could not be read.
import { compactDecrypt, createRemoteJWKSet, importPKCS8, jwtVerify } from 'jose';
import { readFileSync } from 'node:fs';

const [keyFile, jwksUrl, issuer, audience] = process.argv.slice(2);
const key = await importPKCS8(readFileSync(keyFile, 'utf8'), 'ECDH-ES+A256KW');
const jwks = createRemoteJWKSet(new URL(jwksUrl));
const tokens = readFileSync(0, 'utf8').split('\n').filter((t) => t.length > 0);
for (const token of tokens) {
  let inner, jwe;
  try {
    const { plaintext, protectedHeader } = await compactDecrypt(token, key, {
      keyManagementAlgorithms: ['ECDH-ES+A256KW'],
      contentEncryptionAlgorithms: ['A256GCM'],
    });
    inner = new TextDecoder().decode(plaintext);
    jwe = protectedHeader;
  } catch (e) {
    console.log(JSON.stringify({ ok: false, stage: 'decrypt', code: e.code || String(e) }));
    continue;
  }
  try {
    const { payload, protectedHeader } = await jwtVerify(inner, jwks, {
      issuer,
      audience,
      algorithms: ['EdDSA', 'ES256'],
      typ: 'at+jwt',
    });
    console.log(JSON.stringify({ ok: true, jwe, header: protectedHeader, payload }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, stage: 'verify', code: e.code || String(e) }));
  }
}
