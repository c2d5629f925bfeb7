// ============================================================================
// FAKE SIGNALR SERVER ("lying server") -- NOT the real SignalR server.
//
// This file is a fake SignalR server written by us. The project's rules allow
// a fake server ONLY for faults the real ASP.NET Core SignalR server cannot
// produce (malformed negotiate bodies, old-server / redirect answers, broken
// handshakes, garbage or truncated frames, records split across WebSocket
// messages or frames, oversized records, silent peers, ...). Everything the
// real server can do must be tested against the real hubs in Program.cs /
// TestHub.cs, never against these endpoints. Keep this file separate from
// the real hubs; nothing here uses the SignalR server library.
//
// Endpoints (mode = one of the names below):
//   POST /fake/{mode}/negotiate   negotiate answer (valid v1 for the socket
//                                 modes; special bodies for NegotiateModes)
//   GET  /fake/{mode}             WebSocket; reads the client's handshake
//                                 (text up to 0x1E), then misbehaves per mode
//   GET  /fake/{mode}/log         JSON record of what the client sent
//                                 (most recent WebSocket connection + negotiate)
//   DELETE /fake/{mode}/log       forget that record
// See spec/hub/README.md for the exact bytes each mode sends.
//
// The fake speaks the JSON hub protocol only (text frames).
// ============================================================================
using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Threading.Channels;

namespace TestHub;

public static class FakeServer
{
    private const char RS = '\u001e';

    private const string ValidNegotiate =
        "{\"negotiateVersion\":1,\"connectionId\":\"fake-id\",\"connectionToken\":\"fake-token\","
        + "\"availableTransports\":[{\"transport\":\"WebSockets\",\"transferFormats\":[\"Text\",\"Binary\"]}]}";

    // Modes that only lie in negotiate (their WebSocket endpoint is 404).
    private static readonly HashSet<string> NegotiateModes = new()
    {
        "badnegotiate", "oldserver", "negotiateerror", "redirect", "redirectloop",
        "notransports", "status500", "silentnegotiate", "redirectcrlf", "redirectcreds",
    };

    // Modes that negotiate normally and lie on the WebSocket.
    private static readonly HashSet<string> SocketModes = new()
    {
        "garbage", "badhandshake", "handshakeerror", "truncated", "truncatedmessage",
        "silent", "unknowntype", "badcompletion", "split", "fragmented", "hugeframe",
        "closeafterhandshake", "ping", "longtoken",
    };

    // longtoken: a connection token as long as some identity providers' tokens.
    private static readonly string LongToken = "lt-" + new string('t', 6000) + "-end";

    // How long the "keep the socket open" modes wait for the client to close.
    private static readonly TimeSpan Hold = TimeSpan.FromSeconds(120);
    private static readonly TimeSpan SilentHold = TimeSpan.FromSeconds(60);
    // hugeframe: size of the record (without the 0x1E).
    private const int HugeRecordBytes = 20 * 1024 * 1024;
    // split / fragmented: wait this long after an invocation for more, so two
    // invocations sent back to back are answered in one WebSocket message.
    private static readonly TimeSpan BatchWindow = TimeSpan.FromMilliseconds(50);

    private static readonly ConcurrentDictionary<string, ModeLog> Logs = new();

    internal static readonly JsonSerializerOptions LogJson = new()
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private static bool Known(string mode) => NegotiateModes.Contains(mode) || SocketModes.Contains(mode);

    private static ModeLog LogFor(string mode) => Logs.GetOrAdd(mode, m => new ModeLog(m));

