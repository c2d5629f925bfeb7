using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Security.Claims;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Http.Connections.Features;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Protocol;
using Microsoft.Extensions.Options;

namespace TestHub;

// Parameters and results that carry arbitrary client values are typed
// `object?`: with the JSON protocol they bind as JsonElement (exact raw text,
// so 64-bit integers and floats round-trip byte for byte); with MessagePack
// they bind as the decoded primitives / arrays / maps.
public class TestHub : Hub
{
    // Per-connection record of values sent with Record(); kept after the
    // connection goes away so another connection can inspect it
    // (GetRecordedFor).
    private static readonly ConcurrentDictionary<string, List<(object? Item, string Raw)>> Recorded = new();

    public override Task OnConnectedAsync()
    {
        // ?fail_connect=<msg>: fail the connection right after the handshake.
        // The server then sends a Close message whose error is
        // "Connection closed with an error. HubException: <msg>".
        var fail = Context.GetHttpContext()?.Request.Query["fail_connect"].ToString();
        if (!string.IsNullOrEmpty(fail))
            throw new HubException(fail);
        return base.OnConnectedAsync();
    }

    // ---- echo -------------------------------------------------------------

    public object? Echo(object? x) => x;

    public object?[] EchoTwo(object? a, object? b) => new[] { a, b };

    public object?[] EchoMany(object? a, object? b, object? c) => new[] { a, b, c };

    public long Add(long a, long b) => a + b;

    public string Concat(string a, string b) => a + b;

    public Task Nop() => Task.CompletedTask;

    // ---- errors -----------------------------------------------------------

    public void ThrowHub(string msg) => throw new HubException(msg);

    public void ThrowPlain() => throw new InvalidOperationException("secret detail 42");

    // ---- timing -----------------------------------------------------------

    public async Task<int> Delay(int ms)
    {
        await Task.Delay(ms);
        return ms;
    }

    public async Task<object?> DelayEcho(int ms, object? x)
    {
        await Task.Delay(ms);
        return x;
    }

    // ---- server -> client -------------------------------------------------

    public async Task<string> CallMeBack(string method, object? arg)
    {
        await Clients.Caller.SendAsync(method, arg);
        return "ok";
    }

    public async Task<int> CallMeBackMany(string method, int count)
    {
        for (var i = 1; i <= count; i++)
            await Clients.Caller.SendAsync(method, i);
        return count;
    }

    public async Task<string> CallMeBackTwo(string method, object? a, object? b)
    {
        await Clients.Caller.SendAsync(method, a, b);
        return "ok";
    }

    // Sends method(0, 1, .., count - 1): one call with count arguments.
    public async Task<string> CallMeBackWithArgs(string method, int count)
    {
        var args = new object?[count];
        for (var i = 0; i < count; i++) args[i] = i;
        await Clients.Caller.SendCoreAsync(method, args);
        return "ok";
    }

    // Sends method() with no arguments.
    public async Task<string> CallMeBackNoArgs(string method)
    {
        await Clients.Caller.SendCoreAsync(method, Array.Empty<object?>());
        return "ok";
    }

    // Pushes method(1) .. method(count) to the caller from a background task,
    // delayMs apart, and returns at once: the pushes go on while the caller
    // sends, invokes or loses its transport (with stateful reconnect they are
    // buffered by the server and replayed). Stops when the connection is gone
    // for good. PushesDone(method) tells how many were written.
    public string StartPush(string method, int count, int delayMs)
    {
        var id = Context.ConnectionId;
        var key = id + "/" + method;
        Pushed[key] = 0;
        var conn = TrackingConnections.Get(id);
        if (conn is null) throw new HubException("connection not tracked");
        var aborted = conn.ConnectionAborted;
        _ = Task.Run(async () =>
        {
            try
            {
                for (var i = 1; i <= count && !aborted.IsCancellationRequested; i++)
                {
                    if (delayMs > 0) await Task.Delay(delayMs, aborted);
                    await conn.WriteAsync(new InvocationMessage(method, new object?[] { i }), aborted);
                    Pushed[key] = i;
                }
            }
            catch (OperationCanceledException) { }
        });
        return "started";
    }

