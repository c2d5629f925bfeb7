// ============================================================================
// FAKE SERVER, RAW WEBSOCKET FRAMES -- NOT the real SignalR server.
//
// For faults neither the real server nor FakeServer.cs (which uses ASP.NET's
// own WebSocket, which refuses to write them) can produce: the handshake
// answer in a binary frame under JSON, close frames with codes of our
// choice (also codes RFC 6455 forbids on the wire), a masked frame from the
// server, an upgrade that is never answered. The upgrade is done by hand
// (IHttpUpgradeFeature), then frames are written byte by byte.
//
//   GET /raw/{mode}   (clients use skip_negotiation)
//     binaryhandshake  reads the handshake, answers "{}\x1e" in a binary frame
//     close3000        answers the handshake, then Close 3000 "going away now"
//     close999         answers the handshake, then Close 999 "bad code"
//     masked           answers the handshake, then a masked text frame with an
//                      Invocation of "hello", then a plain Ping, then holds
//                      (libwebsockets 4.1.6 unmasks and delivers such a frame
//                      and tells the client nothing, so no spec can hold the
//                      client to RFC 6455 here; kept to show it by hand)
//     noupgrade        reads the request and never answers it
// ============================================================================
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http.Features;

namespace TestHub;

public static class RawWebSocket
{
    private static readonly TimeSpan Hold = TimeSpan.FromSeconds(60);

    public static IEndpointRouteBuilder MapRawWebSocket(this IEndpointRouteBuilder app)
    {
        app.MapGet("/raw/{mode}", async (HttpContext ctx, string mode) =>
        {
            var upgrade = ctx.Features.Get<IHttpUpgradeFeature>();
            if (mode == "noupgrade")
            {
                try { await Task.Delay(Hold, ctx.RequestAborted); } catch (OperationCanceledException) { }
                return;
            }
            var key = ctx.Request.Headers["Sec-WebSocket-Key"].ToString();
            if (upgrade is null || !upgrade.IsUpgradableRequest || key.Length == 0)
            {
                ctx.Response.StatusCode = 400;
                return;
            }
            var accept = Convert.ToBase64String(SHA1.HashData(
                Encoding.ASCII.GetBytes(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")));
            ctx.Response.Headers["Upgrade"] = "websocket";
            ctx.Response.Headers["Connection"] = "Upgrade";
            ctx.Response.Headers["Sec-WebSocket-Accept"] = accept;
            await using var s = await upgrade.UpgradeAsync();
            try
            {
                await ReadHandshake(s, ctx.RequestAborted);
                var hs = Encoding.UTF8.GetBytes("{}\u001e");
                switch (mode)
                {
                    case "binaryhandshake":
                        await Frame(s, 0x2, hs);
                        break;
                    case "close3000":
                    case "close999":
                        await Frame(s, 0x1, hs);
                        var code = mode == "close3000" ? 3000 : 999;
                        var reason = Encoding.UTF8.GetBytes(mode == "close3000" ? "going away now" : "bad code");
                        var body = new byte[2 + reason.Length];
                        body[0] = (byte)(code >> 8);
                        body[1] = (byte)code;
                        reason.CopyTo(body, 2);
                        await Frame(s, 0x8, body);
                        break;
                    case "masked":
                        await Frame(s, 0x1, hs);
                        await Frame(s, 0x1, Encoding.UTF8.GetBytes(
                            "{\"type\":1,\"target\":\"hello\",\"arguments\":[]}\u001e"), mask: true);
                        await Frame(s, 0x1, Encoding.UTF8.GetBytes("{\"type\":6}\u001e"));
                        break;
                    default:
                        return;
                }
                // Keep the socket until the client closes it (or the hold ends).
                var buf = new byte[4096];
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
                cts.CancelAfter(Hold);
                while (await s.ReadAsync(buf, cts.Token) > 0) { }
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
            {
                // the client went away: that is the point
            }
        });
        return app;
    }

    // Reads client frames (masked, as RFC 6455 has clients send them) until
    // a payload holds the record separator of the handshake.
    private static async Task ReadHandshake(Stream s, CancellationToken ct)
    {
        while (true)
        {
            var h = await ReadExactly(s, 2, ct);
            long len = h[1] & 0x7f;
            if (len == 126) { var e = await ReadExactly(s, 2, ct); len = (e[0] << 8) | e[1]; }
            else if (len == 127) { var e = await ReadExactly(s, 8, ct); len = 0; foreach (var b in e) len = (len << 8) | b; }
            var mask = (h[1] & 0x80) != 0 ? await ReadExactly(s, 4, ct) : null;
            var payload = await ReadExactly(s, (int)len, ct);
            if (mask is not null)
                for (var i = 0; i < payload.Length; i++) payload[i] ^= mask[i & 3];
            if (Array.IndexOf(payload, (byte)0x1e) >= 0) return;
        }
    }

    private static async Task<byte[]> ReadExactly(Stream s, int n, CancellationToken ct)
    {
        var b = new byte[n];
        await s.ReadExactlyAsync(b, ct);
        return b;
    }

    private static async Task Frame(Stream s, int opcode, byte[] payload, bool mask = false)
    {
        var head = new List<byte> { (byte)(0x80 | opcode) };
        var m = mask ? 0x80 : 0;
        if (payload.Length < 126) head.Add((byte)(m | payload.Length));
        else { head.Add((byte)(m | 126)); head.Add((byte)(payload.Length >> 8)); head.Add((byte)payload.Length); }
        var body = payload;
        if (mask)
        {
            var key = new byte[] { 0x12, 0x34, 0x56, 0x78 };
            head.AddRange(key);
            body = payload.Select((b, i) => (byte)(b ^ key[i & 3])).ToArray();
        }
        await s.WriteAsync(head.ToArray());
        await s.WriteAsync(body);
        await s.FlushAsync();
    }
}