    public static IEndpointRouteBuilder MapFakeServer(this IEndpointRouteBuilder app)
    {
        var stopping = app.ServiceProvider.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping;

        app.MapPost("/fake/{mode}/negotiate", async (HttpContext ctx, string mode) =>
        {
            if (!Known(mode))
                return Results.Text($"unknown fake mode '{mode}'", "text/plain", null, 404);
            LogFor(mode).Negotiated(ctx.Request);
            var req = ctx.Request;
            var origin = $"{req.Scheme}://{req.Host}";
            const string json = "application/json";
            if (mode == "silentnegotiate")
            {
                // Never answers (until the client gives up and closes).
                try { await Task.Delay(SilentHold, ctx.RequestAborted); } catch (OperationCanceledException) { }
                return Results.Text(ValidNegotiate, json);
            }
            return mode switch
            {
                "redirectcrlf" => Results.Text(
                    $"{{\"url\":\"{origin}/testhub\",\"accessToken\":\"bad\\r\\nX-Evil: 1\"}}", json),
                "redirectcreds" => Results.Text(
                    $"{{\"url\":\"{req.Scheme}://user:s3cret@{req.Host}/testhub\"}}", json),
                "badnegotiate" => Results.Text("this is not json", json),
                "oldserver" => Results.Text(
                    "{\"Url\":\"/signalr\",\"ConnectionToken\":\"x\",\"ConnectionId\":\"y\","
                    + "\"KeepAliveTimeout\":20.0,\"DisconnectTimeout\":30.0,\"TryWebSockets\":true,"
                    + "\"ProtocolVersion\":\"1.5\"}", json),
                "negotiateerror" => Results.Text("{\"error\":\"Negotiate refused by policy\"}", json),
                "redirect" => Results.Text(
                    $"{{\"url\":\"{origin}/testhub\",\"accessToken\":\"redirected-token\"}}", json),
                "redirectloop" => Results.Text($"{{\"url\":\"{origin}/fake/redirectloop\"}}", json),
                "notransports" => Results.Text(
                    "{\"negotiateVersion\":1,\"connectionId\":\"fake-id\",\"connectionToken\":\"fake-token\","
                    + "\"availableTransports\":[]}", json),
                "status500" => Results.Text("fake server error (status500)", "text/plain", null, 500),
                // Offers Server-Sent Events too, which the fake does not serve
                // (its GET answers 400): a client then has two failures to report.
                "longtoken" => Results.Text(ValidNegotiate.Replace("fake-token", LongToken).Replace(
                    "]}]}", "]},{\"transport\":\"ServerSentEvents\",\"transferFormats\":[\"Text\"]}]}"), json),
                _ => Results.Text(ValidNegotiate, json),
            };
        });

        app.MapGet("/fake/{mode}/log", (string mode) =>
            Known(mode)
                ? Results.Text(JsonSerializer.Serialize(LogFor(mode).Snapshot(), LogJson), "application/json")
                : Results.Text($"unknown fake mode '{mode}'", "text/plain", null, 404));

        app.MapDelete("/fake/{mode}/log", (string mode) =>
        {
            if (!Known(mode))
                return Results.Text($"unknown fake mode '{mode}'", "text/plain", null, 404);
            Logs.TryRemove(mode, out _);
            return Results.Text("ok", "text/plain");
        });

        // Map (not MapGet): any method, so an HTTP/2 extended CONNECT also lands here.
        app.Map("/fake/{mode}", async (HttpContext ctx, string mode) =>
        {
            if (!SocketModes.Contains(mode))
            {
                ctx.Response.StatusCode = 404;
                await ctx.Response.WriteAsync($"no fake WebSocket mode '{mode}'");
                return;
            }
            if (!ctx.WebSockets.IsWebSocketRequest)
            {
                ctx.Response.StatusCode = 400;
                await ctx.Response.WriteAsync("WebSocket request expected");
                return;
            }
            var log = LogFor(mode).NewConnection(ctx.Request);
            using var ws = await ctx.WebSockets.AcceptWebSocketAsync();
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, stopping);
            var conn = new FakeSocket(ws, log, cts.Token);
            try
            {
                await Run(mode, conn);
            }
            catch (Exception e) when (e is WebSocketException or OperationCanceledException
                                          or IOException or ObjectDisposedException
                                          or InvalidOperationException)
            {
                // The client went away or broke the socket: that is the point.
                log.Note("server: " + e.GetType().Name + ": " + e.Message);
            }
            finally
            {
                log.Ended();
            }
        });