    private static readonly ConcurrentDictionary<string, int> Pushed = new();

    public int PushesDone(string method) =>
        Pushed.TryGetValue(Context.ConnectionId + "/" + method, out var n) ? n : 0;

    public async Task<string> Broadcast(string method, object? x)
    {
        await Clients.All.SendAsync(method, x);
        return "ok";
    }

    // ---- recording (for send / fire-and-forget tests) ---------------------

    public void Record(object? x)
    {
        var raw = x is JsonElement je ? je.GetRawText() : ToJson(x);
        if (x is JsonElement el) x = el.Clone();
        var list = Recorded.GetOrAdd(Context.ConnectionId, _ => new List<(object?, string)>());
        lock (list) list.Add((x, raw));
    }

    public int GetRecorded() => GetRecordedFor(Context.ConnectionId);

    public object?[] GetRecordedItems()
    {
        if (!Recorded.TryGetValue(Context.ConnectionId, out var list)) return Array.Empty<object?>();
        lock (list) return list.Select(e => e.Item).ToArray();
    }

    // Raw JSON text of each recorded item (JSON protocol: exactly as sent).
    public string[] GetRecordedRaw()
    {
        if (!Recorded.TryGetValue(Context.ConnectionId, out var list)) return Array.Empty<string>();
        lock (list) return list.Select(e => e.Raw).ToArray();
    }

    // Count recorded by another (possibly closed) connection.
    public int GetRecordedFor(string connectionId)
    {
        if (!Recorded.TryGetValue(connectionId, out var list)) return 0;
        lock (list) return list.Count;
    }

    public void ClearRecorded() => Recorded.TryRemove(Context.ConnectionId, out _);

    // ---- connection info --------------------------------------------------

    public string GetConnectionId() => Context.ConnectionId;

    public string? GetQuery(string key)
    {
        var q = Context.GetHttpContext()?.Request.Query;
        if (q is null || !q.TryGetValue(key, out var v)) return null;
        return v.ToString();
    }

    public string? GetHeader(string name)
    {
        var h = Context.GetHttpContext()?.Request.Headers;
        if (h is null || !h.TryGetValue(name, out var v)) return null;
        return v.ToString();
    }

    public string? GetTransport() =>
        Context.Features.Get<IHttpTransportFeature>()?.TransportType.ToString();

    public string? GetUserName() => Context.User?.Identity?.IsAuthenticated == true
        ? Context.User.Identity.Name
        : null;

    // ---- connection control -----------------------------------------------

    // Server drops the connection (it still tries to send a Close message
    // without error first).
    public void Abort() => Context.Abort();

    // Sends a Close message carrying `msg` as its error, then aborts.
    public Task CloseWithError(string msg) => CloseCore(msg, allowReconnect: false);

    // Same, with allowReconnect = true.
    public Task CloseWithErrorReconnect(string msg) => CloseCore(msg, allowReconnect: true);

    private async Task CloseCore(string msg, bool allowReconnect)
    {
        var conn = TrackingConnections.Get(Context.ConnectionId);
        if (conn is not null)
            await conn.WriteAsync(new CloseMessage(msg, allowReconnect));
        Context.Abort();
    }

    // ---- streaming --------------------------------------------------------

    // Server -> client stream: 1..count, delayMs between items.
    public async IAsyncEnumerable<int> Counter(int count, int delayMs,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        for (var i = 1; i <= count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (delayMs > 0) await Task.Delay(delayMs, cancellationToken);
            yield return i;
        }
    }

    // Client -> server stream: sum of the streamed integers.
    public async Task<long> Sum(IAsyncEnumerable<long> values)
    {
        long total = 0;
        await foreach (var v in values) total += v;
        return total;
    }

    // Outcome and progress of TrackedCounter streams, by the caller's tag.
    private static readonly ConcurrentDictionary<string, string> StreamOutcomes = new();
    private static readonly ConcurrentDictionary<string, long> StreamProgress = new();

