package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Limits on STRANGERS_ICE_SERVERS, generous for any real deployment.
const (
	maxICEServersJSON = 16 << 10
	maxICEServers     = 16
	maxICEURLs        = 8
	maxICEURLLen      = 256
	maxICEFieldLen    = 512
)

// ParseICEServers parses a JSON list of RTCIceServer dictionaries (the
// STRANGERS_ICE_SERVERS format). "urls" may be a string or a list. Only the
// stun:, turn: and turns: schemes are accepted; turn: and turns: servers need
// a username and a credential. Unknown fields are rejected. Blank input
// yields an empty list.
func ParseICEServers(jsonText string) ([]ICEServer, error) {
	if strings.TrimSpace(jsonText) == "" {
		return []ICEServer{}, nil
	}
	if len(jsonText) > maxICEServersJSON {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrICEServers, maxICEServersJSON)
	}
	type wire struct {
		URLs       json.RawMessage `json:"urls"`
		Username   string          `json:"username"`
		Credential string          `json:"credential"`
	}
	var list []wire
	dec := json.NewDecoder(strings.NewReader(jsonText))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&list); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrICEServers, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the list", ErrICEServers)
	}
	if len(list) > maxICEServers {
		return nil, fmt.Errorf("%w: more than %d servers", ErrICEServers, maxICEServers)
	}
	out := make([]ICEServer, 0, len(list))
	for i, w := range list {
		srv := ICEServer{Username: w.Username, Credential: w.Credential}
		raw := bytes.TrimSpace(w.URLs)
		switch {
		case len(raw) == 0 || bytes.Equal(raw, []byte("null")):
			return nil, fmt.Errorf("%w: server %d: missing \"urls\"", ErrICEServers, i)
		case raw[0] == '"':
			var u string
			if err := json.Unmarshal(raw, &u); err != nil {
				return nil, fmt.Errorf("%w: server %d: %w", ErrICEServers, i, err)
			}
			srv.URLs = []string{u}
		default:
			if err := json.Unmarshal(raw, &srv.URLs); err != nil {
				return nil, fmt.Errorf("%w: server %d: \"urls\" must be a string or a list of strings", ErrICEServers, i)
			}
		}
		if err := srv.validate(); err != nil {
			return nil, fmt.Errorf("%w: server %d: %w", ErrICEServers, i, err)
		}
		out = append(out, srv)
	}
	return out, nil
}

// validate checks one server the way a browser's RTCPeerConnection would,
// plus size limits.
func (srv ICEServer) validate() error {
	if len(srv.URLs) == 0 {
		return errors.New("no urls")
	}
	if len(srv.URLs) > maxICEURLs {
		return fmt.Errorf("more than %d urls", maxICEURLs)
	}
	if len(srv.Username) > maxICEFieldLen || len(srv.Credential) > maxICEFieldLen {
		return errors.New("username or credential too long")
	}
	for _, u := range srv.URLs {
		scheme, err := validICEURL(u)
		if err != nil {
			return fmt.Errorf("url %q: %w", u, err)
		}
		if scheme != "stun" && (srv.Username == "" || srv.Credential == "") {
			return fmt.Errorf("url %q: %s: needs a username and a credential", u, scheme)
		}
	}
	return nil
}

// validICEURL checks scheme:host[:port][?transport=udp|tcp] (RFC 7064/7065)
// and returns the scheme.
func validICEURL(u string) (string, error) {
	if len(u) > maxICEURLLen {
		return "", errors.New("too long")
	}
	scheme, rest, ok := strings.Cut(u, ":")
	if !ok {
		return "", errors.New("no scheme")
	}
	switch scheme {
	case "stun", "turn", "turns":
	default:
		return "", fmt.Errorf("scheme %q is not stun, turn or turns", scheme)
	}
	hostport, query, hasQuery := strings.Cut(rest, "?")
	if hasQuery {
		if scheme == "stun" {
			return "", errors.New("stun: urls take no query")
		}
		if query != "transport=udp" && query != "transport=tcp" {
			return "", errors.New("query must be transport=udp or transport=tcp")
		}
	}
	host, port := hostport, ""
	switch {
	case strings.HasPrefix(hostport, "["):
		end := strings.Index(hostport, "]")
		if end < 0 {
			return "", errors.New("unterminated IPv6 literal")
		}
		host, port = hostport[:end+1], hostport[end+1:]
		if port != "" {
			if port[0] != ':' {
				return "", errors.New("garbage after IPv6 literal")
			}
			port = port[1:]
			if port == "" {
				return "", errors.New("empty port")
			}
		}
	case strings.Contains(hostport, ":"):
		var ok bool
		host, port, ok = strings.Cut(hostport, ":")
		if !ok || port == "" {
			return "", errors.New("empty port")
		}
	}
	if err := validHost(host); err != nil {
		return "", err
	}
	if port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 || port[0] == '0' || port[0] == '+' {
			return "", fmt.Errorf("bad port %q", port)
		}
	}
	return scheme, nil
}

// validHost accepts a DNS name, an IPv4 literal, or an IPv6 literal with or
// without brackets.
func validHost(h string) error {
	if h == "" {
		return errors.New("empty host")
	}
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		a, err := netip.ParseAddr(h[1 : len(h)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return errors.New("bad IPv6 literal")
		}
		return nil
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" {
			return errors.New("zoned address")
		}
		return nil
	}
	if len(h) > 253 {
		return errors.New("host name too long")
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("bad host name %q", h)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("bad host name %q", h)
			}
		}
	}
	return nil
}

// urlHost formats a host for a stun:/turn: URL, bracketing IPv6 literals.
func urlHost(h string) string {
	if a, err := netip.ParseAddr(h); err == nil && a.Is6() && !a.Is4In6() {
		return "[" + h + "]"
	}
	return h
}
