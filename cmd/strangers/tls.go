package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/strangers-chat/strangers/internal/tlsmux"
)

// certCheckInterval is how often the certificate files are checked for
// changes, at most (on a handshake, so an idle server does no work).
const certCheckInterval = time.Second

// certFiles serves a certificate from files and reloads it when they
// change, so a renewed certificate needs no restart.
type certFiles struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	mu      sync.Mutex // guards the fields below
	cert    *tls.Certificate
	stamp   string // size and modification time of both files
	checked time.Time
}

func loadCertFiles(certFile, keyFile string, log *slog.Logger) (*certFiles, error) {
	c := &certFiles{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	stamp, err := c.fileStamp()
	if err != nil {
		return nil, err
	}
	cert, err := c.load()
	if err != nil {
		return nil, err
	}
	c.cert, c.stamp, c.checked = cert, stamp, c.now()
	return c, nil
}

func (c *certFiles) fileStamp() (string, error) {
	var b bytes.Buffer
	for _, name := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return "", fmt.Errorf("tls: %w", err)
		}
		fmt.Fprintf(&b, "%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), nil
}

func (c *certFiles) load() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load %s and %s: %w", c.certFile, c.keyFile, err)
	}
	return &cert, nil
}

// GetCertificate returns the current certificate, reloading the files
// first if they changed. A failed reload keeps the old certificate.
func (c *certFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); now.Sub(c.checked) >= certCheckInterval {
		c.checked = now
		if stamp, err := c.fileStamp(); err == nil && stamp != c.stamp {
			cert, err := c.load()
			if err != nil {
				// Often a renewal caught half-written; the next check retries.
				c.log.Warn("certificate files changed but do not load; keeping the old certificate", "err", err)
			} else {
				c.cert, c.stamp = cert, stamp
				c.log.Info("certificate reloaded", "subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
			}
		}
	}
	return c.cert, nil
}

// leaf is the current certificate's leaf.
func (c *certFiles) leaf() *x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert.Leaf
}

// tlsSetup is what the shared TLS port needs: its config, and for ACME
// the manager that also answers HTTP-01 challenges.
type tlsSetup struct {
	config *tls.Config
	acme   *autocert.Manager // nil with certificate files
	host   string            // the certificate's name, used in URLs
}

// newTLSSetup builds the TLS configuration from certificate files or ACME.
// It returns a zero tlsSetup when TLS is not configured.
func newTLSSetup(cfg settings, log *slog.Logger) (tlsSetup, error) {
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: tlsNextProtos(),
	}
	switch {
	case cfg.TLSCertFile != "":
		files, err := loadCertFiles(cfg.TLSCertFile, cfg.TLSKeyFile, log)
		if err != nil {
			return tlsSetup{}, err
		}
		leaf := files.leaf()
		host := cfg.PublicHost
		if host == "" {
			host = certName(leaf)
		}
		if host == "" {
			return tlsSetup{}, fmt.Errorf("STRANGERS_TLS_CERT_FILE=%s: the certificate names no host; set STRANGERS_PUBLIC_HOST", cfg.TLSCertFile)
		}
		if err := leaf.VerifyHostname(host); err != nil {
			return tlsSetup{}, fmt.Errorf("STRANGERS_TLS_CERT_FILE=%s: the certificate does not cover STRANGERS_PUBLIC_HOST=%s: %w", cfg.TLSCertFile, host, err)
		}
		if now := time.Now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
			log.Warn("the TLS certificate is not valid now; browsers will refuse it", "not_before", leaf.NotBefore, "not_after", leaf.NotAfter)
		}
		base.GetCertificate = files.GetCertificate
		return tlsSetup{config: base, host: host}, nil

	case len(cfg.ACMEDomains) > 0:
		client := &acme.Client{DirectoryURL: cfg.ACMEDirectory}
		if cfg.ACMECAFile != "" {
			pem, err := os.ReadFile(cfg.ACMECAFile)
			if err != nil {
				return tlsSetup{}, fmt.Errorf("STRANGERS_ACME_CA_FILE=%s: %w", cfg.ACMECAFile, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return tlsSetup{}, fmt.Errorf("STRANGERS_ACME_CA_FILE=%s: no PEM certificates in it", cfg.ACMECAFile)
			}
			client.HTTPClient = &http.Client{
				Timeout:   30 * time.Second,
				Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
			}
		}
		if err := os.MkdirAll(cfg.ACMECache, 0o700); err != nil {
			return tlsSetup{}, fmt.Errorf("STRANGERS_ACME_CACHE=%s: %w", cfg.ACMECache, err)
		}
		m := &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			HostPolicy: autocert.HostWhitelist(cfg.ACMEDomains...),
			Cache:      autocert.DirCache(cfg.ACMECache),
			Email:      cfg.ACMEEmail,
			Client:     client,
		}
		host := cfg.PublicHost
		if host == "" {
			host = cfg.ACMEDomains[0]
		}
		base.NextProtos = append(base.NextProtos, acme.ALPNProto)
		base.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if hello.ServerName == "" {
				// No SNI (Firefox's TURN client): the default name.
				h := *hello
				h.ServerName = host
				hello = &h
			}
			return m.GetCertificate(hello)
		}
		return tlsSetup{config: base, acme: m, host: host}, nil
	}
	return tlsSetup{}, nil
}

// tlsNextProtos is the shared TLS port's ALPN list, in the server's order
// of preference, which is what Go's TLS server picks by. TURN and STUN come
// first: a client that offers stun.turn at all is a TURN client, whatever
// else it offers (coturn's turnutils_uclient -S sends http/1.1 before it),
// and browsers never offer it for HTTPS.
func tlsNextProtos() []string {
	return []string{tlsmux.ALPNTURN, tlsmux.ALPNSTUN, "h2", "http/1.1"}
}

// certName is the first DNS name of a certificate, else its first IP.
func certName(leaf *x509.Certificate) string {
	if len(leaf.DNSNames) > 0 {
		return leaf.DNSNames[0]
	}
	if len(leaf.IPAddresses) > 0 {
		return leaf.IPAddresses[0].String()
	}
	return ""
}

// redirectToHTTPS sends plain-HTTP requests to the HTTPS port.
func redirectToHTTPS(host string, tlsPort int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := host
		if h == "" {
			h = r.Host
			if hh, _, err := net.SplitHostPort(h); err == nil {
				h = hh
			}
		}
		if tlsPort != 443 {
			h = net.JoinHostPort(h, strconv.Itoa(tlsPort))
		} else if net.ParseIP(h) != nil && net.ParseIP(h).To4() == nil {
			h = "[" + h + "]"
		}
		http.Redirect(w, r, "https://"+h+r.URL.RequestURI(), http.StatusMovedPermanently)
	})
}
