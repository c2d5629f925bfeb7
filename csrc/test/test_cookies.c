/* test_cookies.c - the cookie jar: which of its cookies the WebSocket
 * upgrade's Cookie header carries (domain, path, secure, expiry, order),
 * and that a handle keeps a jar alive after the connection let go of it. */
#include <curl/curl.h>
#include <stdio.h>
#include <time.h>

#include "cookies.h"
#include "harness.h"

/* Put one cookie in the jar as libcurl would have stored it from a
 * Set-Cookie (Netscape format: domain, subdomains, path, secure, expires,
 * name, value). */
static int put(sr_cookie_jar *j, const char *domain, int tail, const char *path, int secure,
               long long expires, const char *name, const char *value)
{
    char line[512];
    CURL *e = curl_easy_init();
    int ok;
    if (!e) return 0;
    snprintf(line, sizeof line, "%s\t%s\t%s\t%s\t%lld\t%s\t%s", domain, tail ? "TRUE" : "FALSE",
             path, secure ? "TRUE" : "FALSE", expires, name, value);
    ok = sr__cookie_jar_attach(j, e) == 0 &&
         curl_easy_setopt(e, CURLOPT_COOKIELIST, line) == CURLE_OK;
    curl_easy_cleanup(e);
    return ok;
}

static int header_is(sr_cookie_jar *j, const char *url, const char *want)
{
    char *h = sr__cookie_header(j, url, NULL);
    int ok = want ? h && strcmp(h, want) == 0 : h == NULL;
    if (!ok)
        printf("  %s: got \"%s\", want \"%s\"\n", url, h ? h : "(none)", want ? want : "(none)");
    free(h);
    return ok;
}

TEST(matching)
{
    sr_cookie_jar *j = sr__cookie_jar_new();
    long long later = (long long)time(NULL) + 3600, past = (long long)time(NULL) - 10;
    CHECK(j);
    CHECK(put(j, "example.com", 0, "/", 0, 0, "host", "1"));
    CHECK(put(j, ".example.com", 1, "/hub", 0, later, "sub", "2"));
    CHECK(put(j, "example.com", 0, "/hub/deeper", 0, 0, "deep", "3"));
    CHECK(put(j, "example.com", 0, "/", 1, 0, "sec", "4"));
    CHECK(put(j, "#HttpOnly_example.com", 0, "/", 0, 0, "ho", "5"));
    CHECK(put(j, "example.com", 0, "/hubx", 0, 0, "prefix", "6"));
    CHECK(put(j, "example.com", 0, "/", 0, past, "old", "7"));
    CHECK(put(j, "other.org", 0, "/", 0, 0, "other", "8"));
    /* longer paths first, then by name; expired, secure (over ws), other
     * domains and "/hubx" (not a path prefix of /hub) left out */
    CHECK(header_is(j, "ws://example.com:5000/hub?id=x", "sub=2; ho=5; host=1"));
    CHECK(header_is(j, "wss://example.com/hub/deeper/more", "deep=3; sub=2; ho=5; host=1; sec=4"));
    /* a subdomain gets only the Domain cookie */
    CHECK(header_is(j, "ws://a.example.com/hub", "sub=2"));
    CHECK(header_is(j, "ws://notexample.com/hub", NULL));
    CHECK(header_is(j, "ws://other.org/", "other=8"));
    CHECK(header_is(j, "ws://example.com", "ho=5; host=1"));
    CHECK(header_is(j, "not a url", NULL));
    sr__cookie_jar_unref(j);
}

TEST(loopback_is_a_secure_context)
{
    sr_cookie_jar *j = sr__cookie_jar_new();
    CHECK(j);
    CHECK(put(j, "127.0.0.1", 0, "/", 1, 0, "s", "1"));
    CHECK(put(j, "::1", 0, "/", 1, 0, "s6", "2"));
    CHECK(header_is(j, "ws://127.0.0.1:1234/hub", "s=1"));
    CHECK(header_is(j, "ws://[::1]:1234/hub", "s6=2"));
    sr__cookie_jar_unref(j);
}

TEST(a_handle_keeps_the_jar)
{
    sr_cookie_jar *j = sr__cookie_jar_new();
    CURL *e = curl_easy_init();
    CHECK(j && e);
    CHECK(sr__cookie_jar_attach(j, e) == 0);
    sr__cookie_jar_ref(j);   /* the handle's */
    sr__cookie_jar_unref(j); /* the connection's */
    CHECK(put(j, "example.com", 0, "/", 0, 0, "a", "1"));
    CHECK(header_is(j, "ws://example.com/", "a=1"));
    curl_easy_cleanup(e);
    sr__cookie_jar_unref(j); /* the last: frees it (valgrind checks) */
}

/* conn.c drops a jar the upgrade's listing found empty: "empty" is the
 * whole jar, not the cookies that match the URL. */
TEST(empty_is_the_whole_jar)
{
    sr_cookie_jar *j = sr__cookie_jar_new();
    int empty = -1;
    char *h;
    CHECK(j);
    h = sr__cookie_header(j, "ws://example.com/hub", &empty);
    CHECK(h == NULL && empty == 1);
    CHECK(put(j, "other.org", 0, "/", 0, 0, "o", "1"));
    h = sr__cookie_header(j, "ws://example.com/hub", &empty);
    CHECK(h == NULL && empty == 0);
    h = sr__cookie_header(NULL, "ws://example.com/hub", &empty);
    CHECK(h == NULL && empty == 0);
    sr__cookie_jar_unref(j);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    RUN(matching);
    RUN(loopback_is_a_secure_context);
    RUN(a_handle_keeps_the_jar);
    RUN(empty_is_the_whole_jar);
    curl_global_cleanup();
    DONE();
}
