// End-to-end check of the better-auth peer: the exact HTTP flow the authledger
// load generator drives, plus a few probes (TOTP replay, missing Origin,
// wrong code). Needs a running `node server.mjs`. No dependencies: plain
// fetch, a tiny cookie jar and an RFC 6238 TOTP implementation.
//
//   node flow-check.mjs            # summary
//   node flow-check.mjs --verbose  # every request and response
//
// Env: PEER_URL (default http://127.0.0.1:${PEER_PORT:-3900}).
import { createHmac, randomBytes } from "node:crypto";
import assert from "node:assert/strict";
import http from "node:http";

const BASE = process.env.PEER_URL ?? `http://127.0.0.1:${process.env.PEER_PORT ?? 3900}`;
const ORIGIN = new URL(BASE).origin;
const VERBOSE = process.argv.includes("--verbose");

// ---------- TOTP (RFC 4226 / 6238, SHA-1, 6 digits, 30 s) ----------
function base32Decode(s) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const clean = s.toUpperCase().replace(/=+$/, "");
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of clean) {
    const idx = alphabet.indexOf(ch);
    if (idx < 0) throw new Error(`bad base32 char ${ch}`);
    value = (value << 5) | idx;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}
function hotp(key, counter, digits = 6) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac("sha1", key).update(msg).digest();
  const off = mac[mac.length - 1] & 0x0f;
  const bin = (mac.readUInt32BE(off) & 0x7fffffff) % 10 ** digits;
  return String(bin).padStart(digits, "0");
}
function totp(key, { period = 30, digits = 6, offset = 0 } = {}) {
  return hotp(key, Math.floor(Date.now() / 1000 / period) + offset, digits);
}

// ---------- minimal cookie jar + logging fetch ----------
class Jar {
  constructor() {
    this.cookies = new Map();
  }
  absorb(res) {
    const set = [];
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(";");
      const eq = pair.indexOf("=");
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const maxAge = attrs.map((a) => a.trim()).find((a) => /^max-age=/i.test(a));
      const expired = value === "" || (maxAge && Number(maxAge.split("=")[1]) <= 0);
      if (expired) this.cookies.delete(name);
      else this.cookies.set(name, value);
      set.push({ name, expired: Boolean(expired), attrs: attrs.map((a) => a.trim()).join("; ") });
    }
    return set;
  }
  header() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }
}

async function call(jar, method, path, body, { origin = true, label = "" } = {}) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (origin) headers.origin = ORIGIN;
  const cookie = jar?.header();
  if (cookie) headers.cookie = cookie;
  const res = await fetch(BASE + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  const setCookies = jar ? jar.absorb(res) : [];
  if (VERBOSE) {
    console.log(`\n### ${label}`);
    console.log(`> ${method} ${path}`);
    for (const [k, v] of Object.entries(headers)) console.log(`> ${k}: ${k === "cookie" ? redactCookie(v) : v}`);
    if (body !== undefined) console.log(`> ${JSON.stringify(body)}`);
    console.log(`< ${res.status}`);
    for (const c of setCookies) console.log(`< set-cookie: ${c.name}=${c.expired ? "(cleared)" : "…"}; ${c.attrs}`);
    console.log(`< ${JSON.stringify(json)}`);
  }
  return { status: res.status, json, setCookies };
}
function redactCookie(v) {
  return v
    .split("; ")
    .map((kv) => `${kv.split("=")[0]}=…`)
    .join("; ");
}
const names = (r) => r.setCookies.map((c) => `${c.name}${c.expired ? "(cleared)" : ""}`).join(",");

// Wait until the current 30 s step has at least `need` seconds left, so a
// code fetched now is still the "current" one for the checks that follow.
async function awaitFreshStep(need = 8) {
  const left = 30 - ((Date.now() / 1000) % 30);
  if (left < need) await new Promise((r) => setTimeout(r, left * 1000 + 200));
}

