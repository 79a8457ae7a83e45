// An independent verifier of sessiond's access tokens, with panva/jose as
// an application would use it: the key set fetched from the server's JWKS
// URL (createRemoteJWKSet), jwtVerify with issuer, audience and the two
// algorithms sessiond signs with.
//
//   node verify.mjs JWKS_URL ISSUER AUDIENCE < tokens (one a line)
//
// Writes one JSON line a token: {"ok": true, "payload": {...}, "header":
// {...}} or {"ok": false, "code": "ERR_..."}. Exit 0 unless the input
// could not be read.
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { readFileSync } from 'node:fs';

const [jwksUrl, issuer, audience] = process.argv.slice(2);
const jwks = createRemoteJWKSet(new URL(jwksUrl));
const tokens = readFileSync(0, 'utf8').split('\n').filter((t) => t.length > 0);
for (const token of tokens) {
  try {
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      issuer,
      audience,
      algorithms: ['EdDSA', 'ES256'],
      typ: 'at+jwt',
    });
    console.log(JSON.stringify({ ok: true, payload, header: protectedHeader }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, code: e.code || String(e) }));
  }
}
