/* test_negotiate.c - negotiate response parsing and the derived URLs. */
#include <stdlib.h>

#include "harness.h"
#include "negotiate.h"

static int parse(const char *body, sr_negotiation *n, sr_error *err)
{
    memset(err, 0, sizeof *err);
    err->status = 200;
    return sr__negotiate_parse(body, strlen(body), n, err);
}

/* A body that must fail with a message containing what. */
static int refused(const char *body, const char *what)
{
    sr_negotiation n;
    sr_error err;
    int rc = parse(body, &n, &err);

    if (rc != SR_ENEGOTIATE || err.code != SR_ENEGOTIATE || !strstr(err.message, what) ||
        n.connection_id || n.connection_token || n.redirect_url || n.access_token) {
        printf("  body %s: rc=%d message=\"%s\" (want \"%s\")\n", body, rc, err.message, what);
        sr__negotiation_clear(&n);
        return 0;
    }
    return err.status == 200; /* the HTTP status is the caller's */
}

TEST(version_1_response)
{
    sr_negotiation n;
    sr_error err;

    CHECK(parse("{\"negotiateVersion\":1,\"connectionId\":\"pub\",\"connectionToken\":\"secret\","
                "\"availableTransports\":["
                "{\"transport\":\"WebSockets\",\"transferFormats\":[\"Text\",\"Binary\"]},"
                "{\"transport\":\"ServerSentEvents\",\"transferFormats\":[\"Text\"]},"
                "{\"transport\":\"LongPolling\",\"transferFormats\":[\"Text\",\"Binary\"]},"
                "{\"transport\":\"WebTransport\",\"transferFormats\":[\"Binary\"]}],"
                "\"useStatefulReconnect\":true,\"somethingNew\":[1,2]}",
                &n, &err) == SR_OK);
    CHECK(n.version == 1);
    CHECK_STR(n.connection_id, "pub");
    CHECK_STR(n.connection_token, "secret");
    CHECK(n.transports == (SR_TRANSPORT_WEBSOCKETS | SR_TRANSPORT_SSE | SR_TRANSPORT_LONG_POLLING));
    CHECK(n.transports_binary == (SR_TRANSPORT_WEBSOCKETS | SR_TRANSPORT_LONG_POLLING));
    CHECK(n.stateful_reconnect == 1);
    CHECK(!n.redirect_url && !n.access_token);
    sr__negotiation_clear(&n);
    CHECK(!n.connection_id && n.transports == 0);
}

TEST(version_0_response)
{
    sr_negotiation n;
    sr_error err;

    /* no negotiateVersion: version 0, connectionId doubles as the id= token */
    CHECK(parse("{\"connectionId\":\"abc\",\"availableTransports\":[{\"transport\":\"LongPolling\","
                "\"transferFormats\":[\"Text\"]}]}",
                &n, &err) == SR_OK);
    CHECK(n.version == 0 && strcmp(n.connection_id, "abc") == 0 && !n.connection_token);
    CHECK(n.transports == SR_TRANSPORT_LONG_POLLING && n.transports_binary == 0);
    CHECK(n.stateful_reconnect == 0);
    sr__negotiation_clear(&n);

    /* a stray token from a version 0 server is not used */
    CHECK(parse("{\"negotiateVersion\":0,\"connectionId\":\"a\",\"connectionToken\":\"t\"}", &n,
                &err) == SR_OK);
    CHECK(!n.connection_token && n.transports == 0);
    sr__negotiation_clear(&n);
}

TEST(tolerated_shapes)
{
    sr_negotiation n;
    sr_error err;

    /* no transports at all, null fields, entries without formats */
    CHECK(parse("{\"negotiateVersion\":1,\"connectionId\":\"a\",\"connectionToken\":\"t\","
                "\"availableTransports\":null,\"useStatefulReconnect\":false,\"url\":null}",
                &n, &err) == SR_OK);
    CHECK(n.transports == 0 && !n.stateful_reconnect && !n.redirect_url);
    sr__negotiation_clear(&n);
    CHECK(parse("{\"negotiateVersion\":1,\"connectionId\":\"a\",\"connectionToken\":\"t\","
                "\"availableTransports\":[{\"transport\":\"WebSockets\"}]}",
                &n, &err) == SR_OK);
    CHECK(n.transports == SR_TRANSPORT_WEBSOCKETS && n.transports_binary == 0);
    sr__negotiation_clear(&n);
    /* a newer negotiate version is parsed the same way */
    CHECK(parse(" {\"negotiateVersion\":2,\"connectionId\":\"a\",\"connectionToken\":\"t\"}\n", &n,
                &err) == SR_OK);
    CHECK(n.version == 2);
    sr__negotiation_clear(&n);
}

TEST(redirect)
{
    sr_negotiation n;
    sr_error err;

    CHECK(parse("{\"url\":\"https://x.service.signalr.net/client/?hub=chat\","
                "\"accessToken\":\"eyJ.a.b\"}",
                &n, &err) == SR_OK);
    CHECK_STR(n.redirect_url, "https://x.service.signalr.net/client/?hub=chat");
    CHECK_STR(n.access_token, "eyJ.a.b");
    CHECK(!n.connection_id);
    sr__negotiation_clear(&n);

    CHECK(parse("{\"url\":\"http://other/hub\"}", &n, &err) == SR_OK);
    CHECK_STR(n.redirect_url, "http://other/hub");
    CHECK(!n.access_token);
    sr__negotiation_clear(&n);
}

