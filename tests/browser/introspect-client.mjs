// introspect-client.mjs - RFC 7662 token introspection against sessiond with
// a real OAuth client library (oauth4webapi), the way a resource server or
// API gateway calls an authorization server's introspection endpoint: HTTP
// Basic client authentication (client_secret_basic), which oauth4webapi
// form-urlencodes before base64 as RFC 6749 section 2.3.1 asks. Started by
// tests/e2e/test_api_keys.py.
//
//   node introspect-client.mjs CONFIG.json
//
// CONFIG: {baseUrl, clientId, clientSecret, wrongSecret, token}. Prints one
// JSON object: for each case either {body} (the processed introspection
// response) or {error, status, schemes} (what oauth4webapi threw, with the
// schemes of the WWW-Authenticate challenges it parsed).

import { readFileSync } from 'node:fs';
import * as oauth from 'oauth4webapi';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const as = { issuer: cfg.baseUrl, introspection_endpoint: `${cfg.baseUrl}/introspect` };
const client = { client_id: cfg.clientId };

async function introspect(secret, token) {
  // Plain HTTP to the loopback test server; production runs sessiond with TLS.
  const res = await oauth.introspectionRequest(as, client, oauth.ClientSecretBasic(secret), token,
    { [oauth.allowInsecureRequests]: true });
  try {
    return { body: await oauth.processIntrospectionResponse(as, client, res) };
  } catch (e) {
    const challenges = Array.isArray(e.cause) ? e.cause : [];
    return { error: e.name, status: e.status ?? null, schemes: challenges.map((c) => c.scheme) };
  }
}

const out = {
  valid: await introspect(cfg.clientSecret, cfg.token),
  unknownToken: await introspect(cfg.clientSecret, 'A'.repeat(43)),
  wrongSecret: await introspect(cfg.wrongSecret, cfg.token),
};
console.log(JSON.stringify(out));