// ---------- the flow ----------
const results = [];
const ok = (name, cond, detail = "") => {
  results.push({ name, pass: Boolean(cond) });
  console.log(`${cond ? "ok  " : "FAIL"} ${name}${detail ? ` — ${detail}` : ""}`);
};

const email = `peer-${randomBytes(6).toString("hex")}@example.test`;
const password = "correct horse battery staple";
const jar = new Jar();

// 1. sign up (auto sign-in: sets the session cookie)
const signUp = await call(jar, "POST", "/api/auth/sign-up/email", { email, password, name: "peer user" }, { label: "1 sign-up" });
ok("sign-up 200", signUp.status === 200, `set-cookie ${names(signUp)}`);
assert.ok(jar.cookies.has("better-auth.session_token"));

// 2. enable TOTP (password re-check; returns totpURI + backupCodes)
const enable = await call(jar, "POST", "/api/auth/two-factor/enable", { password }, { label: "2 two-factor/enable" });
ok("two-factor/enable 200", enable.status === 200, `keys ${Object.keys(enable.json)}; set-cookie ${names(enable) || "-"}`);
const uri = new URL(enable.json.totpURI);
const secretB32 = uri.searchParams.get("secret");
const key = base32Decode(secretB32);
ok("totpURI parsed", secretB32 && uri.protocol === "otpauth:", `${uri.protocol}//${uri.host}${decodeURIComponent(uri.pathname)} issuer=${uri.searchParams.get("issuer")} digits=${uri.searchParams.get("digits")} period=${uri.searchParams.get("period")} secret=<${secretB32.length} base32 chars → ${key.length} bytes>`);

// 3. verify the first code with the session cookie: finishes enabling
await awaitFreshStep();
const enableCode = totp(key);
const verifyEnable = await call(jar, "POST", "/api/auth/two-factor/verify-totp", { code: enableCode }, { label: "3 two-factor/verify-totp (enable)" });
ok("verify-totp (enable) 200", verifyEnable.status === 200, `user.twoFactorEnabled=${verifyEnable.json?.user?.twoFactorEnabled}; set-cookie ${names(verifyEnable) || "-"}`);

// 4. sign out
const signOut = await call(jar, "POST", "/api/auth/sign-out", {}, { label: "4 sign-out" });
ok("sign-out 200", signOut.status === 200, `${JSON.stringify(signOut.json)}; set-cookie ${names(signOut)}`);
ok("jar empty after sign-out", jar.cookies.size === 0, [...jar.cookies.keys()].join(","));

// 5..6 repeated sign-in cycles
async function signInCycle(code, label) {
  const j = new Jar();
  const si = await call(j, "POST", "/api/auth/sign-in/email", { email, password }, { label: `${label} sign-in/email` });
  const c = code ?? totp(key);
  const vt = await call(j, "POST", "/api/auth/two-factor/verify-totp", { code: c }, { label: `${label} two-factor/verify-totp` });
  return { si, vt, jar: j, code: c };
}

await awaitFreshStep(12);
const cyc = await signInCycle(undefined, "5/6 cycle A");
ok("sign-in answers twoFactorRedirect", cyc.si.status === 200 && cyc.si.json.twoFactorRedirect === true, `${JSON.stringify(cyc.si.json)}; set-cookie ${names(cyc.si)}`);
ok("verify-totp (sign-in) 200 + session cookie", cyc.vt.status === 200 && cyc.jar.cookies.has("better-auth.session_token"), `keys ${Object.keys(cyc.vt.json)}; set-cookie ${names(cyc.vt)}`);

// session is usable
const sess = await call(cyc.jar, "GET", "/api/auth/get-session", undefined, { label: "7 get-session", origin: false });
ok("get-session with new cookie", sess.status === 200 && sess.json?.user?.email === email, `keys ${Object.keys(sess.json ?? {})}`);