        return app;
    }

    private static async Task Run(string mode, FakeSocket c)
    {
        var handshake = await c.NextRecordAsync();
        if (handshake is null) return; // (ConnLog keeps the first record as the handshake)

        switch (mode)
        {
            case "garbage":
                await c.SendAsync("{}" + RS);
                await c.SendAsync("this is not json" + RS);
                await c.HoldAsync(Hold);
                break;

            case "badhandshake":
                await c.SendAsync("garbage" + RS);
                await c.HoldAsync(Hold);
                break;

            case "handshakeerror":
                await c.SendAsync("{\"error\":\"Handshake was refused\"}" + RS);
                await c.CloseAsync(WebSocketCloseStatus.NormalClosure);
                break;

            case "truncated":
                await c.SendAsync("{\"type\":1,\"tar");
                await c.CloseAsync(WebSocketCloseStatus.NormalClosure);
                break;

            case "truncatedmessage":
                await c.SendAsync("{}" + RS);
                await c.SendAsync("{\"type\":1,\"tar");
                await c.CloseAsync(WebSocketCloseStatus.NormalClosure);
                break;

            case "silent":
                await c.HoldAsync(SilentHold);
                break;

            case "unknowntype":
                await c.SendAsync("{}" + RS);
                await c.SendAsync("{\"type\":99}" + RS);
                await c.HoldAsync(Hold);
                break;

            case "badcompletion":
                await c.SendAsync("{}" + RS);
                while (true)
                {
                    var rec = await c.NextRecordAsync();
                    if (rec is null) return;
                    if (rec.Contains("\"invocationId\"", StringComparison.Ordinal))
                    {
                        await c.SendAsync("{\"type\":3}" + RS);
                        break;
                    }
                }
                await c.HoldAsync(Hold);
                break;

            case "split":
            case "fragmented":
                await c.SendAsync("{}" + RS);
                await Echo(c, fragmented: mode == "fragmented");
                break;

            case "hugeframe":
            {
                await c.SendAsync("{}" + RS);
                const string head = "{\"type\":1,\"target\":\"huge\",\"arguments\":[\"";
                const string tail = "\"]}";
                var bytes = new byte[HugeRecordBytes + 1];
                Encoding.ASCII.GetBytes(head, 0, head.Length, bytes, 0);
                Array.Fill(bytes, (byte)'x', head.Length, HugeRecordBytes - head.Length - tail.Length);
                Encoding.ASCII.GetBytes(tail, 0, tail.Length, bytes, HugeRecordBytes - tail.Length);
                bytes[HugeRecordBytes] = 0x1e;
                await c.SendBytesAsync(bytes); // one WebSocket message, one frame
                c.Log.Note($"server: sent huge record ({HugeRecordBytes} bytes + 0x1E)");
                await c.HoldAsync(Hold);
                break;
            }

            case "closeafterhandshake":
                await c.SendAsync("{}" + RS);
                await c.CloseAsync(WebSocketCloseStatus.InternalServerError);
                break;

            case "longtoken":
                // Answers the handshake, then holds (the log shows the URL).
                await c.SendAsync("{}" + RS);
                await c.HoldAsync(Hold);
                break;

            case "ping":
            {
                await c.SendAsync("{}" + RS);
                using var stop = CancellationTokenSource.CreateLinkedTokenSource(c.Token);
                var pinger = Task.Run(async () =>
                {
                    try
                    {
                        while (!stop.IsCancellationRequested && c.IsOpen)
                        {
                            await Task.Delay(100, stop.Token);
                            await c.SendAsync("{\"type\":6}" + RS);
                        }
                    }
                    catch (Exception) { /* socket closed or stopping */ }
                });
                try { await c.HoldAsync(Hold); }
                finally
                {
                    stop.Cancel();
                    await pinger;
                }
                break;
            }
        }
    }

    // split / fragmented: answer each Invocation with a Completion whose
    // result is the invocation's first argument (raw JSON text).
    private static async Task Echo(FakeSocket c, bool fragmented)
    {
        var pending = Channel.CreateUnbounded<string>();
        var reader = Task.Run(async () =>
        {
            try
            {
                string? rec;
                while ((rec = await c.NextRecordAsync()) is not null)
                {
                    var completion = CompletionFor(rec);
                    if (completion is not null) pending.Writer.TryWrite(completion);
                }
            }
            finally
            {
                pending.Writer.TryComplete();
            }
        });
        var writer = Task.Run(async () =>
        {
            while (await pending.Reader.WaitToReadAsync(c.Token))
            {
                await Task.Delay(BatchWindow, c.Token);
                var batch = new StringBuilder();
                var count = 0;
                while (pending.Reader.TryRead(out var one)) { batch.Append(one); count++; }
                var bytes = Encoding.UTF8.GetBytes(batch.ToString());
                // Cut points 1 and 6 always fall inside the ASCII prefix
                // {"type":3,... so every piece is valid UTF-8 on its own.
                var parts = new[] { bytes[..1], bytes[1..6], bytes[6..] };
                if (fragmented)
                {
                    // One WebSocket message (all completions of the batch) in 3 frames.
                    await c.SendFramesAsync(parts);
                    c.Log.Note($"server: sent {count} completion(s) as 1 message in 3 frames");
                }
                else if (count == 1)
                {
                    // One completion over 3 WebSocket messages.
                    foreach (var p in parts) await c.SendBytesAsync(p);
                    c.Log.Note("server: sent 1 completion split over 3 messages");
                }
                else
                {
                    // Several completions in one WebSocket message.
                    await c.SendBytesAsync(bytes);
                    c.Log.Note($"server: sent {count} completions in 1 message");
                }
            }
        });
        await c.HoldAsync(Hold, reader);
        try { await writer; } catch (Exception) { /* closed while writing */ }
    }

    // {"type":3,"invocationId":X,"result":arguments[0]} 0x1E for an
    // Invocation with an invocationId; null for anything else.
    private static string? CompletionFor(string record)
    {
        try
        {
            using var doc = JsonDocument.Parse(record);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) return null;
            if (!root.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.Number
                || type.GetInt32() != 1) return null;
            if (!root.TryGetProperty("invocationId", out var id) || id.ValueKind != JsonValueKind.String)
                return null;
            var result = "null";
            if (root.TryGetProperty("arguments", out var args) && args.ValueKind == JsonValueKind.Array
                && args.GetArrayLength() > 0)
                result = args[0].GetRawText();
            return "{\"type\":3,\"invocationId\":" + JsonSerializer.Serialize(id.GetString(), LogJson)
                + ",\"result\":" + result + "}" + RS;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}

