// A real OpenID Provider (oidc-provider) for jwt-revoker's end-to-end tests, plus a small
// control API that drives it the way a browser and a relying party would.
//
// Environment: OP_PORT (the provider), CONTROL_PORT (the control API), BACKCHANNEL_URI
// (where its back-channel logout tokens go; with BRIDGE_PUSH_URI they go to the bridge
// instead), BRIDGE_PUSH_URI and BRIDGE_AUDIENCE (the bridge: each back-channel logout
// becomes a CAEP session-revoked SET pushed there, signed with the bridge's own key, whose
// JWKS is served at CONTROL/ssf/jwks), BRIDGE_SECRET (the push authorization header),
// KEY_ID (the kid of the provider's freshly generated RS256 signing key).
//
// Control API (JSON over HTTP on CONTROL_PORT):
//   POST /login   {"sub"}            → authorization code flow → {access_token, refresh_token, cookies, sid}
//   POST /logout  {"cookies"}        → RP-initiated logout (end_session + confirm form)
//   POST /refresh {"refresh_token"}  → refresh grant → {access_token}
//   GET  /ready                      → 204 once the provider listens
import Provider from 'oidc-provider';
import crypto from 'node:crypto';
import http from 'node:http';

const OP_PORT = Number(process.env.OP_PORT);
const CONTROL_PORT = Number(process.env.CONTROL_PORT);
const ISSUER = `http://127.0.0.1:${OP_PORT}`;
const CONTROL = `http://127.0.0.1:${CONTROL_PORT}`;
const RESOURCE = 'https://api.test';
const CALLBACK = `${CONTROL}/callback`;
const CLIENT_SECRET = 'app-secret-0123456789abcdef';
const BRIDGE = process.env.BRIDGE_PUSH_URI;

function rsaJwk(kid) {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { jwk: { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' }, privateKey };
}

const signing = rsaJwk(process.env.KEY_ID || 'op-key-1');
const bridgeKey = rsaJwk('bridge-1');

const provider = new Provider(ISSUER, {
  clients: [{
    client_id: 'app',
    client_secret: CLIENT_SECRET,
    redirect_uris: [CALLBACK],
    post_logout_redirect_uris: [CALLBACK],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    backchannel_logout_uri: BRIDGE ? `${CONTROL}/bridge` : process.env.BACKCHANNEL_URI,
    backchannel_logout_session_required: true,
  }],
  jwks: { keys: [signing.jwk] },
  cookies: { keys: ['cookie-key-0123456789abcdef'] },
  pkce: { required: () => false },
  scopes: ['openid', 'offline_access', 'api'],
  features: {
    devInteractions: { enabled: false },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'api',
        audience: RESOURCE,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 600,
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: async (ctx, token) => (token.sid ? { sid: token.sid } : undefined),
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  issueRefreshToken: async (ctx, client, code) => client.grantTypeAllowed('refresh_token')
    && code.scopes.has('offline_access'),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  // Its SSRF guard refuses loopback targets (the back-channel POST included): send with the
  // global fetch, without its dispatcher.
  fetch: (url, options) => {
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
});

// Interactions end at once: the user named by login_hint logs in and consents to everything.
provider.use(async (ctx, next) => {
  if (ctx.path.startsWith('/interaction/')) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const accountId = details.session?.accountId ?? details.params.login_hint;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId, clientId: details.params.client_id });
    grant.addOIDCScope('openid offline_access api');
    grant.addResourceScope(RESOURCE, 'api');
    const grantId = await grant.save();
    ctx.respond = false;
    await provider.interactionFinished(ctx.req, ctx.res, {
      login: { accountId },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
    return;
  }
  await next();
});

// A browser: a cookie jar and manual redirects.
class Browser {
  constructor(cookies = {}) { this.cookies = cookies; }

  header() {
    return Object.entries(this.cookies).map(([k, v]) => `${k}=${v}`).join('; ');
  }

  keep(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const at = pair.indexOf('=');
      const name = pair.slice(0, at);
      const value = pair.slice(at + 1);
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(line)) delete this.cookies[name];
      else this.cookies[name] = value;
    }
  }

  async go(url, init = {}) {
    const response = await fetch(url, {
      ...init,
      redirect: 'manual',
      headers: { ...(init.headers || {}), cookie: this.header() },
    });
    this.keep(response);
    return response;
  }
}

const basic = `Basic ${Buffer.from(`app:${CLIENT_SECRET}`).toString('base64')}`;

async function token(params) {
  const response = await fetch(`${ISSUER}/token`, {
    method: 'POST',
    headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(params).toString(),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(`token endpoint: ${JSON.stringify(body)}`);
  return body;
}

async function login({ sub }) {
  const browser = new Browser();
  const query = new URLSearchParams({
    client_id: 'app', response_type: 'code', scope: 'openid offline_access api',
    redirect_uri: CALLBACK, prompt: 'consent', login_hint: sub, resource: RESOURCE,
    state: 'state-1', nonce: 'nonce-1',
  });
  let url = `${ISSUER}/auth?${query}`;
  for (let hop = 0; hop < 10; hop += 1) {
    const response = await browser.go(url);
    const location = response.headers.get('location');
    if (!location) throw new Error(`no redirect from ${url}: ${response.status} ${await response.text()}`);
    url = new URL(location, url).toString();
    if (url.startsWith(CALLBACK)) break;
  }
  const code = new URL(url).searchParams.get('code');
  if (!code) throw new Error(`no code: ${url}`);
  const tokens = await token({ grant_type: 'authorization_code', code, redirect_uri: CALLBACK });
  const claims = JSON.parse(Buffer.from(tokens.access_token.split('.')[1], 'base64url'));
  return { access_token: tokens.access_token, refresh_token: tokens.refresh_token, cookies: browser.cookies, sid: claims.sid };
}

async function logout({ cookies }) {
  const browser = new Browser(cookies);
  const page = await browser.go(`${ISSUER}/session/end?client_id=app`);
  const html = await page.text();
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(html)?.[1];
  const action = /action="([^"]+)"/.exec(html)?.[1];
  if (!xsrf || !action) throw new Error(`no logout form: ${page.status} ${html}`);
  const confirm = await browser.go(new URL(action, ISSUER).toString(), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ xsrf, logout: 'yes' }).toString(),
  });
  if (confirm.status >= 400) throw new Error(`logout confirm: ${confirm.status} ${await confirm.text()}`);
  return { status: confirm.status };
}

