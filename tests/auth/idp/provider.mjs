// OpenID Connect provider for the auth tests (loopback only), built on oidc-provider.
// Env: PORT, ISSUER, REDIRECT_URIS and POST_LOGOUT_URIS (comma-separated), TOKEN_TTL (seconds),
// JWKS_FILE (a private JWKS; its first key signs; default: a key generated at start),
// HIDDEN_KIDS (comma-separated key ids left out of /jwks: a provider signing with a key it
// does not publish). Every /jwks request is logged as "jwks served" so tests can count them.
// Clients: pyingress/pyingress-secret and team/team-secret (same redirect URIs).
// Users: alice/wonderland (groups admins, grafana-editors), bob/builder (no groups).
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const PORT = Number(process.env.PORT || 9000);
const ISSUER = process.env.ISSUER || `http://127.0.0.1:${PORT}`;
const TTL = Number(process.env.TOKEN_TTL || 300);
const list = (name) => (process.env[name] || '').split(',').filter(Boolean);
const JWKS = process.env.JWKS_FILE ? JSON.parse(readFileSync(process.env.JWKS_FILE, 'utf8')) : undefined;
const HIDDEN_KIDS = list('HIDDEN_KIDS');
const client = (id, secret) => ({
  client_id: id,
  client_secret: secret,
  redirect_uris: list('REDIRECT_URIS'),
  post_logout_redirect_uris: list('POST_LOGOUT_URIS'),
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
});
const USERS = {
  alice: {
    password: 'wonderland',
    claims: {
      sub: 'alice', email: 'alice@home.example', email_verified: true,
      name: 'Alice Example', preferred_username: 'alice', groups: ['admins', 'grafana-editors'],
    },
  },
  bob: {
    password: 'builder',
    claims: {
      sub: 'bob', email: 'bob@elsewhere.example', email_verified: true,
      name: 'Bob Builder', preferred_username: 'bob', groups: [],
    },
  },
};

const provider = new Provider(ISSUER, {
  clients: [client('pyingress', 'pyingress-secret'), client('team', 'team-secret')],
  ...(JWKS ? { jwks: JWKS } : {}),
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  cookies: { keys: ['test-only-cookie-key'] },
  ttl: { AccessToken: TTL, IdToken: TTL, RefreshToken: 3600, Session: 3600, Grant: 3600, Interaction: 600 },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  async findAccount(ctx, id) {
    const u = USERS[id];
    if (!u) return undefined;
    return { accountId: id, async claims() { return { ...u.claims }; } };
  },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid email profile groups offline_access');
    grant.addOIDCClaims(['email', 'email_verified', 'name', 'preferred_username', 'groups']);
    await grant.save();
    return grant;
  },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: { enabled: true },
    revocation: { enabled: true },
  },
});

provider.use(async (ctx, next) => {
  await next();
  if (ctx.path !== '/jwks' || ctx.status !== 200) return;
  console.log('jwks served');
  if (HIDDEN_KIDS.length) ctx.body = { keys: ctx.body.keys.filter((k) => !HIDDEN_KIDS.includes(k.kid)) };
});

// A password-checking login form (the built-in dev login accepts any user and ignores passwords).
provider.use(async (ctx, next) => {
  const m = ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (!m) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (ctx.method === 'GET') {
    ctx.type = 'html';
    ctx.body = `<html><body><form id="login" method="post" action="/interaction/${details.uid}">`
      + '<input id="user" name="login"><input id="password" name="password" type="password">'
      + '<button id="submit" type="submit">Sign in</button></form></body></html>';
    return;
  }
  if (ctx.method === 'POST') {
    const raw = await new Promise((res) => { let b = ''; ctx.req.on('data', (c) => { b += c; }); ctx.req.on('end', () => res(b)); });
    const form = new URLSearchParams(raw);
    const u = USERS[form.get('login')];
    if (!u || u.password !== form.get('password')) { ctx.status = 401; ctx.body = 'bad credentials'; return; }
    await provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: form.get('login') } }, { mergeWithLastSubmission: false });
    return;
  }
  return next();
});

provider.listen(PORT, '127.0.0.1', () => console.log(`oidc-provider listening, issuer ${ISSUER}`));
