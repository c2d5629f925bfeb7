// The official TypeScript SignalR client (@microsoft/signalr) on node 20,
// running one workload of the peer benchmark; bench/peers.lua starts it as it
// starts our client (bench/peers/lua.lua) and the .NET client
// (bench/peers/dotnet) for the same workloads.
//
//   node --expose-gc bench/peers/node/bench.js HUB_URL WORKLOAD [key=value ...]
//
// Workloads, parameters and the RESULT line are those of bench/peers/lua.lua
// (its header says exactly what each one measures). What differs here:
//   send     connection.send("Count") is called n times WITHOUT awaiting each
//            returned promise: they are collected and awaited together
//            (Promise.all), as a JavaScript program pipelines sends (the
//            client's send queue then batches what is queued into one
//            WebSocket message). Then invoke("CountDone") must answer n:
//            "sent" = the server has processed all n.
//   idle     batches of `batch` start() calls run concurrently (Promise.all);
//            the GC is run with global.gc (hence --expose-gc).
//   host_cpu_us is the CPU of node's main thread (the JavaScript thread, where
//            handlers run and, in node, where the sockets are serviced too),
//            from /proc/thread-self/schedstat read on that thread.
// CPU: utime + stime of the whole process (all threads) from /proc/self/stat,
// as for the other two clients.
"use strict";
const fs = require("fs");
const signalR = require("@microsoft/signalr");

const [url, workload, ...rest] = process.argv.slice(2);
if (!url || !workload) {
  console.error("usage: node bench.js HUB_URL WORKLOAD [key=value ...]");
  process.exit(2);
}
const P = {};
for (const a of rest) {
  const i = a.indexOf("=");
  if (i < 0) { console.error("bad parameter " + a); process.exit(2); }
  P[a.slice(0, i)] = a.slice(i + 1);
}
const num = (k, d) => (P[k] !== undefined && !isNaN(Number(P[k])) ? Number(P[k]) : d);
const CLK_TCK = num("clk_tck", 100);

