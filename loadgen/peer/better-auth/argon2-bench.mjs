// Median time of one @node-rs/argon2 verify at the peer's parameters
// (argon2id, m=19456 KiB, t=2, p=1). Usage: node argon2-bench.mjs [N]
import { hash, verify } from "@node-rs/argon2";

const N = Number(process.argv[2] ?? 30);
const opts = { algorithm: 2 /* Argon2id */, memoryCost: 19456, timeCost: 2, parallelism: 1 };
const pw = "correct horse battery staple";
const h = await hash(pw, opts);
for (let i = 0; i < 3; i++) await verify(h, pw); // warm-up
const ms = [];
for (let i = 0; i < N; i++) {
  const t0 = process.hrtime.bigint();
  const ok = await verify(h, pw);
  ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  if (!ok) throw new Error("verify failed");
}
ms.sort((a, b) => a - b);
const q = (p) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))];
console.log(`${h.slice(0, 31)}…`);
console.log(`verify x${N}: median ${q(0.5).toFixed(2)} ms, min ${ms[0].toFixed(2)} ms, p90 ${q(0.9).toFixed(2)} ms, max ${ms.at(-1).toFixed(2)} ms`);