TEST(refusals)
{
    CHECK(refused("{\"error\":\"Negotiate refused: go away\"}", "Negotiate refused: go away"));
    /* error wins over anything else in the body */
    CHECK(refused("{\"error\":\"e\",\"connectionId\":\"a\",\"url\":\"u\"}", "e"));
    CHECK(refused("{\"Url\":\"/signalr\",\"ConnectionToken\":\"x\",\"ConnectionId\":\"y\","
                  "\"ProtocolVersion\":\"1.5\"}",
                  "ASP.NET SignalR server (not ASP.NET Core)"));
    CHECK(refused("", "empty"));
    CHECK(refused("<html>502 Bad Gateway</html>", "invalid negotiate response"));
    CHECK(refused("{\"connectionId\":", "invalid negotiate response"));
    CHECK(refused("[]", "not a JSON object"));
    CHECK(refused("{}", "missing 'connectionId'"));
    CHECK(refused("{\"negotiateVersion\":1,\"connectionId\":\"a\"}", "missing 'connectionToken'"));
    CHECK(refused("{\"negotiateVersion\":\"1\",\"connectionId\":\"a\"}", "negotiateVersion"));
    CHECK(refused("{\"connectionId\":5}", "'connectionId' is not a string"));
    CHECK(refused("{\"connectionId\":\"a\\u0000b\"}", "invalid negotiate response"));
    CHECK(refused("{\"url\":7}", "'url' is not a string"));
    CHECK(refused("{\"url\":\"u\",\"accessToken\":[]}", "'accessToken'"));
    CHECK(refused("{\"error\":{}}", "'error' is not a string"));
    CHECK(refused("{\"negotiateVersion\":1,\"connectionId\":\"a\",\"connectionToken\":\"t\","
                  "\"availableTransports\":{}}",
                  "availableTransports"));
    CHECK(refused("{\"negotiateVersion\":1,\"connectionId\":\"a\",\"connectionToken\":\"t\","
                  "\"availableTransports\":[{\"transferFormats\":[]}]}",
                  "transport"));
}

static int url_is(char *got, const char *want)
{
    int ok = got && strcmp(got, want) == 0;
    if (!ok) printf("  got %s, want %s\n", got ? got : "(null)", want);
    free(got);
    return ok;
}

TEST(negotiate_urls)
{
    CHECK(url_is(sr__negotiate_url("http://h:5/hub", 0),
                 "http://h:5/hub/negotiate?negotiateVersion=1"));
    CHECK(url_is(sr__negotiate_url("http://h:5/hub?a=1", 0),
                 "http://h:5/hub/negotiate?a=1&negotiateVersion=1"));
    CHECK(
        url_is(sr__negotiate_url("http://h/hub/", 0), "http://h/hub/negotiate?negotiateVersion=1"));
    CHECK(url_is(sr__negotiate_url("http://h/hub/?a=1&b=%20", 1),
                 "http://h/hub/negotiate?a=1&b=%20&negotiateVersion=1&useStatefulReconnect=true"));
    CHECK(url_is(sr__negotiate_url("https://h", 0), "https://h/negotiate?negotiateVersion=1"));
    CHECK(url_is(sr__negotiate_url("https://h/", 0), "https://h/negotiate?negotiateVersion=1"));
    /* empty query, trailing '&', fragment */
    CHECK(
        url_is(sr__negotiate_url("http://h/hub?", 0), "http://h/hub/negotiate?negotiateVersion=1"));
    CHECK(url_is(sr__negotiate_url("http://h/hub?a=1&", 0),
                 "http://h/hub/negotiate?a=1&negotiateVersion=1"));
    CHECK(url_is(sr__negotiate_url("http://h/hub#frag", 0),
                 "http://h/hub/negotiate?negotiateVersion=1"));
    CHECK(url_is(sr__negotiate_url("http://h/hub?a=1#frag?x", 0),
                 "http://h/hub/negotiate?a=1&negotiateVersion=1"));
    CHECK(sr__negotiate_url(NULL, 0) == NULL);
}

TEST(transport_urls)
{
    CHECK(url_is(sr__transport_url("https://h/hub?a=1", "tok+/=", 1),
                 "wss://h/hub?a=1&id=tok%2B%2F%3D"));
    CHECK(url_is(sr__transport_url("http://h:5/hub", "abc", 1), "ws://h:5/hub?id=abc"));
    CHECK(url_is(sr__transport_url("HTTP://h/hub", "abc", 1), "ws://h/hub?id=abc"));
    CHECK(url_is(sr__transport_url("http://h/hub", "abc", 0), "http://h/hub?id=abc"));
    CHECK(url_is(sr__transport_url("https://h/hub?x=y", "a b&c", 0),
                 "https://h/hub?x=y&id=a%20b%26c"));
    CHECK(url_is(sr__transport_url("http://h/hub", "AZaz09-._~", 0), "http://h/hub?id=AZaz09-._~"));
    CHECK(url_is(sr__transport_url("http://h/hub", "\xc3\xa9", 0), "http://h/hub?id=%C3%A9"));
    /* skip_negotiation: no id at all */
    CHECK(url_is(sr__transport_url("http://h/hub", NULL, 1), "ws://h/hub"));
    CHECK(url_is(sr__transport_url("https://h/hub?a=1#f", NULL, 1), "wss://h/hub?a=1"));
    CHECK(url_is(sr__transport_url("wss://h/hub", "t", 1), "wss://h/hub?id=t"));
    CHECK(url_is(sr__transport_url("http://h/hub?", "", 0), "http://h/hub?id="));
    CHECK(sr__transport_url(NULL, "t", 1) == NULL);
}

int main(void)
{
    RUN(version_1_response);
    RUN(version_0_response);
    RUN(tolerated_shapes);
    RUN(redirect);
    RUN(refusals);
    RUN(negotiate_urls);
    RUN(transport_urls);
    DONE();
}
