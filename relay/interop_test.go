package relay

import (
	"context"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

var uclientTotals = regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)

// TestInteropTurnutilsUclient relays coturn's own test client through our
// server: turnutils_uclient mints "<expiry>:<session id>" credentials from
// the shared secret with coturn's code (-W), allocates, and its clients
// send to each other's relayed addresses (-y) over UDP and over TCP.
func TestInteropTurnutilsUclient(t *testing.T) {
	t.Parallel()
	eachPath(t, testInteropTurnutilsUclient)
}

func testInteropTurnutilsUclient(t *testing.T, path dataPath) {
	t.Parallel()
	uclient := testsupport.Require(t, "turnutils_uclient", "coturn")
	for _, tcp := range []bool{false, true} {
		t.Run(map[bool]string{false: "udp", true: "tcp"}[tcp], func(t *testing.T) {
			t.Parallel()
			cfg := path.config()
			cfg.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
			cfg.SessionQuota = 100
			cfg.CredentialTTL = 25 * time.Hour // turnutils_uclient mints credentials valid for a day
			cfg.replyBurst = 0                 // the real limits on unauthenticated responses
			s := newServer(t, cfg)
			sid := newSID(t)
			s.SessionStarted(sid)

			const clients, msgs = 10, 200
			args := []string{"-y", "-c", "-m", strconv.Itoa(clients), "-n", strconv.Itoa(msgs), "-l", "200",
				"-W", string(testSecret), "-u", sid, "-p", strconv.Itoa(s.UDPAddr().Port)}
			if tcp {
				args = append(args, "-t")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, uclient, append(args, "127.0.0.1")...).CombinedOutput()
			if err != nil {
				t.Fatalf("turnutils_uclient: %v\n%s", err, tail(out))
			}
			all := uclientTotals.FindAllSubmatch(out, -1) // progress lines, then the final totals
			if all == nil {
				t.Fatalf("no totals in turnutils_uclient output:\n%s", tail(out))
			}
			m := all[len(all)-1]
			sent, _ := strconv.Atoi(string(m[1]))
			recv, _ := strconv.Atoi(string(m[2]))
			t.Logf("turnutils_uclient: sent %d, received %d", sent, recv)
			if sent != clients*msgs || recv != sent {
				t.Errorf("sent %d, received %d; want %d both (no loss)", sent, recv, clients*msgs)
			}
			eventually(func() bool { return s.traffic.total().packetsTo >= uint64(sent) })
			if tot := s.traffic.total(); tot.packetsTo < uint64(sent) {
				t.Errorf("relay counted %d packets to peers, uclient sent %d", tot.packetsTo, sent)
			}
		})
	}
}

func tail(b []byte) []byte {
	const n = 3000
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