function processCpu() {
  const s = fs.readFileSync("/proc/self/stat", "latin1");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  // f[0] is field 3 (state): utime is field 14, stime field 15
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

function threadCpu() {
  return Number(fs.readFileSync("/proc/thread-self/schedstat", "latin1").split(" ")[0]) / 1e9;
}

function rssKib() {
  const m = fs.readFileSync("/proc/self/status", "latin1").match(/^VmRSS:\s+(\d+)/m);
  return m ? Number(m[1]) : 0;
}

const now = () => Number(process.hrtime.bigint()) / 1e9;

function fmt(v) {
  if (typeof v === "number") {
    if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
    return v.toFixed(3);
  }
  return String(v);
}

function result(kvs) {
  const parts = ["RESULT", "client=node", "workload=" + workload];
  for (const [k, v] of kvs) parts.push(k + "=" + fmt(v));
  process.stdout.write(parts.join(" ") + "\n");
}

const build = () =>
  new signalR.HubConnectionBuilder()
    .withUrl(url)
    .configureLogging(signalR.LogLevel.None)
    .build();

async function connect() {
  const c = build();
  await c.start();
  return c;
}

const mark = () => ({ wall: now(), cpu: processCpu(), host: threadCpu() });
const perOp = (a, b, n) => [((b.cpu - a.cpu) * 1e6) / n, ((b.host - a.host) * 1e6) / n];

const W = {};

W.invoke = async () => {
  const n = Math.floor(num("n", 20000));
  const warmup = num("warmup", 1.5);
  const conn = await connect();
  const until = now() + warmup;
  let i = 0;
  do { i++; await conn.invoke("Add", i, 1); } while (now() < until);
  const lat = new Float64Array(n);
  const a = mark();
  for (let k = 1; k <= n; k++) {
    const s = process.hrtime.bigint();
    const r = await conn.invoke("Add", k, 1);
    lat[k - 1] = Number(process.hrtime.bigint() - s) / 1e9;
    if (r !== k + 1) throw new Error(`Add(${k}, 1) returned ${r}`);
  }
  const b = mark();
  await conn.stop();
  lat.sort();
  const pct = (q) => lat[Math.max(1, Math.ceil(n * q)) - 1] * 1e6;
  const [cpu, host] = perOp(a, b, n);
  result([["n", n], ["elapsed_s", b.wall - a.wall], ["rate", n / (b.wall - a.wall)],
    ["p50_us", pct(0.5)], ["p99_us", pct(0.99)], ["cpu_us", cpu], ["host_cpu_us", host]]);
};

async function sendBatch(conn, n) {
  const ps = new Array(n);
  for (let k = 0; k < n; k++) ps[k] = conn.send("Count");
  await Promise.all(ps);
  return conn.invoke("CountDone");
}

W.send = async () => {
  const n = Math.floor(num("n", 200000));
  const warmup = num("warmup", 1.5);
  const conn = await connect();
  const chunk = Math.max(1, Math.floor(n / 10));
  const until = now() + warmup;
  do {
    await conn.invoke("ResetCount");
    const got = await sendBatch(conn, chunk);
    if (got !== chunk) throw new Error(`warm-up: CountDone ${got}, expected ${chunk}`);
  } while (now() < until);
  await conn.invoke("ResetCount");
  const a = mark();
  const got = await sendBatch(conn, n);
  const b = mark();
  await conn.stop();
  if (got !== n) throw new Error(`CountDone returned ${got}, expected ${n}`);
  const [cpu, host] = perOp(a, b, n);
  result([["n", n], ["confirmed", got], ["elapsed_s", b.wall - a.wall],
    ["rate", n / (b.wall - a.wall)], ["cpu_us", cpu], ["host_cpu_us", host]]);
};

W.receive = async () => {
  const n = Math.floor(num("n", 200000));
  const warmup = num("warmup", 1.5);
  const conn = build();
  let count = 0, target = 0, doneAt = 0, resolve = null;
  conn.on("Tick", () => {
    count++;
    if (count === target) { doneAt = now(); resolve(); }
  });
  await conn.start();
  const push = async (m) => {
    const seen = new Promise((r) => { resolve = r; });
    count = 0; target = m;
    const r = await conn.invoke("StartPush", "Tick", m, 0);
    if (r !== "started") throw new Error("StartPush returned " + r);
    await seen;
  };
  const until = now() + warmup;
  do { await push(Math.max(1, Math.floor(n / 10))); } while (now() < until);
  const a = mark();
  await push(n);
  const b = mark();
  b.wall = doneAt;
  await conn.stop();
  if (count !== n) throw new Error(`received ${count}, expected ${n}`);
  const [cpu, host] = perOp(a, b, n);
  result([["n", n], ["elapsed_s", b.wall - a.wall], ["rate", n / (b.wall - a.wall)],
    ["cpu_us", cpu], ["host_cpu_us", host]]);
};

function fullGc() {
  if (global.gc) { global.gc(); global.gc(); }
}

// stream: Counter(n, 0) read with subscribe; rate = items / time to complete.
W.stream = async () => {
  const n = Math.floor(num("n", 200000));
  const warmup = num("warmup", 1.5);
  const conn = await connect();
  const read = (m) => new Promise((resolve, reject) => {
    let c = 0;
    conn.stream("Counter", m, 0).subscribe({
      next: () => { c++; },
      error: reject,
      complete: () => resolve(c),
    });
  });
  const until = now() + warmup;
  do { await read(Math.max(1, Math.floor(n / 10))); } while (now() < until);
  const a = mark();
  const got = await read(n);
  const b = mark();
  await conn.stop();
  if (got !== n) throw new Error(`streamed ${got}, expected ${n}`);
  const [cpu, host] = perOp(a, b, n);
  result([["n", n], ["elapsed_s", b.wall - a.wall], ["rate", n / (b.wall - a.wall)],
    ["cpu_us", cpu], ["host_cpu_us", host]]);
};

// upload: n numbers through a Subject into Sum; rate = items / time until
// Sum returns (the hub has read them all).
W.upload = async () => {
  const n = Math.floor(num("n", 200000));
  const warmup = num("warmup", 1.5);
  const conn = await connect();
  const write = async (m) => {
    const subject = new signalR.Subject();
    const sum = conn.invoke("Sum", subject);
    for (let i = 1; i <= m; i++) subject.next(i);
    subject.complete();
    return sum;
  };
  const until = now() + warmup;
  do { await write(Math.max(1, Math.floor(n / 10))); } while (now() < until);
  const a = mark();
  const total = await write(n);
  const b = mark();
  await conn.stop();
  if (total !== (n * (n + 1)) / 2) throw new Error(`Sum returned ${total}`);
  const [cpu, host] = perOp(a, b, n);
  result([["n", n], ["elapsed_s", b.wall - a.wall], ["rate", n / (b.wall - a.wall)],
    ["cpu_us", cpu], ["host_cpu_us", host]]);
};

W.idle = async () => {
  const k = Math.floor(num("k", 1000));
  const batch = Math.floor(num("batch", 50));
  fullGc();
  const before = rssKib();
  const conns = [];
  let failed = 0, firstErr = null, firstRss = -1, firstReached = 0;
  const t0 = now();
  for (let launched = 0; launched < k;) {
    const m = Math.min(batch, k - launched);
    launched += m;
    const got = await Promise.all(Array.from({ length: m }, async () => {
      const c = build();
      try { await c.start(); return c; } catch (e) {
        failed++;
        firstErr = firstErr || String(e && e.message || e);
        return null;
      }
    }));
    for (const c of got) if (c) conns.push(c);
    if (firstRss < 0 && launched < k) {
      // after the first batch: the one-time costs are paid
      fullGc();
      firstRss = rssKib();
      firstReached = conns.length;
    }
  }
  const openS = now() - t0;
  const reached = conns.length;
  await new Promise((r) => setTimeout(r, 1000));
  fullGc();
  const after = rssKib();
  for (let i = 0; i < conns.length; i += batch) {
    await Promise.all(conns.slice(i, i + batch).map((c) => c.stop().catch(() => {})));
  }
  const kv = [["k", k], ["reached", reached], ["rss_before_kib", before], ["rss_after_kib", after],
    ["kib_per_conn", reached > 0 ? (after - before) / reached : 0], ["open_per_s", reached / openS]];
  if (firstRss >= 0 && reached > firstReached) {
    kv.push(["kib_per_conn_marginal", (after - firstRss) / (reached - firstReached)]);
  }
  if (failed > 0) kv.push(["failed", failed]);
  result(kv);
  if (firstErr) console.error("first connect error: " + firstErr);
};

const fn = W[workload];
if (!fn) {
  console.error("unknown workload " + workload);
  process.exit(2);
}
fn().then(
  () => process.exit(0),
  (e) => {
    const msg = String(e && e.message || e).replace(/\s+/g, "_").slice(0, 200);
    process.stdout.write(`RESULT client=node workload=${workload} error=${msg}\n`);
    console.error(e);
    process.exit(1);
  });
