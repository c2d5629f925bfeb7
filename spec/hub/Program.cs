// Test server for the Lua SignalR client specs.
//
//   dotnet spec/hub/out/TestHub.dll --urls http://127.0.0.1:0
//
// Environment:
//   HUB_READY_FILE   after start, the bound addresses are written there (one per
//                    line, http first) via a temp file + rename.
//   HUB_TLS_CERT, HUB_TLS_KEY
//                    PEM files; when both are set the server also listens with
//                    HTTPS on HUB_HTTPS_URLS (default https://127.0.0.1:0).
//   HUB_VERBOSE=1    log at Information (default: Warning).
//   HUB_KEEPALIVE_MS, HUB_CLIENT_TIMEOUT_MS, HUB_HANDSHAKE_TIMEOUT_MS
//                    optional overrides of the SignalR hub options.
//   HUB_LONGPOLL_TIMEOUT_MS
//                    optional override of the long-polling poll timeout.
//   HUB_PARENT_PID   if set, the server shuts itself down once that process is
//                    gone (so a killed test runner leaves no server behind).
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR;
using TestHub;

static int? EnvInt(string name) =>
    int.TryParse(Environment.GetEnvironmentVariable(name), out var v) ? v : null;

var builder = WebApplication.CreateBuilder(args);

var verbose = Environment.GetEnvironmentVariable("HUB_VERBOSE") == "1";
builder.Logging.ClearProviders();
builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
builder.Logging.SetMinimumLevel(verbose ? LogLevel.Information : LogLevel.Warning);
if (verbose)
{
    builder.Logging.AddFilter("Microsoft.AspNetCore.SignalR", LogLevel.Debug);
    builder.Logging.AddFilter("Microsoft.AspNetCore.Http.Connections", LogLevel.Debug);
}

// Stop quickly on SIGTERM even with connections open.
builder.WebHost.UseShutdownTimeout(TimeSpan.FromSeconds(2));

// Addresses: whatever --urls / ASPNETCORE_URLS says, plus the HTTPS ones.
var urls = (builder.Configuration["urls"] ?? "http://127.0.0.1:5000")
    .Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
    .ToList();
