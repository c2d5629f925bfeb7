// The official .NET SignalR client (Microsoft.AspNetCore.SignalR.Client)
// running one workload of the peer benchmark; bench/peers.lua starts it as
// it starts our client (bench/peers/lua.lua) and the TypeScript client on
// node (bench/peers/node/bench.js) for the same workloads.
//
//   dotnet bench/peers/dotnet/out/PeerBench.dll HUB_URL WORKLOAD [key=value ...]
//
// Workloads, parameters and the RESULT line are those of bench/peers/lua.lua
// (its header says exactly what each one measures). What differs here:
//   send     SendAsync("Count") is called n times WITHOUT awaiting each call:
//            the tasks are collected and awaited together (Task.WhenAll), as a
//            .NET program pipelines sends (awaiting each SendAsync would make
//            it a round trip to the socket per message). Then
//            InvokeAsync<long>("CountDone") must answer n: "sent" = the server
//            has processed all n.
//   idle     batches of `batch` StartAsync calls run concurrently (Task.WhenAll).
//   host_cpu_us is "-": the client's work runs on thread-pool threads, there
//            is no one host thread to measure.
// CPU: utime + stime of the whole process (all threads) from /proc/self/stat,
// as for the other two clients (Process.TotalProcessorTime reads the same
// counters on Linux).
using System.Diagnostics;
using System.Globalization;
using Microsoft.AspNetCore.SignalR.Client;

var inv = CultureInfo.InvariantCulture;
if (args.Length < 2)
{
    Console.Error.WriteLine("usage: dotnet PeerBench.dll HUB_URL WORKLOAD [key=value ...]");
    return 2;
}
var url = args[0];
var workload = args[1];
var p = new Dictionary<string, string>();
foreach (var a in args.Skip(2))
{
    var kv = a.Split('=', 2);
    if (kv.Length != 2) { Console.Error.WriteLine("bad parameter " + a); return 2; }
    p[kv[0]] = kv[1];
}
double Num(string k, double d) =>
    p.TryGetValue(k, out var v) && double.TryParse(v, NumberStyles.Float, inv, out var x) ? x : d;
var clkTck = Num("clk_tck", 100);

double ProcessCpu()
{
    var s = File.ReadAllText("/proc/self/stat");
    var f = s[(s.LastIndexOf(')') + 2)..].Split(' ');
    // f[0] is field 3 (state): utime is field 14, stime field 15
    return (long.Parse(f[11], inv) + long.Parse(f[12], inv)) / clkTck;
}

long RssKib()
{
    foreach (var line in File.ReadLines("/proc/self/status"))
        if (line.StartsWith("VmRSS:"))
            return long.Parse(line[6..].Trim().Split(' ')[0], inv);
    return 0;
}

double Now() => Stopwatch.GetTimestamp() / (double)Stopwatch.Frequency;

string Fmt(object v) => v switch
{
    double d when d == Math.Floor(d) && Math.Abs(d) < 1e15 => ((long)d).ToString(inv),
    double d => d.ToString("F3", inv),
    _ => Convert.ToString(v, inv) ?? "",
};

void Result(params (string, object)[] kvs)
{
    var parts = new List<string> { "RESULT", "client=dotnet", "workload=" + workload };
    foreach (var (k, v) in kvs) parts.Add(k + "=" + Fmt(v));
    Console.Out.WriteLine(string.Join(' ', parts));
    Console.Out.Flush();
}

HubConnection Build() => new HubConnectionBuilder().WithUrl(url).Build();

async Task<HubConnection> Connect()
{
    var c = Build();
    await c.StartAsync();
    return c;
}

async Task Invoke()
{
    var n = (int)Num("n", 20000);
    var warmup = Num("warmup", 1.5);
    await using var conn = await Connect();
    var until = Now() + warmup;
    var i = 0;
    do { i++; await conn.InvokeAsync<long>("Add", i, 1); } while (Now() < until);
    var lat = new double[n];
    var cpu0 = ProcessCpu();
    var t0 = Now();
    for (var k = 1; k <= n; k++)
    {
        var s = Stopwatch.GetTimestamp();
        var r = await conn.InvokeAsync<long>("Add", k, 1);
        lat[k - 1] = Stopwatch.GetElapsedTime(s).TotalSeconds;
        if (r != k + 1) throw new Exception($"Add({k}, 1) returned {r}");
    }
    var t1 = Now();
    var cpu1 = ProcessCpu();
    await conn.StopAsync();
    Array.Sort(lat);
    double Pct(double q) => lat[Math.Max(1, (int)Math.Ceiling(n * q)) - 1] * 1e6;
    Result(("n", (double)n), ("elapsed_s", t1 - t0), ("rate", n / (t1 - t0)), ("p50_us", Pct(0.5)),
        ("p99_us", Pct(0.99)), ("cpu_us", (cpu1 - cpu0) * 1e6 / n), ("host_cpu_us", "-"));
}