// One accepted WebSocket: record reassembly (split on 0x1E across messages),
// serialized sends, close handling. NextRecordAsync must only be called from
// one task at a time; the Send* methods may be called from any task.
internal sealed class FakeSocket
{
    private readonly WebSocket _ws;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly Queue<string> _records = new();
    private readonly MemoryStream _partial = new(); // bytes after the last 0x1E
    private readonly byte[] _buf = new byte[64 * 1024];
    // How long to wait for the client's Close reply after we sent ours.
    private static readonly TimeSpan CloseWait = TimeSpan.FromSeconds(5);
    private bool _done;

    public FakeSocket(WebSocket ws, ConnLog log, CancellationToken token)
    {
        _ws = ws;
        Log = log;
        Token = token;
    }

    public ConnLog Log { get; }
    public CancellationToken Token { get; }
    public bool IsOpen => _ws.State == WebSocketState.Open;

    // Next complete record (text before a 0x1E), or null once the client
    // closed (its Close frame is answered) or the socket broke.
    public async Task<string?> NextRecordAsync()
    {
        while (_records.Count == 0)
        {
            if (_done || !await ReceiveMessageAsync()) { _done = true; return null; }
        }
        return _records.Dequeue();
    }

    private async Task<bool> ReceiveMessageAsync()
    {
        using var msg = new MemoryStream();
        WebSocketReceiveResult r;
        do
        {
            if (_ws.State is not (WebSocketState.Open or WebSocketState.CloseSent)) return false;
            r = await _ws.ReceiveAsync(new ArraySegment<byte>(_buf), Token);
            if (r.MessageType == WebSocketMessageType.Close)
            {
                Log.ClientClosed(_ws.CloseStatus, _ws.CloseStatusDescription);
                await _sendLock.WaitAsync(Token);
                try
                {
                    if (_ws.State == WebSocketState.CloseReceived)
                        await _ws.CloseOutputAsync(_ws.CloseStatus ?? WebSocketCloseStatus.Empty,
                            _ws.CloseStatusDescription, Token);
                }
                finally { _sendLock.Release(); }
                return false;
            }
            msg.Write(_buf, 0, r.Count);
        } while (!r.EndOfMessage);

        var bytes = msg.ToArray();
        Log.Frame(bytes, r.MessageType == WebSocketMessageType.Binary);
        var start = 0;
        for (var i = 0; i < bytes.Length; i++)
        {
            if (bytes[i] != 0x1e) continue;
            _partial.Write(bytes, start, i - start);
            var record = Encoding.UTF8.GetString(_partial.GetBuffer(), 0, (int)_partial.Length);
            _partial.SetLength(0);
            _records.Enqueue(record);
            Log.Record(record);
            start = i + 1;
        }
        _partial.Write(bytes, start, bytes.Length - start);
        return true;
    }