    // Counter that records how it ended ("completed" or "canceled": the
    // cancellation token fired) and how many items it has produced, for
    // specs to read with StreamOutcome / StreamProduced.
    public async IAsyncEnumerable<int> TrackedCounter(string tag, int count, int delayMs,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        StreamOutcomes[tag] = "running";
        StreamProgress[tag] = 0;
        try
        {
            for (var i = 1; i <= count; i++)
            {
                if (delayMs > 0)
                {
                    try { await Task.Delay(delayMs, cancellationToken); }
                    catch (OperationCanceledException) { }
                }
                if (cancellationToken.IsCancellationRequested) break;
                yield return i;
                StreamProgress[tag] = i;
            }
        }
        finally
        {
            StreamOutcomes[tag] = cancellationToken.IsCancellationRequested ? "canceled" : "completed";
        }
    }

    public string? StreamOutcome(string tag) => StreamOutcomes.TryGetValue(tag, out var o) ? o : null;

    public long StreamProduced(string tag) => StreamProgress.TryGetValue(tag, out var n) ? n : -1;

    // 1..count, then the stream fails with the hub's error text.
    public async IAsyncEnumerable<int> CounterThenFail(int count, string msg)
    {
        for (var i = 1; i <= count; i++)
        {
            await Task.Yield();
            yield return i;
        }
        throw new HubException(msg);
    }

    public async IAsyncEnumerable<int> EmptyStream()
    {
        await Task.CompletedTask;
        yield break;
    }

    // x, count times (null items included).
    public async IAsyncEnumerable<object?> Repeat(object? x, int count)
    {
        if (x is JsonElement je) x = je.Clone();
        for (var i = 0; i < count; i++)
        {
            await Task.Yield();
            yield return x;
        }
    }

    // Client -> server: every item, in order.
    public async Task<object?[]> Collect(IAsyncEnumerable<object?> items)
    {
        var list = new List<object?>();
        await foreach (var x in items) list.Add(x is JsonElement je ? je.Clone() : x);
        return list.ToArray();
    }

    // Client -> server: how the stream ended, as the hub method saw it.
    public async Task<string> CollectOutcome(IAsyncEnumerable<object?> items)
    {
        var n = 0;
        try
        {
            await foreach (var _ in items) n++;
            return $"completed after {n}";
        }
        catch (Exception ex)
        {
            return $"failed after {n}: {ex.Message}";
        }
    }

    // Two client streams and a plain argument, read at once.
    public async Task<string> JoinTwo(string sep, IAsyncEnumerable<string> a, IAsyncEnumerable<string> b)
    {
        async Task<List<string>> Read(IAsyncEnumerable<string> s)
        {
            var l = new List<string>();
            await foreach (var x in s) l.Add(x);
            return l;
        }
        var ta = Read(a);
        var tb = Read(b);
        await Task.WhenAll(ta, tb);
        return string.Join(sep, ta.Result) + "|" + string.Join(sep, tb.Result);
    }

    // Bidirectional: each item of the client's stream back, doubled.
    public async IAsyncEnumerable<long> Doubler(IAsyncEnumerable<long> items)
    {
        await foreach (var x in items) yield return x * 2;
    }

    // For send: records each streamed item (GetRecordedItems reads them).
    public async Task RecordStream(IAsyncEnumerable<object?> items)
    {
        await foreach (var x in items) Record(x);
    }

    // ---- client results from outside a hub method -------------------------

    private static readonly ConcurrentDictionary<string, string> AskOutcomes = new();