async Task<long> SendBatch(HubConnection conn, int n)
{
    var tasks = new Task[n];
    for (var k = 0; k < n; k++) tasks[k] = conn.SendAsync("Count");
    await Task.WhenAll(tasks);
    return await conn.InvokeAsync<long>("CountDone");
}

async Task Send()
{
    var n = (int)Num("n", 200000);
    var warmup = Num("warmup", 1.5);
    await using var conn = await Connect();
    var chunk = Math.Max(1, n / 10);
    var until = Now() + warmup;
    do
    {
        await conn.InvokeAsync<long>("ResetCount");
        var got = await SendBatch(conn, chunk);
        if (got != chunk) throw new Exception($"warm-up: CountDone {got}, expected {chunk}");
    } while (Now() < until);
    await conn.InvokeAsync<long>("ResetCount");
    var cpu0 = ProcessCpu();
    var t0 = Now();
    var done = await SendBatch(conn, n);
    var t1 = Now();
    var cpu1 = ProcessCpu();
    await conn.StopAsync();
    if (done != n) throw new Exception($"CountDone returned {done}, expected {n}");
    Result(("n", (double)n), ("confirmed", (double)done), ("elapsed_s", t1 - t0), ("rate", n / (t1 - t0)),
        ("cpu_us", (cpu1 - cpu0) * 1e6 / n), ("host_cpu_us", "-"));
}

// stream: a server-to-client stream of n ints (Counter(n, 0)) read with
// await foreach; rate = items / time from the call to the last item.
async Task Stream()
{
    var n = (int)Num("n", 200000);
    var warmup = Num("warmup", 1.5);
    await using var conn = await Connect();
    async Task<long> Read(int m)
    {
        long c = 0;
        await foreach (var _ in conn.StreamAsync<int>("Counter", m, 0)) c++;
        return c;
    }
    var until = Now() + warmup;
    do { await Read(Math.Max(1, n / 10)); } while (Now() < until);
    var cpu0 = ProcessCpu();
    var t0 = Now();
    var got = await Read(n);
    var t1 = Now();
    var cpu1 = ProcessCpu();
    await conn.StopAsync();
    if (got != n) throw new Exception($"streamed {got}, expected {n}");
    Result(("n", (double)n), ("elapsed_s", t1 - t0), ("rate", n / (t1 - t0)),
        ("cpu_us", (cpu1 - cpu0) * 1e6 / n), ("host_cpu_us", "-"));
}

// upload: n longs written to a client-to-server stream into Sum; rate =
// items / time until Sum (which has read them all) returns.
async Task Upload()
{
    var n = (int)Num("n", 200000);
    var warmup = Num("warmup", 1.5);
    await using var conn = await Connect();
    async Task<long> Write(int m)
    {
        var ch = System.Threading.Channels.Channel.CreateBounded<long>(1000);
        var sum = conn.InvokeAsync<long>("Sum", ch.Reader);
        for (var i = 1; i <= m; i++) await ch.Writer.WriteAsync(i);
        ch.Writer.Complete();
        return await sum;
    }
    var until = Now() + warmup;
    do { await Write(Math.Max(1, n / 10)); } while (Now() < until);
    var cpu0 = ProcessCpu();
    var t0 = Now();
    var total = await Write(n);
    var t1 = Now();
    var cpu1 = ProcessCpu();
    await conn.StopAsync();
    if (total != (long)n * (n + 1) / 2) throw new Exception($"Sum returned {total}");
    Result(("n", (double)n), ("elapsed_s", t1 - t0), ("rate", n / (t1 - t0)),
        ("cpu_us", (cpu1 - cpu0) * 1e6 / n), ("host_cpu_us", "-"));
}

