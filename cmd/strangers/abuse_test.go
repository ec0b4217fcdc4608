package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v4"
	"github.com/pion/webrtc/v4"

	"github.com/strangers-chat/strangers/internal/testsupport"
	"github.com/strangers-chat/strangers/signaling"
)

// turnUDP returns the TURN-over-UDP server of an ice reply: its host:port
// and credential.
func turnUDP(t *testing.T, m *signaling.ICEReply) (string, webrtc.ICEServer) {
	t.Helper()
	for _, srv := range iceServersFrom(&signaling.Matched{ICEServers: m.ICEServers}, nil) {
		for _, u := range srv.URLs {
			if rest, ok := strings.CutPrefix(u, "turn:"); ok && strings.HasSuffix(rest, "?transport=udp") {
				return strings.TrimSuffix(rest, "?transport=udp"), srv
			}
		}
	}
	t.Fatalf("no turn: URL over UDP in %+v", m.ICEServers)
	return "", webrtc.ICEServer{}
}

// allocateUDP tries one allocation with pion's TURN client and reports
// whether it succeeded; a relay it got is released when the test ends.
func allocateUDP(t *testing.T, addr string, cred webrtc.ICEServer) bool {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr,
		TURNServerAddr: addr,
		Conn:           conn,
		Username:       cred.Username,
		Password:       cred.Credential.(string),
		Realm:          "strangers",
		RTO:            time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relayed, err := c.Allocate()
	t.Cleanup(func() {
		if relayed != nil {
			relayed.Close()
		}
		c.Close()
		conn.Close()
	})
	return err == nil
}

// TestEndedSessionCredentialsAllocateNothing reproduces the relay
// exhaustion through the real matchmaker: open a session, ask for ICE
// servers with ice (no partner needed), close it, then allocate with that
// credential while the session is in its grace. Nothing is allocated, and
// after a few sessions the client's address gets no more credentials.
func TestEndedSessionCredentialsAllocateNothing(t *testing.T) {
	t.Parallel()
	s := startRun(t, map[string]string{"STRANGERS_TURN_SESSION_GRACE": "1h"})
	httpAddr := s.addrs["http"].(string)

	// A live session's credential works.
	live := dialPeer(t, httpAddr)
	live.send(signaling.ICERequest{})
	addr, cred := turnUDP(t, expect[signaling.ICEReply](live, 10*time.Second))
	if !allocateUDP(t, addr, cred) {
		t.Fatal("a live session's credential does not allocate")
	}

	const sessions, perSession = 3, 10
	for i := range sessions {
		p := dialPeer(t, httpAddr)
		p.send(signaling.ICERequest{})
		addr, cred := turnUDP(t, expect[signaling.ICEReply](p, 10*time.Second))
		p.Close()
		// The server ends the session once it has read the close; until
		// then the session is live, and so is its credential.
		testsupport.WaitFor(t, 10*time.Second, "the closed session to end", func() bool {
			f := metricFamilies(t, s)["strangers_sessions"]
			return f != nil && f.GetMetric()[0].GetGauge().GetValue() == 1
		})
		for j := range perSession {
			if allocateUDP(t, addr, cred) {
				t.Fatalf("session %d: allocation %d with the credential of a closed session succeeded", i, j)
			}
		}
	}
	families := metricFamilies(t, s)
	var ended float64
	for _, m := range families["strangers_relay_allocations_failed_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "reason" && l.GetValue() == "session_ended" {
				ended = m.GetCounter().GetValue()
			}
		}
	}
	if ended < sessions*perSession {
		t.Errorf("allocations_failed_total{reason=session_ended} = %v, want at least %d", ended, sessions*perSession)
	}
	if f := families["strangers_relay_allocations_active"]; f == nil || f.GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Errorf("allocations_active = %v, want 1 (the live session's)", f)
	}

	// Minting without a match is limited per address: the sessions above
	// and the live one used 4 of the 10 it may mint in a row.
	for range 6 {
		p := dialPeer(t, httpAddr)
		p.send(signaling.ICERequest{})
		expect[signaling.ICEReply](p, 10*time.Second)
		p.Close()
	}
	p := dialPeer(t, httpAddr)
	p.send(signaling.ICERequest{})
	if m := expect[signaling.Error](p, 10*time.Second); m.Code != signaling.CodeRateLimited {
		t.Fatalf("ice beyond the address budget: %v, want error rate_limited", m)
	}
}
