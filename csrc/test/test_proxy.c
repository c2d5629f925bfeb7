/* test_proxy.c - the proxy decision (option, environment, no_proxy as
 * libcurl 7.88 reads them) and proxy URL parsing. */
#include <stdlib.h>

#include "harness.h"
#include "proxy.h"

static const char *const ENV[] = {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                                  "all_proxy",  "ALL_PROXY",  "no_proxy",    "NO_PROXY"};

static void clear_env(void)
{
    size_t i;
    for (i = 0; i < sizeof ENV / sizeof ENV[0]; i++)
        unsetenv(ENV[i]);
}

/* The pick for url as a string ("-" for none); static buffer. */
static const char *pick(const char *url, const char *option)
{
    static char buf[256];
    char *out = (char *)1;
    if (sr__proxy_pick(url, option, &out) != 0) return "(error)";
    snprintf(buf, sizeof buf, "%s", out ? out : "-");
    free(out);
    return buf;
}

TEST(test_no_proxy_names)
{
    CHECK(sr__proxy_bypassed("example.com", "example.com"));
    CHECK(sr__proxy_bypassed("www.example.com", "example.com"));
    CHECK(sr__proxy_bypassed("www.EXAMPLE.com", ".example.com"));
    CHECK(sr__proxy_bypassed("example.com.", "example.com"));
    CHECK(sr__proxy_bypassed("example.com", "example.com."));
    CHECK(!sr__proxy_bypassed("notexample.com", "example.com"));
    CHECK(!sr__proxy_bypassed("example.com", "www.example.com"));
    CHECK(sr__proxy_bypassed("hub.internal", "localhost, .internal"));
    CHECK(sr__proxy_bypassed("hub.internal", "localhost .internal")); /* blanks separate too */
    CHECK(sr__proxy_bypassed("hub.internal", ",,localhost,,hub.internal,"));
    CHECK(sr__proxy_bypassed("anything", "*"));
    CHECK(!sr__proxy_bypassed("anything", "*.anything")); /* no wildcards but "*" alone */
    CHECK(!sr__proxy_bypassed("anything", ""));
    CHECK(!sr__proxy_bypassed("anything", NULL));
    CHECK(!sr__proxy_bypassed("", "example.com"));
    /* libcurl 7.88 matches names only: an entry with a port matches nothing. */
    CHECK(!sr__proxy_bypassed("example.com", "example.com:8080"));
}

TEST(test_no_proxy_addresses)
{
    CHECK(sr__proxy_bypassed("127.0.0.1", "127.0.0.1"));
    CHECK(sr__proxy_bypassed("127.0.0.1", "localhost,127.0.0.0/8"));
    CHECK(sr__proxy_bypassed("10.1.2.3", "10.0.0.0/8"));
    CHECK(!sr__proxy_bypassed("11.1.2.3", "10.0.0.0/8"));
    CHECK(!sr__proxy_bypassed("127.0.0.1", "localhost")); /* no lookups */
    CHECK(!sr__proxy_bypassed("127.0.0.2", "127.0.0.1"));
    CHECK(!sr__proxy_bypassed("127.0.0.1", "127.0.0.0/40"));
    CHECK(sr__proxy_bypassed("[::1]", "::1"));
    CHECK(sr__proxy_bypassed("::1", "::1"));
    CHECK(sr__proxy_bypassed("[fe80::1]", "fe80::/10"));
    CHECK(!sr__proxy_bypassed("[fec0::1]", "fe80::/10"));
    CHECK(!sr__proxy_bypassed("[::1]", "127.0.0.1"));
}

TEST(test_pick_option)
{
    clear_env();
    setenv("http_proxy", "http://env:1", 1);
    CHECK_STR(pick("http://h/hub", "http://opt:2"), "http://opt:2");
    CHECK_STR(pick("ws://h/hub", "http://opt:2"), "http://opt:2");
    /* "" is CURLOPT_PROXY's "no proxy, whatever the environment says". */
    CHECK_STR(pick("http://h/hub", ""), "-");
    setenv("no_proxy", "h", 1);
    CHECK_STR(pick("http://h/hub", "http://opt:2"), "http://opt:2"); /* explicit wins */
    clear_env();
}