    // Asks the caller for a result through IHubContext (as a background
    // service would), not from inside a hub method; AskOutcome reads how it
    // went: "result:<json>" or "error:<message>".
    public string AskLater(string method, object?[] args)
    {
        var id = Context.ConnectionId;
        var hub = Context.GetHttpContext()!.RequestServices.GetRequiredService<IHubContext<TestHub>>();
        var copy = args.Select(a => a is JsonElement je ? (object?)je.Clone() : a).ToArray();
        AskOutcomes.TryRemove(id, out _);
        _ = Task.Run(async () =>
        {
            string outcome;
            try
            {
                var r = await hub.Clients.Client(id).InvokeCoreAsync<object?>(method, copy, CancellationToken.None);
                outcome = "result:" + ToJson(r);
            }
            catch (Exception ex)
            {
                outcome = "error:" + ex.Message;
            }
            AskOutcomes[id] = outcome;
        });
        return "asked";
    }

    public string? AskOutcome() => AskOutcomes.TryGetValue(Context.ConnectionId, out var o) ? o : null;

    // ---- MessagePack and JSON side by side ---------------------------------

    // .NET values of many types, as a hub would return them: each protocol
    // encodes them its own way (byte[] as base64 text in JSON, DateTime as an
    // ISO 8601 string in JSON and a timestamp in MessagePack, int keys as text
    // in JSON and as integers in MessagePack).
    public object?[] Typed() => new object?[]
    {
        long.MaxValue, long.MinValue, int.MaxValue, (byte)255, (sbyte)-5, (ushort)65535, uint.MaxValue,
        1.5f, 0.1, "text ü", new byte[] { 0, 1, 255 },
        new DateTime(2024, 1, 2, 3, 4, 5, DateTimeKind.Utc).AddTicks(1234567),
        new DateTime(1969, 12, 31, 23, 59, 59, DateTimeKind.Utc),
        new Dictionary<int, string> { { 1, "a" }, { -2, "b" } },
        new object?[] { null, 1, null }, new Dictionary<string, object?>(), Array.Empty<object?>(), true, null,
    };

    // A string of n 'x' (bench/large.lua: memory per large message).
    public string MakeString(int n) => new string('x', n);

    // An unsigned 64-bit value no Lua integer holds.
    public ulong BigUnsigned() => ulong.MaxValue;

    // Sends x to every client of the hub, as plain .NET values (a JSON
    // argument is turned into them), so each client gets it in its own
    // protocol.
    public async Task<string> Relay(string method, object? x)
    {
        await Clients.All.SendAsync(method, FromJson(x));
        return "ok";
    }

    private static object? FromJson(object? x)
    {
        if (x is byte[] or string) return x;
        if (x is System.Collections.IDictionary d)
            return d.Keys.Cast<object>().ToDictionary(
                k => Convert.ToString(k, System.Globalization.CultureInfo.InvariantCulture) ?? "", k => FromJson(d[k]));
        if (x is System.Collections.IEnumerable list) return list.Cast<object?>().Select(FromJson).ToArray();
        if (x is not JsonElement e) return x;
        return e.ValueKind switch
        {
            JsonValueKind.Object => e.EnumerateObject().ToDictionary(p => p.Name, p => FromJson(p.Value)),
            JsonValueKind.Array => e.EnumerateArray().Select(v => FromJson(v)).ToArray(),
            JsonValueKind.String => e.GetString(),
            JsonValueKind.Number => e.TryGetInt64(out var l) ? (object)l : e.GetDouble(),
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => null,
        };
    }

    // JSON text of a bound argument under either protocol: a JsonElement as
    // sent; MessagePack's primitives, object[] and Dictionary<object, object>
    // (whose keys System.Text.Json cannot write) as JSON would carry them.
    public static string ToJson(object? x) => JsonSerializer.Serialize(Plain(x));

    private static object? Plain(object? x) => x switch
    {
        JsonElement je => je,
        byte[] b => Convert.ToBase64String(b),
        string s => s,
        System.Collections.IDictionary d => d.Keys.Cast<object>().ToDictionary(k => Convert.ToString(k, System.Globalization.CultureInfo.InvariantCulture) ?? "", k => Plain(d[k])),
        System.Collections.IEnumerable e => e.Cast<object?>().Select(Plain).ToArray(),
        _ => x,
    };

    // ---- peer benchmark (bench/peers.lua) ---------------------------------