// replay probes
const consumedChallengeJar = new Jar();
const si2 = await call(consumedChallengeJar, "POST", "/api/auth/sign-in/email", { email, password }, { label: "replay prep sign-in" });
const tfCookie = consumedChallengeJar.cookies.get("better-auth.two_factor");
const vt2 = await call(consumedChallengeJar, "POST", "/api/auth/two-factor/verify-totp", { code: cyc.code }, { label: "replay: same code, NEW challenge" });
ok(
  "REPLAY same TOTP code on a new sign-in challenge",
  true,
  `status ${vt2.status} ${vt2.status === 200 ? "(ACCEPTED: no replay protection)" : `(rejected: ${JSON.stringify(vt2.json)})`}`,
);
// re-send the now-consumed challenge cookie with the same code
const stale = new Jar();
stale.cookies.set("better-auth.two_factor", tfCookie);
const vt3 = await call(stale, "POST", "/api/auth/two-factor/verify-totp", { code: cyc.code }, { label: "replay: same code, SAME (consumed) challenge" });
ok("same challenge cannot be reused", vt3.status === 401, `status ${vt3.status} ${JSON.stringify(vt3.json)}`);

// concurrency: two challenges, same code, at once
const [pa, pb] = await Promise.all([signInCycle(cyc.code, "par A"), signInCycle(cyc.code, "par B")]);
ok("two parallel sign-ins with the same code", true, `statuses ${pa.vt.status}/${pb.vt.status}`);

// wrong code → 401 INVALID_CODE
const wrongJar = new Jar();
await call(wrongJar, "POST", "/api/auth/sign-in/email", { email, password }, { label: "wrong-code prep sign-in" });
const wrong = String((Number(totp(key)) + 500000) % 1000000).padStart(6, "0");
const vw = await call(wrongJar, "POST", "/api/auth/two-factor/verify-totp", { code: wrong }, { label: "wrong code" });
ok("wrong code 401", vw.status === 401, JSON.stringify(vw.json));
// …and the same challenge still works with the right code
const vr = await call(wrongJar, "POST", "/api/auth/two-factor/verify-totp", { code: totp(key) }, { label: "right code after wrong" });
ok("right code after a wrong one on the same challenge", vr.status === 200, `status ${vr.status}`);

// wrong password
const wp = await call(new Jar(), "POST", "/api/auth/sign-in/email", { email, password: "nope-nope-nope" }, { label: "wrong password" });
ok("wrong password 401", wp.status === 401, JSON.stringify(wp.json));

// Origin probes. Done with node:http, not fetch: Node's fetch (undici) adds
// "Sec-Fetch-Mode: cors" by itself, which makes better-auth demand an Origin
// even on cookie-less requests; reqwest and curl send no Sec-Fetch-* headers.
function rawPost(path, body, headers) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request(BASE + path, { method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(data), ...headers } }, (res) => {
      let text = "";
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode, text, setCookie: res.headers["set-cookie"] ?? [] }));
    });
    req.on("error", reject);
    req.end(data);
  });
}
const r1 = await rawPost("/api/auth/sign-in/email", { email, password }, {});
const tf = r1.setCookie.map((l) => l.split(";")[0]).find((kv) => kv.startsWith("better-auth.two_factor="));
ok("sign-in without Origin and without cookie (reqwest-like) is accepted", r1.status === 200 && tf, `status ${r1.status} ${r1.text}`);
const r2 = await rawPost("/api/auth/two-factor/verify-totp", { code: totp(key) }, { cookie: tf });
ok("verify-totp WITHOUT Origin (cookie sent) is 403", r2.status === 403, `status ${r2.status} ${r2.text}`);
const r3 = await rawPost("/api/auth/sign-in/email", { email, password }, { "sec-fetch-mode": "cors" });
ok("sign-in with Sec-Fetch-Mode but no Origin is 403", r3.status === 403, `status ${r3.status} ${r3.text}`);
const r4 = await rawPost("/api/auth/sign-in/email", { email, password }, { origin: "http://evil.test" });
ok("sign-in with a foreign Origin is 403", r4.status === 403, `status ${r4.status} ${r4.text}`);

const failed = results.filter((r) => !r.pass).length;
console.log(`\n${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