async Task Receive()
{
    var n = (int)Num("n", 200000);
    var warmup = Num("warmup", 1.5);
    await using var conn = Build();
    long count = 0, target = 0, doneTs = 0;
    var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    conn.On<int>("Tick", _ =>
    {
        if (Interlocked.Increment(ref count) == Interlocked.Read(ref target))
        {
            doneTs = Stopwatch.GetTimestamp();
            tcs.TrySetResult();
        }
    });
    await conn.StartAsync();
    async Task Push(int m)
    {
        tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Interlocked.Exchange(ref count, 0);
        Interlocked.Exchange(ref target, m);
        var r = await conn.InvokeAsync<string>("StartPush", "Tick", m, 0);
        if (r != "started") throw new Exception("StartPush returned " + r);
        await tcs.Task;
    }
    var until = Now() + warmup;
    do { await Push(Math.Max(1, n / 10)); } while (Now() < until);
    var cpu0 = ProcessCpu();
    var t0 = Stopwatch.GetTimestamp();
    await Push(n);
    var cpu1 = ProcessCpu();
    var elapsed = (doneTs - t0) / (double)Stopwatch.Frequency;
    await conn.StopAsync();
    if (Interlocked.Read(ref count) != n) throw new Exception($"received {count}, expected {n}");
    Result(("n", (double)n), ("elapsed_s", elapsed), ("rate", n / elapsed),
        ("cpu_us", (cpu1 - cpu0) * 1e6 / n), ("host_cpu_us", "-"));
}

void FullGc()
{
    GC.Collect();
    GC.WaitForPendingFinalizers();
    GC.Collect();
}

async Task Idle()
{
    var k = (int)Num("k", 1000);
    var batch = (int)Num("batch", 50);
    FullGc();
    var before = RssKib();
    var conns = new List<HubConnection>();
    var failed = 0;
    string? firstErr = null;
    long firstRss = -1;
    var firstReached = 0;
    var t0 = Now();
    for (var launched = 0; launched < k;)
    {
        var m = Math.Min(batch, k - launched);
        launched += m;
        var results = await Task.WhenAll(Enumerable.Range(0, m).Select(async _ =>
        {
            var c = Build();
            try { await c.StartAsync(); return c; }
            catch (Exception e)
            {
                Interlocked.Increment(ref failed);
                firstErr ??= e.GetType().Name + ": " + e.Message;
                await c.DisposeAsync();
                return null;
            }
        }));
        conns.AddRange(results.Where(c => c is not null)!);
        if (firstRss < 0 && launched < k)
        {
            // after the first batch: the one-time costs are paid
            FullGc();
            firstRss = RssKib();
            firstReached = conns.Count;
        }
    }
    var openS = Now() - t0;
    var reached = conns.Count;
    await Task.Delay(1000);
    FullGc();
    var after = RssKib();
    for (var i = 0; i < conns.Count; i += batch)
        await Task.WhenAll(conns.Skip(i).Take(batch).Select(async c =>
        {
            try { await c.DisposeAsync(); } catch { }
        }));
    var kv = new List<(string, object)>
    {
        ("k", (double)k), ("reached", (double)reached), ("rss_before_kib", (double)before),
        ("rss_after_kib", (double)after), ("kib_per_conn", reached > 0 ? (after - before) / (double)reached : 0.0),
        ("open_per_s", reached / openS),
    };
    if (firstRss >= 0 && reached > firstReached)
        kv.Add(("kib_per_conn_marginal", (after - firstRss) / (double)(reached - firstReached)));
    if (failed > 0) kv.Add(("failed", (double)failed));
    Result(kv.ToArray());
    if (firstErr is not null) Console.Error.WriteLine("first connect error: " + firstErr);
}

try
{
    switch (workload)
    {
        case "invoke": await Invoke(); break;
        case "send": await Send(); break;
        case "receive": await Receive(); break;
        case "stream": await Stream(); break;
        case "upload": await Upload(); break;
        case "idle": await Idle(); break;
        default: Console.Error.WriteLine("unknown workload " + workload); return 2;
    }
}
catch (Exception e)
{
    var msg = System.Text.RegularExpressions.Regex.Replace(e.GetType().Name + ": " + e.Message, @"\s+", "_");
    Console.Out.WriteLine($"RESULT client=dotnet workload={workload} error={msg[..Math.Min(200, msg.Length)]}");
    Console.Error.WriteLine(e);
    return 1;
}
return 0;