async function refresh({ refresh_token }) {
  const tokens = await token({ grant_type: 'refresh_token', refresh_token });
  return { access_token: tokens.access_token };
}

// The bridge: a back-channel logout token in, a CAEP session-revoked SET out.
function b64(json) { return Buffer.from(JSON.stringify(json)).toString('base64url'); }

async function bridge(form) {
  const logoutToken = new URLSearchParams(form).get('logout_token');
  const claims = JSON.parse(Buffer.from(logoutToken.split('.')[1], 'base64url'));
  const set = {
    iss: CONTROL,
    aud: process.env.BRIDGE_AUDIENCE,
    iat: Math.floor(Date.now() / 1000),
    jti: crypto.randomUUID(),
    txn: claims.jti,
    sub_id: {
      format: 'complex',
      session: { format: 'opaque', id: claims.sid },
      user: { format: 'iss_sub', iss: ISSUER, sub: claims.sub },
    },
    events: {
      'https://schemas.openid.net/secevent/caep/event-type/session-revoked': {
        event_timestamp: claims.iat,
        initiating_entity: 'user',
        reason_admin: { en: 'RP-initiated logout at the OpenID Provider' },
      },
    },
  };
  const input = `${b64({ alg: 'RS256', typ: 'secevent+jwt', kid: 'bridge-1' })}.${b64(set)}`;
  const signature = crypto.sign('sha256', Buffer.from(input), bridgeKey.privateKey).toString('base64url');
  // Redelivered until acknowledged (202), as a transmitter does, for at most 30 s.
  for (let attempt = 0; attempt < 60; attempt += 1) {
    try {
      const response = await fetch(BRIDGE, {
        method: 'POST',
        headers: {
          'content-type': 'application/secevent+jwt',
          accept: 'application/json',
          authorization: `Bearer ${process.env.BRIDGE_SECRET}`,
        },
        body: `${input}.${signature}`,
      });
      if (response.status === 202) return;
      console.error(`bridge push: ${response.status} ${await response.text()}; retrying`);
    } catch (error) {
      console.error(`bridge push: ${error}; retrying`);
    }
    await new Promise((resolve) => { setTimeout(resolve, 500); });
  }
  console.error('bridge push: gave up');
}

const { privateKey, ...rest } = bridgeKey;
const publicBridgeJwk = (({ kty, n, e }) => ({ kty, n, e, kid: 'bridge-1', alg: 'RS256', use: 'sig' }))(rest.jwk);

const routes = {
  'POST /login': login,
  'POST /logout': logout,
  'POST /refresh': refresh,
};

http.createServer(async (req, res) => {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = Buffer.concat(chunks).toString();
  const reply = (status, json) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(json === undefined ? '' : JSON.stringify(json));
  };
  try {
    if (req.method === 'GET' && req.url === '/ready') return reply(204);
    if (req.method === 'GET' && req.url === '/ssf/jwks') return reply(200, { keys: [publicBridgeJwk] });
    if (req.method === 'GET' && req.url === '/.well-known/ssf-configuration') {
      return reply(200, { issuer: CONTROL, jwks_uri: `${CONTROL}/ssf/jwks`, spec_version: '1_0', delivery_methods_supported: ['urn:ietf:rfc:8935'] });
    }
    if (req.method === 'POST' && req.url === '/bridge') {
      // Answer the provider at once; the push goes on (and is retried) in the background.
      bridge(body).catch((error) => console.error(`bridge: ${error}`));
      return reply(204);
    }
    const handler = routes[`${req.method} ${req.url}`];
    if (!handler) return reply(404, { error: 'not found' });
    return reply(200, await handler(JSON.parse(body || '{}')));
  } catch (error) {
    console.error(error);
    return reply(500, { error: String(error) });
  }
}).listen(CONTROL_PORT, '127.0.0.1', () => {
  provider.listen(OP_PORT, '127.0.0.1');
  console.log(`oidc-provider ${ISSUER}, control ${CONTROL}`);
});