    // Count() adds one to a per-connection counter, CountDone() returns it,
    // ResetCount() returns it and sets it to 0. A connection's messages run
    // in order (one at a time on /testhub), so CountDone() invoked after N
    // sends of Count answers only once the server has processed all N.
    public void Count() => Interlocked.Increment(ref BenchCounter().Value);

    public long CountDone() => Interlocked.Read(ref BenchCounter().Value);

    public long ResetCount() => Interlocked.Exchange(ref BenchCounter().Value, 0);

    private static readonly object BenchCounterKey = new();

    private StrongBox<long> BenchCounter()
    {
        var items = Context.Items;
        if (items.TryGetValue(BenchCounterKey, out var o) && o is StrongBox<long> box) return box;
        box = new StrongBox<long>();
        items[BenchCounterKey] = box;
        return box;
    }
}

// /chathub: the chat sample the README's first snippet talks to.
public class ChatHub : Hub
{
    public Task SendMessage(string user, string message) =>
        Clients.All.SendAsync("ReceiveMessage", user, message);

    public long Add(long a, long b) => a + b;
}

// /authhub: needs the token AuthConstants.ValidToken.
[Authorize]
public class AuthHub : TestHub
{
}

// /quickhub and /quickstatefulhub: short KeepAliveInterval and
// ClientTimeoutInterval (Program.cs), for quick timeout specs on the shared hub.
public class QuickHub : TestHub
{
}

// /clientresulthub: MaximumParallelInvocationsPerClient = 2, so a hub method
// may wait for a client result.
public class ClientResultHub : TestHub
{
    // Invokes `method(arg)` on the caller and returns the client's result.
    public async Task<object?> AskClient(string method, object? arg)
    {
        return await Clients.Caller.InvokeAsync<object?>(method, arg, CancellationToken.None);
    }

    public async Task<object?> AskClientNoArgs(string method)
    {
        return await Clients.Caller.InvokeCoreAsync<object?>(method, Array.Empty<object?>(), CancellationToken.None);
    }
}

// /detailedhub: EnableDetailedErrors (Program.cs), so the server's close
// errors carry its exception's text.
public class DetailedHub : TestHub
{
}

// Keeps HubConnectionContext per connection id so hub methods can write raw
// protocol messages (Close with an error) to their own connection.
public static class TrackingConnections
{
    private static readonly ConcurrentDictionary<string, HubConnectionContext> Map = new();
    public static void Add(HubConnectionContext c) => Map[c.ConnectionId] = c;
    public static void Remove(HubConnectionContext c) => Map.TryRemove(c.ConnectionId, out _);
    public static HubConnectionContext? Get(string id) => Map.TryGetValue(id, out var c) ? c : null;
}

public class TrackingHubLifetimeManager<THub> : DefaultHubLifetimeManager<THub> where THub : Hub
{
    public TrackingHubLifetimeManager(ILogger<DefaultHubLifetimeManager<THub>> logger) : base(logger) { }

    public override Task OnConnectedAsync(HubConnectionContext connection)
    {
        TrackingConnections.Add(connection);
        return base.OnConnectedAsync(connection);
    }

    public override Task OnDisconnectedAsync(HubConnectionContext connection)
    {
        TrackingConnections.Remove(connection);
        return base.OnDisconnectedAsync(connection);
    }
}

public static class AuthConstants
{
    public const string Scheme = "TestToken";
    public const string ValidToken = "valid-token";
}