TEST(test_pick_environment)
{
    clear_env();
    CHECK_STR(pick("http://h/hub", NULL), "-");
    setenv("http_proxy", "http://p1:1", 1);
    CHECK_STR(pick("http://h/hub", NULL), "http://p1:1");
    CHECK_STR(pick("ws://h/hub", NULL), "http://p1:1");
    CHECK_STR(pick("https://h/hub", NULL), "-");
    setenv("HTTPS_PROXY", "http://p2:2", 1);
    CHECK_STR(pick("wss://h/hub", NULL), "http://p2:2");
    setenv("https_proxy", "http://p3:3", 1);
    CHECK_STR(pick("https://h/hub", NULL), "http://p3:3");
    CHECK_STR(pick("WSS://h/hub", NULL), "http://p3:3");
    /* Set but empty: no proxy, and no looking further (libcurl). */
    setenv("https_proxy", "", 1);
    setenv("all_proxy", "http://p4:4", 1);
    CHECK_STR(pick("wss://h/hub", NULL), "-");
    unsetenv("https_proxy");
    unsetenv("HTTPS_PROXY");
    CHECK_STR(pick("wss://h/hub", NULL), "http://p4:4");
    /* Never HTTP_PROXY (httpoxy). */
    clear_env();
    setenv("HTTP_PROXY", "http://p5:5", 1);
    CHECK_STR(pick("ws://h/hub", NULL), "-");
    setenv("ALL_PROXY", "http://p6:6", 1);
    CHECK_STR(pick("ws://h/hub", NULL), "http://p6:6");
    clear_env();
}

TEST(test_pick_no_proxy)
{
    clear_env();
    setenv("http_proxy", "http://p:1", 1);
    setenv("NO_PROXY", "hub.internal", 1);
    CHECK_STR(pick("ws://hub.internal:5000/hub", NULL), "-");
    CHECK_STR(pick("http://a.hub.internal/hub", NULL), "-");
    CHECK_STR(pick("ws://elsewhere/hub", NULL), "http://p:1");
    setenv("no_proxy", "127.0.0.1", 1); /* the lower-case one first */
    CHECK_STR(pick("ws://hub.internal/hub", NULL), "http://p:1");
    CHECK_STR(pick("ws://127.0.0.1:5000/hub", NULL), "-");
    setenv("no_proxy", "::1", 1);
    CHECK_STR(pick("ws://[::1]:5000/hub", NULL), "-");
    setenv("no_proxy", "*", 1);
    CHECK_STR(pick("ws://anywhere/hub", NULL), "-");
    CHECK_STR(pick("not a url", NULL), "-");
    clear_env();
}

TEST(test_parse)
{
    sr_proxy p;
    char err[200];
    CHECK(sr__proxy_parse("http://us%20er:p%40ss%3Aw@127.0.0.1:3128", &p, err, sizeof err) == 0);
    CHECK_STR(p.host, "127.0.0.1");
    CHECK(p.port == 3128);
    CHECK_STR(p.userpass, "us er:p@ss:w");
    CHECK_STR(p.shown, "http://127.0.0.1:3128");
    sr__proxy_free(&p);

    CHECK(sr__proxy_parse("proxy.example", &p, err, sizeof err) == 0);
    CHECK_STR(p.host, "proxy.example");
    CHECK(p.port == 1080); /* libcurl's default */
    CHECK(p.userpass == NULL);
    sr__proxy_free(&p);

    CHECK(sr__proxy_parse("HTTP://[::1]:8080/", &p, err, sizeof err) == 0);
    CHECK_STR(p.host, "::1");
    CHECK(p.port == 8080);
    CHECK_STR(p.shown, "http://[::1]:8080");
    sr__proxy_free(&p);

    CHECK(sr__proxy_parse("http://user@p:1", &p, err, sizeof err) == 0);
    CHECK_STR(p.userpass, "user:");
    sr__proxy_free(&p);
    sr__proxy_free(NULL);
}

TEST(test_parse_refused)
{
    sr_proxy p;
    char err[200];
    CHECK(sr__proxy_parse("socks5://user:secret@p:1080", &p, err, sizeof err) == -1);
    CHECK(strstr(err, "socks5://") != NULL);
    CHECK(strstr(err, "secret") == NULL);
    CHECK(p.host == NULL);
    CHECK(sr__proxy_parse("https://p:443", &p, err, sizeof err) == -1);
    CHECK(strstr(err, "https://") != NULL);
    CHECK(sr__proxy_parse("http://user:secret@", &p, err, sizeof err) == -1);
    CHECK(strstr(err, "secret") == NULL);
    CHECK(sr__proxy_parse("http://user:secret@p:99999", &p, err, sizeof err) == -1);
    CHECK(strstr(err, "secret") == NULL);
    CHECK(sr__proxy_parse("http://user:sec%00ret@p:1", &p, err, sizeof err) == -1);
    CHECK(strstr(err, "sec") == NULL);
}

int main(void)
{
    RUN(test_no_proxy_names);
    RUN(test_no_proxy_addresses);
    RUN(test_pick_option);
    RUN(test_pick_environment);
    RUN(test_pick_no_proxy);
    RUN(test_parse);
    RUN(test_parse_refused);
    DONE();
}