var tlsCert = Environment.GetEnvironmentVariable("HUB_TLS_CERT");
var tlsKey = Environment.GetEnvironmentVariable("HUB_TLS_KEY");
if (!string.IsNullOrEmpty(tlsCert) && !string.IsNullOrEmpty(tlsKey))
{
    var cert = X509Certificate2.CreateFromPemFile(tlsCert, tlsKey);
    builder.WebHost.ConfigureKestrel(k =>
        k.ConfigureHttpsDefaults(h => h.ServerCertificate = cert));
    var httpsUrls = Environment.GetEnvironmentVariable("HUB_HTTPS_URLS");
    if (string.IsNullOrWhiteSpace(httpsUrls))
        httpsUrls = "https://127.0.0.1:0";
    urls.AddRange(httpsUrls.Split(';',
        StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
builder.WebHost.UseUrls(urls.ToArray());

// Tracks HubConnectionContext per connection id (used by CloseWithError).
builder.Services.AddSingleton(typeof(HubLifetimeManager<>), typeof(TrackingHubLifetimeManager<>));

builder.Services.AddSignalR(o =>
{
    o.EnableDetailedErrors = false;
    // MaximumReceiveMessageSize stays at its default (32 KB) unless
    // HUB_MAX_RECEIVE_BYTES says otherwise (0 = unlimited; bench/values.lua).
    if (EnvInt("HUB_MAX_RECEIVE_BYTES") is int mr) o.MaximumReceiveMessageSize = mr > 0 ? mr : null;
    if (EnvInt("HUB_KEEPALIVE_MS") is int ka) o.KeepAliveInterval = TimeSpan.FromMilliseconds(ka);
    if (EnvInt("HUB_CLIENT_TIMEOUT_MS") is int ct) o.ClientTimeoutInterval = TimeSpan.FromMilliseconds(ct);
    if (EnvInt("HUB_HANDSHAKE_TIMEOUT_MS") is int ht) o.HandshakeTimeout = TimeSpan.FromMilliseconds(ht);
})
// Every hub speaks JSON and MessagePack at once (clients choose in the handshake).
.AddMessagePackProtocol()
// Client results (server -> client invocations with a result) from inside a
// hub method need more than one parallel invocation per client; only on the
// dedicated hub so /testhub keeps strict in-order execution.
.AddHubOptions<ClientResultHub>(o => o.MaximumParallelInvocationsPerClient = 2)
// /detailedhub: the server's own error texts reach the client (a close for
// a message over MaximumReceiveMessageSize names the limit).
.AddHubOptions<DetailedHub>(o => o.EnableDetailedErrors = true)
// Short timeouts on /quickhub and /quickstatefulhub only (quick timeout and
// reconnect specs on the shared hub): the server pings every second (its
// heartbeat ticks once a second, so shorter intervals act as 1 s) and drops a
// client silent for 3 s (clients there should ping every second or so).
.AddHubOptions<QuickHub>(o =>
{
    o.KeepAliveInterval = TimeSpan.FromSeconds(1);
    o.ClientTimeoutInterval = TimeSpan.FromSeconds(3);
});

// Trivial token auth for /authhub: "Authorization: Bearer <token>" or
// "?access_token=<token>" with token == AuthConstants.ValidToken.
builder.Services.AddAuthentication(AuthConstants.Scheme)
    .AddScheme<AuthenticationSchemeOptions, TestTokenAuthHandler>(AuthConstants.Scheme, null);
builder.Services.AddAuthorization();
// In-memory keys: no key files under $HOME, no "No XML encryptor" warning.
builder.Services.AddDataProtection().UseEphemeralDataProtectionProvider();

var app = builder.Build();

app.UseWebSockets();
app.UseAuthentication();
app.UseAuthorization();

app.MapGet("/health", () => Results.Text("ok"));

// /cookiehub: a sticky-session load balancer's cookie (CookieHub in TestHub.cs).
app.UseCookieHubCookies();

var longPollTimeout = EnvInt("HUB_LONGPOLL_TIMEOUT_MS");
void Common(HttpConnectionDispatcherOptions o)
{
    if (longPollTimeout is int lp) o.LongPolling.PollTimeout = TimeSpan.FromMilliseconds(lp);
}

app.MapHub<TestHub.TestHub>("/testhub", o => Common(o));
app.MapHub<TestHub.TestHub>("/statefulhub", o => { Common(o); o.AllowStatefulReconnects = true; });
app.MapHub<TestHub.TestHub>("/wsonly", o => { Common(o); o.Transports = HttpTransportType.WebSockets; });
app.MapHub<TestHub.TestHub>("/sseonly", o => { Common(o); o.Transports = HttpTransportType.ServerSentEvents; });
app.MapHub<TestHub.TestHub>("/lponly", o => { Common(o); o.Transports = HttpTransportType.LongPolling; });
app.MapHub<AuthHub>("/authhub", o => Common(o));
app.MapHub<ChatHub>("/chathub", o => Common(o));
app.MapHub<QuickHub>("/quickhub", o => Common(o));
app.MapHub<QuickHub>("/quickstatefulhub", o => { Common(o); o.AllowStatefulReconnects = true; });
app.MapHub<ClientResultHub>("/clientresulthub", o => Common(o));
app.MapHub<CookieHub>("/cookiehub", o => Common(o));
app.MapHub<DetailedHub>("/detailedhub", o => Common(o));

// Fake "lying server" endpoints under /fake/{mode} (spec/hub/FakeServer.cs):
// only for faults the real SignalR server cannot produce.
app.MapFakeServer();
app.MapRawWebSocket();

await app.StartAsync();

WatchParent(app);

var addresses = app.Services.GetRequiredService<IServer>()
    .Features.Get<IServerAddressesFeature>()?.Addresses.ToList() ?? new List<string>();
// http first, then https; keep the order Kestrel reports within each group.
addresses = addresses
    .OrderBy(a => a.StartsWith("https:", StringComparison.OrdinalIgnoreCase) ? 1 : 0)
    .ToList();
var text = string.Join("\n", addresses) + "\n";
Console.Out.Write(text);
Console.Out.Flush();

var readyFile = Environment.GetEnvironmentVariable("HUB_READY_FILE");
if (!string.IsNullOrEmpty(readyFile))
{
    var tmp = readyFile + ".tmp" + Environment.ProcessId;
    await File.WriteAllTextAsync(tmp, text);
    File.Move(tmp, readyFile, overwrite: true);
}

await app.WaitForShutdownAsync();

// Stop the server when the process named by HUB_PARENT_PID exits (checked via
// /proc: the pid disappears, turns zombie, or is reused by another process).
static void WatchParent(WebApplication app)
{
    if (!int.TryParse(Environment.GetEnvironmentVariable("HUB_PARENT_PID"), out var ppid) || ppid <= 1)
        return;

    static string? StartTime(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return fields[0] == "Z" ? null : fields[19]; // state, starttime
        }
        catch
        {
            return null;
        }
    }

    var started = StartTime(ppid);
    if (started is null)
        return; // no /proc or parent already gone: don't guess
    _ = Task.Run(async () =>
    {
        while (!app.Lifetime.ApplicationStopping.IsCancellationRequested)
        {
            await Task.Delay(500);
            if (StartTime(ppid) != started)
            {
                Console.Error.WriteLine($"parent process {ppid} is gone; stopping");
                app.Lifetime.StopApplication();
                return;
            }
        }
    });
}