    public Task SendAsync(string text) => SendBytesAsync(Encoding.UTF8.GetBytes(text));

    // One WebSocket text message (one frame).
    public async Task SendBytesAsync(byte[] bytes)
    {
        await _sendLock.WaitAsync(Token);
        try { await _ws.SendAsync(new ArraySegment<byte>(bytes), WebSocketMessageType.Text, true, Token); }
        finally { _sendLock.Release(); }
    }

    // One WebSocket text message made of parts.Length frames.
    public async Task SendFramesAsync(byte[][] parts)
    {
        await _sendLock.WaitAsync(Token);
        try
        {
            for (var i = 0; i < parts.Length; i++)
                await _ws.SendAsync(new ArraySegment<byte>(parts[i]), WebSocketMessageType.Text,
                    i == parts.Length - 1, Token);
        }
        finally { _sendLock.Release(); }
    }

    // Send our Close frame (if still open) and wait briefly for the reply.
    public async Task CloseAsync(WebSocketCloseStatus status, Task? reader = null)
    {
        await SendCloseAsync(status);
        await WaitOrTimeout(reader ?? DrainAsync(), CloseWait);
    }

    private async Task SendCloseAsync(WebSocketCloseStatus status)
    {
        await _sendLock.WaitAsync(Token);
        try
        {
            if (_ws.State == WebSocketState.Open)
            {
                await _ws.CloseOutputAsync(status, "", Token);
                Log.Note($"server: sent close {(int)status}");
            }
        }
        finally { _sendLock.Release(); }
    }

    // Read (and log) until the client closes or `hold` passes; then close
    // normally. `reader` is an already running reading task, if any.
    public async Task HoldAsync(TimeSpan hold, Task? reader = null)
    {
        reader ??= DrainAsync();
        if (!await WaitOrTimeout(reader, hold))
        {
            Log.Note($"server: client still connected after {hold.TotalSeconds:0} s");
            await CloseAsync(WebSocketCloseStatus.NormalClosure, reader);
        }
        else
        {
            await reader; // surface its exception, if any
        }
    }

    private async Task DrainAsync()
    {
        while (await NextRecordAsync() is not null) { }
    }

    private async Task<bool> WaitOrTimeout(Task task, TimeSpan timeout)
    {
        var done = await Task.WhenAny(task, Task.Delay(timeout, Token));
        if (done != task) Token.ThrowIfCancellationRequested();
        return done == task;
    }
}

