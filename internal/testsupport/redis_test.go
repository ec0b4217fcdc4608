package testsupport

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// redisDo sends one command and returns the first line of the reply, and
// the line after it for a bulk string.
func redisDo(t *testing.T, r *Redis, args ...string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", r.Addr(), time.Second)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	if r.opts.Password != "" {
		fmt.Fprintf(&b, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(r.opts.Password), r.opts.Password)
	}
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "write: " + err.Error()
	}
	br := bufio.NewReader(c)
	if r.opts.Password != "" {
		if _, err := br.ReadString('\n'); err != nil {
			return "read: " + err.Error()
		}
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return "read: " + err.Error()
	}
	line = strings.TrimSpace(line)
	if strings.HasPrefix(line, "$") && line != "$-1" {
		v, _ := br.ReadString('\n')
		return strings.TrimSpace(v)
	}
	return line
}

func TestRedisKeepsDataOnlyWhenPersisting(t *testing.T) {
	t.Parallel()
	for _, persist := range []bool{false, true} {
		t.Run(fmt.Sprintf("persist=%v", persist), func(t *testing.T) {
			t.Parallel()
			r := StartRedis(t, RedisOptions{Persist: persist, Password: "s3cret"})
			if !strings.HasPrefix(r.URL(), "redis://:s3cret@127.0.0.1:") || !strings.HasSuffix(r.URL(), "/0") {
				t.Errorf("URL %q", r.URL())
			}
			if got := redisDo(t, r, "SET", "k", "v"); got != "+OK" {
				t.Fatalf("SET: %s", got)
			}
			r.Kill()
			if got := redisDo(t, r, "PING"); !strings.HasPrefix(got, "dial:") {
				t.Fatalf("after Kill, PING: %s", got)
			}
			r.Start()
			want := "$-1"
			if persist {
				want = "v"
			}
			if got := redisDo(t, r, "GET", "k"); got != want {
				t.Errorf("after Kill and Start, GET k = %s, want %s", got, want)
			}
			if got := redisDo(t, r, "SET", "k", "w"); got != "+OK" {
				t.Fatalf("SET: %s", got)
			}
			r.Restart(true)
			if persist {
				want = "w"
			}
			if got := redisDo(t, r, "GET", "k"); got != want {
				t.Errorf("after Restart(true), GET k = %s, want %s", got, want)
			}
			r.Restart(false)
			if got := redisDo(t, r, "GET", "k"); got != "$-1" {
				t.Errorf("after Restart(false), GET k = %s, want nothing", got)
			}
		})
	}
}

func TestRedisRefusesWithoutPassword(t *testing.T) {
	t.Parallel()
	r := StartRedis(t, RedisOptions{Password: "pw"})
	anon := &Redis{port: r.port}
	if got := redisDo(t, anon, "PING"); !strings.HasPrefix(got, "-NOAUTH") {
		t.Errorf("PING without the password: %s", got)
	}
}
