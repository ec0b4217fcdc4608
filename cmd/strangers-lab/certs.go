package main

import (
	"fmt"
	"net"
	"time"

	"github.com/strangers-chat/strangers/internal/testsupport"
)

// labCerts are the files of a throwaway CA and the server certificate it
// signed, valid for the server's lab address (pion and Chromium check TURN
// over TLS against the URL host, which is that address).
type labCerts struct {
	caFile   string // the CA certificate, PEM: what clients trust
	certFile string // the server certificate, PEM
	keyFile  string // the server key, PEM
}

// writeCerts creates a CA and a server certificate for ip in dir.
func writeCerts(dir string, ip net.IP) (labCerts, error) {
	var c labCerts
	ca, err := testsupport.NewCA("strangers lab CA")
	if err != nil {
		return c, fmt.Errorf("strangers-lab: %w", err)
	}
	if c.caFile, err = ca.WriteCA(dir); err != nil {
		return c, fmt.Errorf("strangers-lab: %w", err)
	}
	now := time.Now()
	if c.certFile, c.keyFile, err = ca.WriteFiles(dir, now.Add(-time.Hour), now.Add(24*time.Hour), ip.String()); err != nil {
		return c, fmt.Errorf("strangers-lab: %w", err)
	}
	return c, nil
}