// What the client sent on one WebSocket connection.
internal sealed class ConnLog
{
    private readonly object _lock = new();
    private string? _handshake;
    private readonly List<string> _messages = new();
    private readonly List<string> _frames = new();
    private readonly List<string> _notes = new();
    private int? _closeStatus;
    private string? _closeDescription;
    private bool _open = true;

    public ConnLog(HttpRequest req)
    {
        Path = req.Path + req.QueryString;
        Authorization = req.Headers.Authorization.Count > 0 ? req.Headers.Authorization.ToString() : null;
        Headers = req.Headers.ToDictionary(h => h.Key, h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase);
    }

    public string Path { get; }
    public string? Authorization { get; }
    public Dictionary<string, string> Headers { get; }

    // Every record the client sent; the first one is the handshake.
    public void Record(string r)
    {
        lock (_lock)
        {
            if (_handshake is null) { _handshake = r; return; }
            _messages.Add(r);
        }
    }

    public void Frame(byte[] bytes, bool binary)
    {
        var text = binary ? "binary:" + Convert.ToBase64String(bytes) : Encoding.UTF8.GetString(bytes);
        lock (_lock) _frames.Add(text);
    }

    public void Note(string n) { lock (_lock) _notes.Add(n); }

    public void ClientClosed(WebSocketCloseStatus? status, string? description)
    {
        lock (_lock)
        {
            _closeStatus = status is null ? null : (int)status;
            _closeDescription = description;
        }
    }

    public void Ended() { lock (_lock) _open = false; }

    public Dictionary<string, object?> Snapshot()
    {
        lock (_lock)
        {
            return new Dictionary<string, object?>
            {
                ["handshake"] = _handshake,
                ["messages"] = _messages.ToArray(),
                ["authorization"] = Authorization,
                ["path"] = Path,
                ["headers"] = Headers,
                ["frames"] = _frames.ToArray(),
                ["open"] = _open,
                ["closeStatus"] = _closeStatus,
                ["closeDescription"] = _closeDescription,
                ["notes"] = _notes.ToArray(),
            };
        }
    }
}

// Per mode: the most recent WebSocket connection and the negotiate requests.
internal sealed class ModeLog
{
    private readonly object _lock = new();
    private readonly string _mode;
    private ConnLog? _current;
    private int _connections;
    private int _negotiates;
    private string? _negotiateAuthorization;
    private string? _negotiatePath;

    public ModeLog(string mode) => _mode = mode;

    public ConnLog NewConnection(HttpRequest req)
    {
        var log = new ConnLog(req);
        lock (_lock) { _current = log; _connections++; }
        return log;
    }

    public void Negotiated(HttpRequest req)
    {
        lock (_lock)
        {
            _negotiates++;
            _negotiateAuthorization = req.Headers.Authorization.Count > 0 ? req.Headers.Authorization.ToString() : null;
            _negotiatePath = req.Path + req.QueryString;
        }
    }

    public Dictionary<string, object?> Snapshot()
    {
        ConnLog? cur;
        Dictionary<string, object?> result;
        lock (_lock)
        {
            cur = _current;
            result = new Dictionary<string, object?>
            {
                ["mode"] = _mode,
                ["connections"] = _connections,
                ["negotiate"] = new Dictionary<string, object?>
                {
                    ["count"] = _negotiates,
                    ["authorization"] = _negotiateAuthorization,
                    ["path"] = _negotiatePath,
                },
            };
        }
        if (cur is not null)
            foreach (var (k, v) in cur.Snapshot()) result[k] = v;
        else
            result["messages"] = Array.Empty<string>();
        return WithoutNulls(result);
    }

    // Leave out null fields (JsonIgnoreCondition does not apply to dictionaries),
    // so a Lua JSON decoder sees nil rather than a null sentinel.
    private static Dictionary<string, object?> WithoutNulls(Dictionary<string, object?> d)
    {
        foreach (var key in d.Where(kv => kv.Value is null).Select(kv => kv.Key).ToList())
            d.Remove(key);
        foreach (var (_, v) in d)
            if (v is Dictionary<string, object?> inner) WithoutNulls(inner);
        return d;
    }
}