// Accepts "Authorization: Bearer valid-token" or "?access_token=valid-token";
// the user name is "test-user".
public class TestTokenAuthHandler : AuthenticationHandler<AuthenticationSchemeOptions>
{
    public TestTokenAuthHandler(IOptionsMonitor<AuthenticationSchemeOptions> options,
        ILoggerFactory logger, UrlEncoder encoder) : base(options, logger, encoder) { }

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        string? token = null;
        var auth = Request.Headers.Authorization.ToString();
        if (auth.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            token = auth.Substring("Bearer ".Length).Trim();
        else if (Request.Query.TryGetValue("access_token", out var q))
            token = q.ToString();

        if (token is null)
            return Task.FromResult(AuthenticateResult.NoResult());
        // A token as long as some identity providers issue (5 KB and more):
        // "long-valid-" and at least 5,000 characters, user "long-token-user".
        var isLong = token.StartsWith("long-valid-", StringComparison.Ordinal) && token.Length >= 5000;
        if (token != AuthConstants.ValidToken && !isLong)
            return Task.FromResult(AuthenticateResult.Fail("invalid token"));

        var identity = new ClaimsIdentity(new[] { new Claim(ClaimTypes.Name, isLong ? "long-token-user" : "test-user") }, Scheme.Name);
        return Task.FromResult(AuthenticateResult.Success(
            new AuthenticationTicket(new ClaimsPrincipal(identity), Scheme.Name)));
    }
}

// /cookiehub: what a sticky-session load balancer does. Its negotiate
// answer sets "sticky" (a fresh value unless the request carries one) and
// then "brief" (Max-Age 2 s), "stale" with an expiry in the past, and
// "elsewhere" for another path;
// every later request of a connection (WebSocket upgrade, SSE GET, Long
// Polling polls, POSTs and DELETE) is recorded with the cookies it carried,
// keyed by its connection token (the "id" query parameter).
public class CookieHub : TestHub
{
    // The cookies the connection's own request carried (for WebSockets the
    // upgrade, for SSE the event-stream GET, for Long Polling the first poll).
    public Dictionary<string, string> GetCookies()
    {
        var d = new Dictionary<string, string>();
        var cookies = Context.GetHttpContext()?.Request.Cookies;
        if (cookies is null) return d;
        foreach (var kv in cookies) d[kv.Key] = kv.Value;
        return d;
    }

    // How many Cookie header lines the connection's request carried.
    public int GetCookieHeaderCount() =>
        Context.GetHttpContext()?.Request.Headers.Cookie.Count ?? 0;

    // Every recorded request of this connection: "METHOD sticky=<value>".
    public string[] GetCookieRequests()
    {
        var id = Context.GetHttpContext()?.Request.Query["id"].ToString() ?? "";
        return CookieHubCookies.Requests.TryGetValue(id, out var list)
            ? list.ToArray()
            : Array.Empty<string>();
    }
}

public static class CookieHubCookies
{
    public static readonly ConcurrentDictionary<string, ConcurrentQueue<string>> Requests = new();

    public static IApplicationBuilder UseCookieHubCookies(this IApplicationBuilder app) =>
        app.Use(async (ctx, next) =>
        {
            var path = ctx.Request.Path.Value ?? "";
            if (path.StartsWith("/cookiehub", StringComparison.Ordinal))
            {
                var sticky = ctx.Request.Cookies["sticky"];
                if (path.EndsWith("/negotiate", StringComparison.Ordinal))
                {
                    if (string.IsNullOrEmpty(sticky))
                    {
                        ctx.Response.Cookies.Append("sticky", Guid.NewGuid().ToString("N"),
                            new CookieOptions { Path = "/cookiehub", HttpOnly = true });
                        // Lives two seconds: a connection started later must not send it.
                        ctx.Response.Cookies.Append("brief", "1",
                            new CookieOptions { Path = "/cookiehub", MaxAge = TimeSpan.FromSeconds(2) });
                    }
                    ctx.Response.Cookies.Append("stale", "1",
                        new CookieOptions { Path = "/", Expires = DateTimeOffset.UnixEpoch.AddDays(1) });
                    ctx.Response.Cookies.Append("elsewhere", "1", new CookieOptions { Path = "/otherhub" });
                }
                else
                {
                    var id = ctx.Request.Query["id"].ToString();
                    if (!string.IsNullOrEmpty(id))
                        Requests.GetOrAdd(id, _ => new ConcurrentQueue<string>())
                            .Enqueue($"{ctx.Request.Method} sticky={sticky ?? "-"}");
                }
            }
            await next();
        });
}
